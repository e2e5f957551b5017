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


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON text; raise JSONRejected for anything that is not plain, safe JSON."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except JSONRejected:
        raise
    except RecursionError:
        raise JSONRejected("JSON nested too deeply") from None
    except (ValueError, TypeError) as error:
        raise JSONRejected(f"not valid JSON: {error}") from None
    check_value(value, max_depth)
    return value


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
