"""Exact-bytes tests of the pure codecs: v1 frames, legacy frames, wire signing."""

import hashlib
import hmac
import json
import struct

import pytest

from kernels_service.protocol import KernelMessage, ProtocolError
from kernels_service.protocol.websocket import (
    decode_legacy_binary,
    decode_legacy_text,
    decode_v1,
    encode_legacy,
    encode_v1,
)
from kernels_service.protocol.wire import DELIMITER, Signer, from_frames, to_frames

HEADER = b'{"msg_id":"m1","msg_type":"stream"}'
PARENT = b'{"msg_id":"p1"}'
MESSAGE = KernelMessage("iopub", [HEADER, PARENT, b"{}", b'{"name":"stdout","text":"hi"}'])


def test_v1_encode_exact_bytes():
    frame = encode_v1(MESSAGE)
    # 7 offsets: channel start, then the end of channel and of each of the 4 parts... and a count
    count = 6
    first = 8 * (count + 1)
    ends = [first + 5]
    for part in MESSAGE.parts:
        ends.append(ends[-1] + len(part))
    expected = struct.pack("<7Q", count, first, *ends) + b"iopub" + b"".join(MESSAGE.parts)
    assert frame == expected
    assert frame[:8] == b"\x06\x00\x00\x00\x00\x00\x00\x00"
    assert frame[8:16] == b"\x38\x00\x00\x00\x00\x00\x00\x00"


def test_v1_round_trip_with_buffers_matches_jupyter_server():
    from jupyter_server.services.kernels.connection.base import (
        deserialize_msg_from_ws_v1,
        serialize_msg_to_ws_v1,
    )

    message = KernelMessage("shell", MESSAGE.parts, [b"\x00\x01", b"", b"xyz"])
    frame = encode_v1(message)
    assert frame == serialize_msg_to_ws_v1([*message.parts, *message.buffers], "shell")
    channel, parts = deserialize_msg_from_ws_v1(frame)
    assert channel == "shell" and parts == [*message.parts, b"\x00\x01", b"", b"xyz"]
    decoded = decode_v1(frame)
    assert (decoded.channel, decoded.parts, decoded.buffers) == ("shell", message.parts, message.buffers)


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01\x00",
        struct.pack("<Q", 2) + struct.pack("<2Q", 24, 24),  # too few parts
        struct.pack("<Q", 6) + struct.pack("<6Q", 0, 1, 2, 3, 4, 5),  # first offset wrong
        struct.pack("<Q", 6) + struct.pack("<6Q", 56, 60, 58, 62, 63, 64) + b"x" * 8,  # out of order
        struct.pack("<Q", 6) + struct.pack("<6Q", 56, 60, 61, 62, 63, 9999) + b"x" * 8,  # past the end
        struct.pack("<Q", 2**40) + b"x" * 64,  # absurd count
        struct.pack("<Q", 6) + struct.pack("<6Q", 56, 58, 59, 60, 61, 62) + b"\xff\xfe" + b"{}{}{}{}",
    ],
)
def test_v1_malformed_frames_are_protocol_errors(frame):
    with pytest.raises(ProtocolError):
        decode_v1(frame)


def test_legacy_text_envelope_is_spliced_from_raw_parts():
    frame, binary = encode_legacy(MESSAGE)
    assert not binary
    assert frame == (
        b'{"header":{"msg_id":"m1","msg_type":"stream"},"msg_id":"m1","msg_type":"stream",'
        b'"parent_header":{"msg_id":"p1"},"metadata":{},"content":{"name":"stdout","text":"hi"},'
        b'"channel":"iopub","buffers":[]}'
    )
    assert json.loads(frame)["content"]["text"] == "hi"


def test_legacy_binary_matches_jupyter_server_and_round_trips():
    from jupyter_server.services.kernels.connection.base import deserialize_binary_message

    message = KernelMessage("iopub", MESSAGE.parts, [b"\x00\xff", b"abc"])
    frame, binary = encode_legacy(message)
    assert binary
    envelope = frame[16:-5]
    assert frame[:16] == struct.pack("!4I", 3, 16, 16 + len(envelope), 16 + len(envelope) + 2)
    assert frame[-5:] == b"\x00\xffabc"
    reference = deserialize_binary_message(frame)
    assert reference["buffers"] == [b"\x00\xff", b"abc"]
    assert reference["channel"] == "iopub" and reference["header"]["msg_id"] == "m1"
    decoded = decode_legacy_binary(frame)
    assert decoded.buffers == [b"\x00\xff", b"abc"] and decoded.channel == "iopub"


def test_legacy_text_decode_encodes_parts_compactly():
    text = json.dumps({"header": {"msg_id": "a", "msg_type": "x"}, "content": {"code": "é"}, "channel": "shell"})
    message = decode_legacy_text(text)
    assert message.channel == "shell"
    assert message.parts == [b'{"msg_id":"a","msg_type":"x"}', b"{}", b"{}", '{"code":"é"}'.encode()]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"header": {"msg_id": "a"}}',  # no channel
        '{"channel": "shell"}',  # no header
        '{"channel": "shell", "header": {"a": 1}, "content": [1]}',
        '{"channel": "shell", "header": "h"}',
    ],
)
def test_legacy_text_malformed(text):
    with pytest.raises(ProtocolError):
        decode_legacy_text(text)


@pytest.mark.parametrize(
    "frame",
    [b"", b"\x00\x00\x00\x00", struct.pack("!2I", 1, 99), struct.pack("!3I", 2, 12, 10) + b"{}{}"],
)
def test_legacy_binary_malformed(frame):
    with pytest.raises(ProtocolError):
        decode_legacy_binary(frame)


def test_wire_frames_are_signed_with_hmac_sha256():
    signer = Signer(b"secret")
    frames = to_frames(MESSAGE, signer)
    expected = hmac.new(b"secret", b"".join(MESSAGE.parts), hashlib.sha256).hexdigest().encode()
    assert frames == [DELIMITER, expected, *MESSAGE.parts]
    parsed = from_frames("iopub", [b"ident", *frames, b"buf"], signer)
    assert parsed.parts == MESSAGE.parts and parsed.buffers == [b"buf"]


def test_wire_rejects_bad_signature_and_missing_delimiter():
    signer = Signer(b"secret")
    with pytest.raises(ProtocolError, match="signature"):
        from_frames("iopub", [DELIMITER, b"0" * 64, *MESSAGE.parts], signer)
    with pytest.raises(ProtocolError, match="delimiter"):
        from_frames("iopub", [b"x", *MESSAGE.parts], signer)
    with pytest.raises(ProtocolError, match="fewer"):
        from_frames("iopub", [DELIMITER, b"sig", HEADER], signer)


def test_unsigned_kernels_have_empty_signature():
    assert Signer(b"").sign(MESSAGE.parts) == b""


def test_a_signer_takes_a_new_key_for_everything_it_signs_and_checks():
    signer = Signer(b"old")
    old_frames = to_frames(MESSAGE, signer)
    signer.use_key(b"new")
    expected = hmac.new(b"new", b"".join(MESSAGE.parts), hashlib.sha256).hexdigest().encode()
    assert to_frames(MESSAGE, signer)[1] == expected
    with pytest.raises(ProtocolError, match="signature"):
        from_frames("iopub", old_frames, signer)  # the old process's messages no longer pass
