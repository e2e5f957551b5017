"""Property tests of the Jupyter websocket codecs (legacy JSON, legacy binary, v1).

Whatever a client sends, a decoder returns a message or raises ProtocolError, never
another exception (which would abort the connection with a traceback instead of the
documented close 1007). What the server encodes, a decoder reads back unchanged.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kernels_service.protocol import KernelMessage, ProtocolError
from kernels_service.protocol.message import encode_json
from kernels_service.protocol.websocket import (
    decode_legacy_binary,
    decode_legacy_text,
    decode_v1,
    encode_legacy,
    encode_v1,
)

SETTINGS = settings(max_examples=200, deadline=None)
TRICKY_TEXT = st.text(
    alphabet=st.one_of(st.sampled_from(list('{}[]":,0123456789\\NaInfty\ud800\udc00é😀')), st.characters()),
    max_size=80,
)
SCALAR_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
JSON_OBJECTS = st.dictionaries(
    SCALAR_TEXT,
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), SCALAR_TEXT),
        lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(SCALAR_TEXT, children, max_size=3)),
        max_leaves=10,
    ),
    max_size=4,
)


def decodes_or_refuses(decode, frame) -> None:
    try:
        decode(frame)
    except ProtocolError:
        pass


@SETTINGS
@given(frame=st.binary(max_size=300))
def test_any_binary_frame_decodes_or_is_refused(frame):
    decodes_or_refuses(decode_v1, frame)
    decodes_or_refuses(decode_legacy_binary, frame)


@SETTINGS
@given(text=TRICKY_TEXT)
def test_any_text_frame_decodes_or_is_refused(text):
    decodes_or_refuses(decode_legacy_text, text)
    decodes_or_refuses(decode_legacy_text, text.encode("utf-8", "surrogatepass"))


@SETTINGS
@given(content=st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TRICKY_TEXT),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(TRICKY_TEXT, children, max_size=3)),
    max_leaves=15,
))  # fmt: skip
def test_hostile_json_in_a_well_formed_frame_decodes_or_is_refused(content):
    """NaN, infinities and lone surrogates, in a legacy message and in a v1 part."""
    text = json.dumps({"channel": "shell", "header": {"msg_id": "m"}, "content": content}, ensure_ascii=False)
    decodes_or_refuses(decode_legacy_text, text)
    raw = json.dumps({"c": content}).encode()
    frame = encode_v1(KernelMessage("shell", [b'{"msg_id":"m"}', b"{}", b"{}", raw]))
    decodes_or_refuses(decode_v1, frame)


def messages():
    return st.builds(
        lambda channel, parts, buffers: KernelMessage(channel, [encode_json(p) for p in parts], buffers),
        st.sampled_from(["shell", "control", "stdin"]),
        st.tuples(JSON_OBJECTS.map(lambda h: {"msg_id": "m", **h}), JSON_OBJECTS, JSON_OBJECTS, JSON_OBJECTS),
        st.lists(st.binary(max_size=20), max_size=3),
    )


@SETTINGS
@given(message=messages())
def test_v1_round_trips_byte_for_byte(message):
    decoded = decode_v1(encode_v1(message))
    assert (decoded.channel, decoded.parts, decoded.buffers) == (message.channel, message.parts, message.buffers)


@SETTINGS
@given(message=messages())
def test_legacy_round_trips(message):
    frame, binary = encode_legacy(message)
    decoded = decode_legacy_binary(frame) if binary else decode_legacy_text(frame)
    assert decoded.channel == message.channel and decoded.buffers == message.buffers
    assert [json.loads(p) for p in decoded.parts] == [json.loads(p) for p in message.parts]
