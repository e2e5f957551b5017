"""Exact bytes of the Engine.IO and Socket.IO codecs, both generations."""

from __future__ import annotations

import pytest

from kernels_service.socketio import sio_codec as sio
from kernels_service.socketio.eio_codec import (
    CLOSE,
    MESSAGE,
    NOOP,
    OPEN,
    PING,
    PONG,
    Packet,
    TextBytes,
    decode_payload,
    decode_ws,
    encode_payload,
    encode_ws,
)
from kernels_service.socketio.errors import RemoteProtocolError

# --- Engine.IO packets over websocket --------------------------------------------------


@pytest.mark.parametrize("version", [3, 4])
def test_text_packets_are_type_digit_and_data(version):
    assert encode_ws(Packet(MESSAGE, "héllo"), version) == "4héllo"
    assert encode_ws(Packet(PING, "probe"), version) == "2probe"
    assert decode_ws("3probe", version) == Packet(PONG, "probe")
    assert decode_ws("6", version) == Packet(NOOP)


def test_binary_message_frames_differ_by_generation():
    assert encode_ws(Packet(MESSAGE, b"\x01\x02"), 3) == b"\x04\x01\x02"
    assert encode_ws(Packet(MESSAGE, b"\x01\x02"), 4) == b"\x01\x02"
    assert decode_ws(b"\x04\x01\x02", 3) == Packet(MESSAGE, b"\x01\x02")
    assert decode_ws(b"\x04\x01\x02", 4) == Packet(MESSAGE, b"\x04\x01\x02")


@pytest.mark.parametrize("frame", ["", "9", "x", "b4!!notbase64"])
def test_bad_text_packets(frame):
    with pytest.raises(RemoteProtocolError):
        decode_ws(frame, 3)


def test_bad_binary_v3_frame():
    with pytest.raises(RemoteProtocolError):
        decode_ws(b"\x09abc", 3)
    with pytest.raises(RemoteProtocolError):
        decode_ws(b"", 3)


# --- polling payloads --------------------------------------------------------------------


def test_v4_payload_joins_with_record_separator_and_base64():
    packets = [Packet(MESSAGE, "hello"), Packet(MESSAGE, "€€€"), Packet(MESSAGE, b"\x01\x02\x03")]
    body, content_type = encode_payload(packets, 4)
    assert body == "4hello\x1e4€€€\x1ebAQID".encode()
    assert content_type == "text/plain; charset=UTF-8"
    assert decode_payload(body, 4) == packets


def test_v3_binary_payload_exact_bytes():
    body, content_type = encode_payload([Packet(MESSAGE, "hello"), Packet(MESSAGE, b"\x01\x02\x03")], 3)
    assert body == b"\x00\x06\xff4hello\x01\x04\xff\x04\x01\x02\x03"
    assert content_type == "application/octet-stream"
    assert decode_payload(body, 3) == [Packet(MESSAGE, "hello"), Packet(MESSAGE, b"\x01\x02\x03")]


def test_v3_binary_payload_counts_utf8_bytes_with_multi_digit_lengths():
    body, content_type = encode_payload([Packet(MESSAGE, "é" * 10), Packet(MESSAGE, b"\x07")], 3)
    assert body == b"\x00\x02\x01\xff4" + "é".encode() * 10 + b"\x01\x02\xff\x04\x07"
    assert content_type == "application/octet-stream"
    assert decode_payload(body, 3) == [Packet(MESSAGE, "é" * 10), Packet(MESSAGE, b"\x07")]


def test_v3_payload_without_binary_packets_is_text_with_utf16_lengths():
    """As engine.io 3 answers a client that is not in base64 mode (the v3 suite's handshake)."""
    body, content_type = encode_payload([Packet(OPEN, "{}"), Packet(MESSAGE, "é😀")], 3)
    assert body == "3:0{}4:4é😀".encode() and content_type == "text/plain; charset=UTF-8"
    assert decode_payload(body, 3) == [Packet(OPEN, "{}"), Packet(MESSAGE, "é😀")]


