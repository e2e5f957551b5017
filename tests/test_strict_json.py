"""strict_json's verdict is the full check's, with or without its shortcut.

`loads` skips walking the decoded value when the text cannot hold deep nesting or a lone
surrogate; these properties hold it to the verdict of always walking, on text made to
contain exactly those things, as str and as bytes in each encoding `json.loads` detects.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels_service.protocol import strict_json

SETTINGS = settings(max_examples=400, deadline=None)
DEPTH = 3  # small, so that short texts cross it
PIECES = ['{"a":', "[", "]", "}", ",", '"', "\\ud800", "\\udc00", "\\u00e9", "\\n", "\ud800", "é", "1", "NaN", " "]
PIECES.append("\ufeff")  # a BOM, which json.loads refuses at a str's start
TRICKY = st.lists(st.sampled_from(PIECES) | st.characters(), max_size=24).map("".join)
ENCODINGS = ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be")


def verdict_of_the_full_check(text: str | bytes) -> str:
    try:
        value = json.loads(text, parse_constant=strict_json._reject_constant)
    except strict_json.JSONRejected:
        return "rejected"
    except (ValueError, TypeError, RecursionError):
        return "rejected"
    try:
        strict_json.check_value(value, DEPTH)
    except strict_json.JSONRejected:
        return "rejected"
    return "accepted"


def verdict_of_loads(text: str | bytes) -> str:
    try:
        strict_json.loads(text, DEPTH)
    except strict_json.JSONRejected:
        return "rejected"
    return "accepted"


@SETTINGS
@given(TRICKY)
def test_str_gets_the_full_checks_verdict(text):
    assert verdict_of_loads(text) == verdict_of_the_full_check(text)


@SETTINGS
@given(TRICKY, st.sampled_from(ENCODINGS))
def test_bytes_in_any_encoding_get_the_full_checks_verdict(text, encoding):
    raw = text.encode(encoding, "surrogatepass")
    assert verdict_of_loads(raw) == verdict_of_the_full_check(raw)


@SETTINGS
@given(st.binary(max_size=40) | TRICKY.map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_any_bytes_read_as_json_loads_reads_them(raw):
    """`loads` keeps one decoder rather than calling `json.loads`: same verdict, same value."""
    assert verdict_of_loads(raw) == verdict_of_the_full_check(raw)
    if verdict_of_loads(raw) == "accepted":
        assert strict_json.loads(raw, DEPTH) == json.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":"\xed\xa0\x80"}',  # a surrogate in UTF-8 form, which json.loads decodes
        '{"a":"\\ud800"}'.encode("utf-16"),
        '{"a":"\\udc00"}'.encode("utf-32-le"),
        b"[[[[1]]]]",
        '"\ud800"',
    ],
)
def test_what_the_shortcut_must_not_skip_is_rejected(raw):
    with pytest.raises(strict_json.JSONRejected):
        strict_json.loads(raw, DEPTH)
