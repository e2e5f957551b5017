"""Property tests of the Engine.IO and Socket.IO codecs, both generations.

Whatever the bytes, a decoder either returns packets or raises RemoteProtocolError;
never another exception (a crash of the session's task, or a 500). And what the
server encodes, a decoder of the same protocol reads back unchanged.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels_service.socketio import sio_codec as sio
from kernels_service.socketio.eio_codec import (
    MESSAGE,
    NOOP,
    Packet,
    TextBytes,
    decode_payload,
    decode_ws,
    encode_payload,
    encode_ws,
)
from kernels_service.socketio.errors import RemoteProtocolError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VERSIONS = st.sampled_from([3, 4])
#: Text that stresses the codecs: digits of other scripts, separators, surrogates, JSON.
TRICKY_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list('0123456789:b-,/[]{}"\\\x1e²٣😀é\ud800\udc00 NaInfty')),
        st.characters(),
    ),
    max_size=60,
)
#: Text a client may legitimately send: any Unicode scalar value (no lone surrogates).
SCALAR_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


def decodes_or_refuses(decode, *args) -> None:
    try:
        decode(*args)
    except RemoteProtocolError:
        pass


@SETTINGS
@given(body=st.binary(max_size=200), version=VERSIONS, twice=st.booleans())
def test_any_polling_body_decodes_or_is_refused(body, version, twice):
    decodes_or_refuses(decode_payload, body, version, twice)


@SETTINGS
@given(text=TRICKY_TEXT, version=VERSIONS, twice=st.booleans())
def test_any_text_polling_body_decodes_or_is_refused(text, version, twice):
    decodes_or_refuses(decode_payload, text.encode("utf-8", "surrogatepass"), version, twice)


@SETTINGS
@given(frame=st.one_of(st.binary(max_size=100), TRICKY_TEXT), version=VERSIONS)
def test_any_websocket_frame_decodes_or_is_refused(frame, version):
    decodes_or_refuses(decode_ws, frame, version)


@SETTINGS
@given(text=TRICKY_TEXT)
def test_any_socketio_text_decodes_or_is_refused(text):
    decodes_or_refuses(sio.decode, text)


@SETTINGS
@given(
    head=st.sampled_from(["2", "3", "5", "6", "0", "51-", "2/nsp,", "212", "61-7"]),
    body=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TRICKY_TEXT),
        lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(TRICKY_TEXT, children, max_size=4)),
        max_leaves=20,
    ),
)
def test_any_json_like_payload_decodes_or_is_refused(head, body):
    """JSON-ish data with NaN, infinities and surrogates, as a hostile client writes it."""
    import json

    decodes_or_refuses(sio.decode, head + json.dumps(body, ensure_ascii=False))
    decodes_or_refuses(sio.decode, head + json.dumps(body))


def packets(version):
    """Packets a payload can carry, text as `str` or as TextBytes: Engine.IO 4 text may not
    hold its separator \\x1e (Socket.IO's JSON never does: it writes control characters as
    escapes)."""
    allowed = SCALAR_TEXT.filter(lambda t: version == 3 or "\x1e" not in t)
    text = st.builds(
        lambda kind, value, as_bytes: Packet(kind, TextBytes(value.encode()) if as_bytes else value),
        st.integers(0, 6),
        allowed,
        st.booleans(),
    )
    binary = st.builds(Packet, st.just(MESSAGE), st.binary(max_size=30))
    return st.lists(st.one_of(text, binary), min_size=1, max_size=6)


def as_received(packet):
    """What a decoder gives back for a packet: text always as `str`."""
    return Packet(packet.type, packet.data.decode()) if isinstance(packet.data, TextBytes) else packet


@SETTINGS
@given(data=st.data(), version=VERSIONS, b64=st.booleans())
def test_polling_payloads_round_trip(data, version, b64):
    sent = data.draw(packets(version))
    body, _ = encode_payload(sent, version, b64)
    assert decode_payload(body, version, utf8_twice=b64) == [as_received(p) for p in sent]


@SETTINGS
@given(
    packet=st.one_of(
        st.builds(Packet, st.integers(0, NOOP), SCALAR_TEXT),
        st.builds(Packet, st.just(MESSAGE), st.binary(max_size=30)),
    ),
    version=VERSIONS,
)
def test_websocket_frames_round_trip(packet, version):
    assert decode_ws(encode_ws(packet, version), version) == packet


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), SCALAR_TEXT, st.binary(max_size=8)),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(SCALAR_TEXT, children, max_size=3)),
    max_leaves=12,
)


@SETTINGS
@given(
    protocol=st.sampled_from([4, 5]),
    namespace=st.sampled_from(["/", "/custom", "/shell/abc-123"]),
    name=SCALAR_TEXT,
    args=st.lists(JSON_VALUES, max_size=3),
    ack_id=st.one_of(st.none(), st.integers(0, 10**12)),
)
def test_socketio_events_round_trip(protocol, namespace, name, args, ack_id):
    text, *attachments = sio.encode(sio.SioPacket(sio.EVENT, namespace, [name, *args], ack_id), protocol)
    if protocol == 4:
        text = sio.ascii_only(text)
    packet, expected = sio.decode(text)
    assert expected == len(attachments)
    data = sio.reconstruct(packet.data, attachments)
    assert (packet.namespace, data, packet.ack_id) == (namespace, [name, *args], ack_id)