def test_v3_text_payload_is_utf8_encoded_once_more_for_base64_clients():
    body, content_type = encode_payload(
        [Packet(OPEN, "{}"), Packet(MESSAGE, "€"), Packet(MESSAGE, b"\x01")], 3, b64=True
    )
    # "4€" is 4 bytes in UTF-8; each byte becomes one character, sent as UTF-8 again
    assert body == "3:0{}4:4\u00e2\u0082\u00ac6:b4AQ==".encode()
    assert content_type == "text/plain; charset=UTF-8"


def test_v3_text_payload_from_socketio_client_1x_is_decoded_twice():
    body = "4:4\u00e2\u0082\u00ac".encode()  # how socket.io-client 1.x in base64 mode sends "4€"
    assert decode_payload(body, 3, utf8_twice=True) == [Packet(MESSAGE, "€")]


def test_v3_text_payload_from_socketio_client_2x_counts_utf16_units():
    body = '16:42["msg","é✓🚀"]1:2'.encode()  # as engine.io-parser 2.x encodes it
    assert decode_payload(body, 3) == [Packet(MESSAGE, '2["msg","é✓🚀"]'), Packet(PING)]
    assert decode_payload(body, 3, utf8_twice=True) == [Packet(MESSAGE, '2["msg","é✓🚀"]'), Packet(PING)]


@pytest.mark.parametrize(
    "body",
    [b"5:4hi", b"x:4hi", b"2:4h\xff", b"\x00\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\x09\xff4", b"\x00\x05\xff4h",
     b"\x00\x01", b"3:"],
)  # fmt: skip
def test_malformed_v3_payloads(body):
    with pytest.raises(RemoteProtocolError):
        decode_payload(body, 3)


@pytest.mark.parametrize("body", [b"\xff\xfe", b"4a\x1e", b"b!!"])
def test_malformed_v4_payloads(body):
    with pytest.raises(RemoteProtocolError):
        decode_payload(body, 4)


def test_close_packet():
    assert encode_payload([Packet(CLOSE)], 4) == (b"1", "text/plain; charset=UTF-8")


# --- Socket.IO packets ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "packet, protocol, wire",
    [
        (sio.SioPacket(sio.CONNECT, "/"), 4, ["0"]),
        (sio.SioPacket(sio.CONNECT, "/shell/k1"), 4, ["0/shell/k1"]),
        (sio.SioPacket(sio.CONNECT, "/shell/k1", {"sid": "s"}), 5, ['0/shell/k1,{"sid":"s"}']),
        (sio.SioPacket(sio.CONNECT, "/", {"sid": "s"}), 5, ['0{"sid":"s"}']),
        (sio.SioPacket(sio.DISCONNECT, "/x"), 4, ["1/x"]),
        (sio.SioPacket(sio.DISCONNECT, "/x"), 5, ["1/x,"]),
        (sio.SioPacket(sio.EVENT, "/", ["msg", {"a": "é"}]), 5, ['2["msg",{"a":"é"}]']),
        (sio.SioPacket(sio.EVENT, "/n", ["msg", 1], 12), 4, ['2/n,12["msg",1]']),
        (sio.SioPacket(sio.ACK, "/", [1, "2"], 456), 5, ['3456[1,"2"]']),
        (sio.SioPacket(sio.CONNECT_ERROR, "/r", "Invalid namespace"), 4, ['4/r,"Invalid namespace"']),
        (sio.SioPacket(sio.CONNECT_ERROR, "/r", {"message": "Invalid namespace"}), 5,
         ['4/r,{"message":"Invalid namespace"}']),
        (sio.SioPacket(sio.EVENT, "/", ["m", b"\x01", {"b": b"\x02"}]), 5,
         ['52-["m",{"_placeholder":true,"num":0},{"b":{"_placeholder":true,"num":1}}]', b"\x01", b"\x02"]),
        (sio.SioPacket(sio.ACK, "/c", [b"\x01"], 789), 4, ['61-/c,789[{"_placeholder":true,"num":0}]', b"\x01"]),
    ],
)  # fmt: skip
def test_socketio_encode_exact(packet, protocol, wire):
    assert sio.encode(packet, protocol) == wire


