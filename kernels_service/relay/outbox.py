"""A per-client outbox: bounded memory for slow clients, and no output lost silently.

Messages go straight to the transport while the client keeps up. Once more than
`high_water` bytes are written but not yet flushed to the client's socket, messages wait
here instead; consecutive `stream` messages of the same parent and stream name are merged
(clients append stream text, so nothing is lost). Only if what waits grows past `limit`
is the client given up on, through `on_overflow`, with a reason, never by dropping output.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from kernels_service.protocol import KernelMessage
from kernels_service.protocol.message import encode_json
from kernels_service.relay.turn_cache import TurnCache

#: A merged stream message grows to about this size, then the next run starts.
MAX_RUN_BYTES = 1024 * 1024

#: Stream contents, decoded once per message for every outbox it reaches in a turn: when
#: many clients fall behind at once, each would otherwise decode every message itself.
_CONTENTS = TurnCache()

#: Writes one message; returns its size in bytes and a future done when it is flushed.
SendFunction = Callable[[KernelMessage], "tuple[int, Any]"]


class MergingQueue:
    """Messages waiting in order, consecutive stream output of one parent and stream name
    merged into runs (clients append stream text, so nothing is lost); `bytes` is what
    they add up to."""

    def __init__(self, merge: bool = True) -> None:
        """`merge=False`: every message kept as it came (each keeps its own msg_id)."""
        self._entries: deque[KernelMessage | StreamRun] = deque()
        self.bytes = 0
        self._merge = merge

    def __len__(self) -> int:
        return len(self._entries)

    def append(self, message: KernelMessage) -> None:
        tail = self._entries[-1] if self._entries else None
        if not self._merge:
            self._entries.append(message)
        elif not (isinstance(tail, StreamRun) and tail.extend(message)):
            self._entries.append(StreamRun.start(message) or message)
        self.bytes += size_of(message)

    def stop_merging(self) -> None:
        """Append each message as it comes from now on (runs made so far stay)."""
        self._merge = False

    def popleft(self) -> KernelMessage:
        entry = self._entries.popleft()
        self.bytes -= entry.size if isinstance(entry, StreamRun) else size_of(entry)
        return entry.message() if isinstance(entry, StreamRun) else entry

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


class Outbox:
    """Flow control between the relay and one client transport."""

    def __init__(
        self,
        send: SendFunction,
        on_overflow: Callable[[str], None],
        high_water: int = 4 * 1024 * 1024,
        limit: int = 128 * 1024 * 1024,
    ):
        self._send = send
        self._on_overflow = on_overflow
        self._high_water = high_water
        self._limit = limit
        self._in_flight = 0
        self._unflushed: dict[Any, int] = {}  # bytes in flight per write future not yet done
        self._waiting = MergingQueue()
        self.closed = False

    @property
    def waiting(self) -> int:
        """How many messages wait for the client to catch up."""
        return len(self._waiting)

    @property
    def backed_up(self) -> bool:
        """Output is on its way to the client but not all of it reached its socket yet."""
        return self._in_flight > 0 or bool(self._waiting)

    def put(self, message: KernelMessage) -> None:
        """Send now if the client keeps up, else queue (merging stream output)."""
        if self.closed:
            return
        if not self._waiting and self._in_flight < self._high_water:
            self._write(message)
            return
        self._waiting.append(message)
        if self._waiting.bytes > self._limit:
            self.closed = True
            self._waiting.clear()
            self._on_overflow(f"client too slow: more than {self._limit // (1024 * 1024)} MiB of output waiting")

    def close(self) -> None:
        """The client is gone: drop what waits for it and take nothing more."""
        self.closed = True
        self._waiting.clear()

    def take_waiting(self) -> list[KernelMessage]:
        """The client is gone: what waited for it (merged), in order, for someone to keep;
        the outbox takes nothing more."""
        self.closed = True
        waiting = []
        while self._waiting:
            waiting.append(self._waiting.popleft())
        return waiting

    def _write(self, message: KernelMessage) -> None:
        size, flushed = self._send(message)
        if flushed is None:
            return
        self._in_flight += size
        if flushed in self._unflushed:  # one future for a batch of writes: one callback
            self._unflushed[flushed] += size
        else:
            self._unflushed[flushed] = size
            flushed.add_done_callback(self._flushed)

    def _flushed(self, flushed: Any) -> None:
        """Writes reached the socket (or failed: the client is gone); send what waits."""
        if not flushed.cancelled() and flushed.exception() is not None:
            self.close()  # the exception is read, so asyncio does not log it as never retrieved
        self._in_flight -= self._unflushed.pop(flushed)
        # A loop, not recursion: a send that completes at once (flushed None) comes back here.
        while self._waiting and self._in_flight < self._high_water and not self.closed:
            self._write(self._waiting.popleft())


def _decoded_content(message: KernelMessage) -> dict[str, Any]:
    return message.content()


def size_of(message: KernelMessage) -> int:
    return sum(len(part) for part in message.parts) + sum(len(b) for b in message.buffers)


class StreamRun:
    """Consecutive iopub `stream` messages of one parent and stream name, waiting as one.

    Texts are collected in a list and joined once, when the run is sent.
    """

    def __init__(self, first: KernelMessage, content: dict[str, Any]):
        self._first = first
        self._content = content
        self._texts = [content["text"]]
        self.size = size_of(first)

    @classmethod
    def start(cls, message: KernelMessage) -> StreamRun | None:
        """A run beginning with this message, if it is stream output."""
        if message.channel != "iopub" or message.buffers or message.msg_type != "stream":
            return None
        content = _CONTENTS.get(message, "content", _decoded_content)
        return cls(message, content) if isinstance(content.get("text"), str) else None

    def extend(self, message: KernelMessage) -> bool:
        """Take the message into the run if it continues it; False if it does not."""
        if message.channel != "iopub" or message.buffers or message.parts[1] != self._first.parts[1]:
            return False
        if self.size + size_of(message) > MAX_RUN_BYTES:
            return False
        if message.msg_type != "stream":
            return False
        content = _CONTENTS.get(message, "content", _decoded_content)
        if content.get("name") != self._content.get("name") or not isinstance(content.get("text"), str):
            return False
        self._texts.append(content["text"])
        self.size += size_of(message)
        return True

    def message(self) -> KernelMessage:
        """The run as one message: the first message's header, all the text."""
        if len(self._texts) == 1:
            return self._first
        content = encode_json({**self._content, "text": "".join(self._texts)})
        return KernelMessage("iopub", [*self._first.parts[:3], content])
