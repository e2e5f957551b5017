"""JSON from clients, parsed so that nothing later can trip over it.

`json.loads` accepts what a relay cannot pass on: `NaN`/`Infinity` (not JSON, and
`encode_json` refuses them), lone surrogates such as `"\\ud800"` (no UTF-8 form, so any
later `.encode()` fails), and nesting so deep that parsing or walking the value exhausts
Python's stack. `loads` turns each of these into one `JSONRejected`, so every codec can
map it to its own protocol error in one place.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Deepest nesting accepted; Jupyter messages and socket.io events are far shallower.
MAX_DEPTH = 100
_SURROGATE = re.compile("[\ud800-\udfff]")


class JSONRejected(ValueError):
    """Text that is not JSON a client may send; the message says why."""


def _reject_constant(name: str) -> Any:
    raise JSONRejected(f"{name} is not JSON")


#: Built once: `json.loads` with any option builds a decoder per call (a third of a
#: header's parse).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text; raise JSONRejected for anything that is not plain, safe JSON."""
    try:
        value = _DECODER.decode(_as_text(text))
    except JSONRejected:
        raise
    except RecursionError:
        raise JSONRejected("JSON nested too deeply") from None
    except (ValueError, TypeError) as error:
        raise JSONRejected(f"not valid JSON: {error}") from None
    if _may_be_unsafe(text, max_depth):
        check_value(value, max_depth)
    return value


def _as_text(text: str | bytes) -> str:
    """The text as `json.loads` reads it: bytes in the UTF-8, -16 or -32 they are in, lone
    surrogates passed through (for `check_value` to find). (A BOM is not JSON whitespace:
    the decoder rejects text that starts with one, as `json.loads` does.)"""
    if isinstance(text, str):
        return text
    return text.decode(json.detect_encoding(text), "surrogatepass")


def _may_be_unsafe(text: str | bytes, max_depth: int) -> bool:
    """False when the text cannot hold what `check_value` looks for, so that the walk can be
    skipped (it cost twice the parse of a kernel message's header).

    Nesting needs an opening bracket a level. A lone surrogate needs a `\\u` escape, or the
    character itself: in a str, that character; in bytes (which `json.loads` decodes with
    "surrogatepass"), its UTF-8 form, which starts with the byte 0xED. Bytes with a NUL
    may be UTF-16 or UTF-32, where neither shows as such: those are always walked."""
    if isinstance(text, bytes):
        return b"\\u" in text or b"\xed" in text or b"\x00" in text or text.count(b"{") + text.count(b"[") > max_depth
    return "\\u" in text or text.count("{") + text.count("[") > max_depth or bool(_SURROGATE.search(text))


def check_value(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Raise JSONRejected if a decoded value nests deeper than `max_depth` or holds a
    string (value or key) with a lone surrogate. Iterative: no recursion to exhaust."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise JSONRejected("string with a lone surrogate")
        elif isinstance(item, (list, dict)):
            if depth > max_depth:
                raise JSONRejected(f"JSON nested deeper than {max_depth}")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