def test_socketio_encode_raw_data_with_attachments():
    """Raw UTF-8 pieces are joined once into text that stays bytes (TextBytes) down to the socket."""
    packet = sio.SioPacket(sio.EVENT, "/iopub/k", attachments=[b"\x00"])
    pieces = [b'["msg",{"text":', '"é"'.encode(), b',"buffers":[{"_placeholder":true,"num":0}]}]']
    text, attachment = sio.encode(packet, 4, pieces)
    assert isinstance(text, TextBytes) and attachment == b"\x00"
    assert text == '51-/iopub/k,["msg",{"text":"é","buffers":[{"_placeholder":true,"num":0}]}]'.encode()
    assert sio.ascii_only(text) == b'51-/iopub/k,["msg",{"text":"\\u00e9","buffers":[{"_placeholder":true,"num":0}]}]'
    assert encode_ws(Packet(MESSAGE, text), 4) == b"4" + text and not Packet(MESSAGE, text).binary
    body, content_type = encode_payload([Packet(MESSAGE, TextBytes("4é😀".encode()))], 3)
    assert body == "5:44é😀".encode() and content_type == "text/plain; charset=UTF-8"
    assert encode_payload([Packet(MESSAGE, TextBytes("é".encode()))], 3, b64=True)[0] == "3:4\u00c3\u00a9".encode()


@pytest.mark.parametrize(
    "text, packet, attachments",
    [
        ("0", sio.SioPacket(sio.CONNECT), 0),
        ("0/custom,", sio.SioPacket(sio.CONNECT, "/custom"), 0),
        ('0/custom,{"token":"abc"}', sio.SioPacket(sio.CONNECT, "/custom", {"token": "abc"}), 0),
        ("0/shell/k?token=t", sio.SioPacket(sio.CONNECT, "/shell/k"), 0),
        ('2["message",1,"2",{"3":[true]}]', sio.SioPacket(sio.EVENT, "/", ["message", 1, "2", {"3": [True]}]), 0),
        ('2456["m"]', sio.SioPacket(sio.EVENT, "/", ["m"], 456), 0),
        ('2/n,7["m"]', sio.SioPacket(sio.EVENT, "/n", ["m"], 7), 0),
        ('52-["m",{"_placeholder":true,"num":0}]',
         sio.SioPacket(sio.BINARY_EVENT, "/", ["m", {"_placeholder": True, "num": 0}]), 2),
        ("1/x,", sio.SioPacket(sio.DISCONNECT, "/x"), 0),
    ],
)  # fmt: skip
def test_socketio_decode(text, packet, attachments):
    assert sio.decode(text) == (packet, attachments)


@pytest.mark.parametrize(
    "text",
    ["", "abc", "7", "2{}", "2[]", "2[1]", '2abc["m"]', "3[1]", "4/x,{}", "0[1]", "5x-[]", '51["m"]', '59999-["m"]'],
)
def test_socketio_decode_rejects(text):
    with pytest.raises(RemoteProtocolError):
        sio.decode(text)


def test_reconstruct_and_ascii_only():
    value = sio.reconstruct(["m", {"_placeholder": True, "num": 1}, [{"_placeholder": True, "num": 0}]], [b"a", b"b"])
    assert value == ["m", b"b", [b"a"]]
    with pytest.raises(RemoteProtocolError):
        sio.reconstruct([{"_placeholder": True, "num": 2}], [b"a"])
    assert sio.ascii_only('2["é✓🚀"]') == '2["\\u00e9\\u2713\\ud83d\\ude80"]'
