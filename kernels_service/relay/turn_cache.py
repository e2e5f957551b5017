"""Values computed from a kernel message once per turn of the event loop.

Fan-out hands one message object to every listener in one go, so listeners that keep up
can share one encoded frame of even a very large output instead of encoding it once
each. Entries are forgotten at the end of the turn: a message that waits in a slow
client's outbox does not carry its encodings along (memory stays what the outbox counts).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from kernels_service.protocol import KernelMessage

T = TypeVar("T")


class TurnCache:
    """`get(message, key, compute, *args)`: `compute(message, *args)` once per message and key
    in this turn (a plain function and its arguments: no closure made per listener)."""

    def __init__(self) -> None:
        # the message is kept with its value, so that its id is not reused within the turn
        self._entries: dict[tuple[int, Hashable], tuple[KernelMessage, Any]] = {}

    def get(self, message: KernelMessage, key: Hashable, compute: Callable[..., T], *args: Any) -> T:
        entry_key = (id(message), key)
        entry = self._entries.get(entry_key)
        if entry is not None:
            return entry[1]
        if not self._entries:
            try:
                asyncio.get_running_loop().call_soon(self._entries.clear)
            except RuntimeError:  # no event loop, no turn to share a value within
                return compute(message, *args)
        value = compute(message, *args)
        self._entries[entry_key] = (message, value)
        return value
