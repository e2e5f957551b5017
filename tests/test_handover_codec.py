"""The codec of a websocket session's hand-over between replicas (relay/handover.py):
exact bytes, and properties: any bytes decode or raise HandoverError; what is encoded
decodes unchanged; a client that came back gets each message once, in order."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kernels_service.protocol import KernelMessage
from kernels_service.protocol.message import encode_json
from kernels_service.relay.handover import HandoverError, decode_messages, encode_messages, handed_first

SETTINGS = settings(max_examples=300, deadline=None)
OBJECTS = st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.integers(), st.text(max_size=8)), max_size=3)
MESSAGES = st.builds(
    lambda channel, parts, buffers: KernelMessage(channel, [encode_json(part) for part in parts], buffers),
    st.sampled_from(["shell", "iopub", "stdin", "control"]),
    st.lists(OBJECTS, min_size=4, max_size=4),
    st.lists(st.binary(max_size=16), max_size=2),
)


def message(msg_id: str, channel: str = "iopub") -> KernelMessage:
    return KernelMessage(channel, [encode_json({"msg_id": msg_id}), b"{}", b"{}", b'{"text": "x"}'])


def test_exact_bytes():
    body = encode_messages([KernelMessage("shell", [b"{}", b"{}", b"{}", b'{"a": 1}'], [b"\x00\xff"])])
    assert body == (
        b'{"messages": [{"channel": "shell", "parts": ["e30=", "e30=", "e30=", "eyJhIjogMX0="], "buffers": ["AP8="]}]}'
    )
    assert encode_messages([]) == b'{"messages": []}'
    (decoded,) = decode_messages(body)
    assert (decoded.channel, decoded.parts, decoded.buffers) == (
        "shell",
        [b"{}", b"{}", b"{}", b'{"a": 1}'],
        [b"\x00\xff"],
    )


def test_bodies_that_are_not_hand_overs_are_its_own_error():
    bad = [
        b"",
        b"[]",
        b'{"messages": {}}',
        b'{"messages": [{"channel": "hb", "parts": ["e30=", "e30=", "e30=", "e30="]}]}',
        b'{"messages": [{"channel": "shell", "parts": ["e30=", "e30=", "e30="]}]}',
        b'{"messages": [{"channel": "shell", "parts": ["e30", "e30=", "e30=", "e30="]}]}',
        b'{"messages": [{"channel": "shell", "parts": ["W10=", "e30=", "e30=", "e30="]}]}',  # a header of []
        b'{"messages": [{"channel": "shell", "parts": [1, 2, 3, 4]}]}',
        b'{"messages": [{"channel": "shell", "parts": ["e30=", "e30=", "e30=", "e30="], "buffers": "AP8="}]}',
        b'{"messages": [{"channel": "shell", "parts": ["\\u00e9", "e30=", "e30=", "e30="]}]}',
        b"\xff\xfe",
    ]
    for body in bad:
        try:
            decode_messages(body)
        except HandoverError:
            continue
        raise AssertionError(f"decoded {body!r}")


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_handover_error(body):
    try:
        decode_messages(body)
    except HandoverError:
        pass


@SETTINGS
@given(
    st.recursive(
        st.one_of(st.none(), st.integers(), st.text(max_size=10)),
        lambda c: st.lists(c) | st.dictionaries(st.text(max_size=5), c),
        max_leaves=12,
    )
)
def test_any_json_decodes_or_raises_handover_error(document):
    try:
        decode_messages(json.dumps({"messages": document}).encode())
    except HandoverError:
        pass


@SETTINGS
@given(st.lists(MESSAGES, max_size=5))
def test_encoded_messages_decode_unchanged(messages):
    decoded = decode_messages(encode_messages(messages))
    assert [(m.channel, m.parts, m.buffers) for m in decoded] == [(m.channel, m.parts, m.buffers) for m in messages]


@SETTINGS
@given(st.integers(0, 30), st.integers(0, 30), st.integers(0, 30))
def test_a_client_that_came_back_gets_each_message_once_in_order(kept_only, both, arrived_only):
    """The drained replica kept a prefix of the stream; this one received a suffix that
    overlaps it: together, the whole stream, in order, once."""
    stream = [message(f"m{i}") for i in range(kept_only + both + arrived_only)]
    handed, arrived = stream[: kept_only + both], stream[kept_only:]
    assert [m.parts[0] for m in handed_first(handed, arrived)] == [m.parts[0] for m in stream]


def test_replies_to_requests_sent_here_come_after_what_was_handed():
    handed = [message("a"), message("reply-a", "shell")]
    arrived = [message("a"), message("reply-b", "shell")]
    assert [m.header["msg_id"] for m in handed_first(handed, arrived)] == ["a", "reply-a", "reply-b"]
