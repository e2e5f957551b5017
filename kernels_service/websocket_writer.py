"""The one websocket writer both doors use: a connection's frames, written to its stream
in batches, with the bytes on their way counted against a high-water mark.

tornado's `write_message` wraps each frame in a task of its own and sends it at once: a
system call, a future and a callback per message per client. When a kernel's output fans
out to many clients, that was most of the relay's work. Here the frames queued for one
connection in one turn of the event loop (a burst read from the kernel, fanned out) go
to its stream as one write: one system call and one future for the batch.

A frame is kept as the pieces it is made of (the message's own parts, as the kernel sent
them, between the few bytes the protocol adds), and a batch goes out as
`protocol.ws_frames.writes_of` splits it: small pieces joined, a big one (a 1 MB output)
handed to the stream as it is, which sends it from that same object: the relay never
copies it into a frame.

`in_flight` counts the bytes queued or written but not yet flushed to the socket; a
connection's owner sends more only while it is under `HIGH_WATER`, and `on_flushed`
tells it when a batch has left.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tornado.iostream import IOStream, StreamClosedError

if TYPE_CHECKING:
    from tornado.websocket import WebSocketHandler

from kernels_service.protocol.ws_frames import WireFrame, writes_of

#: Bytes on their way to one websocket before more waits on the owner's side.
HIGH_WATER = 4 * 1024 * 1024


def open_stream(handler: WebSocketHandler) -> IOStream | None:
    """The TCP stream under a tornado websocket, for writing frames to it directly; None
    once the connection is closing or gone.

    tornado has no public call for this: its `WebSocketHandler.ws_connection` (the
    protocol object, None before the upgrade and after the close) and that object's
    `stream` are public names but not documented API. This is the one place that reads
    them; `tests/test_dependency_internals.py` checks them against the installed tornado."""
    connection = handler.ws_connection
    if connection is None or connection.is_closing():
        return None
    stream = getattr(connection, "stream", None)
    return stream if isinstance(stream, IOStream) else None


class FrameBatch:
    """Frames waiting for the end of this turn, what they carry (the owner's items, a
    kernel message for instance), their size, and the future done when they are flushed
    to the socket (or failed: the client is gone)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.frames: list[WireFrame] = []
        self.items: list[Any] = []
        self.size = 0
        self.flushed: asyncio.Future[None] = loop.create_future()

    def add(self, item: Any, frame: WireFrame) -> None:
        self.frames.append(frame)
        self.items.append(item)
        self.size += len(frame.header) + frame.length


class FrameWriter:
    """Writes a connection's frames in batches, one per turn of the event loop.

    `stream_of()` gives the connection's stream, or None once it is closing;
    `on_unsent(items)` gets the items of a batch that could not be written (the
    connection closed first), so that they can be kept for the client's return;
    `on_flushed()` is called when a batch has reached the socket."""

    def __init__(
        self,
        stream_of: Callable[[], Any],
        on_unsent: Callable[[list[Any]], None] = lambda items: None,
        on_flushed: Callable[[], None] = lambda: None,
        high_water: int = HIGH_WATER,
    ):
        self._stream_of = stream_of
        self._on_unsent = on_unsent
        self._on_flushed = on_flushed
        self.high_water = high_water
        self.in_flight = 0  # bytes queued or written and not yet flushed to the socket
        self._batch: FrameBatch | None = None

    @property
    def below_high_water(self) -> bool:
        return self.in_flight < self.high_water

    def write(self, frame: WireFrame, item: Any = None) -> asyncio.Future[None]:
        """Queue one frame; the future, the same for every frame of a batch, is done when
        the batch reached the socket."""
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = FrameBatch(loop)
            loop.call_soon(self.flush_now)
        self._batch.add(item, frame)
        self.in_flight += len(frame.header) + frame.length
        return self._batch.flushed

    def take_pending(self) -> list[Any]:
        """The connection closed: the items not yet written, which will not be."""
        batch, self._batch = self._batch, None
        if batch is None:
            return []
        self.in_flight -= batch.size
        _fail(batch.flushed)
        return batch.items

    def flush_now(self) -> None:
        """Write the batch queued so far (at the end of the turn, or before a close)."""
        batch, self._batch = self._batch, None
        if batch is None:  # written already, or taken by take_pending
            return
        stream = self._stream_of()
        try:
            if stream is None:
                raise StreamClosedError()
            for piece in writes_of(batch.frames):
                written = stream.write(piece)  # the stream's writes complete in order
        except StreamClosedError:
            self.in_flight -= batch.size
            _fail(batch.flushed)
            self._on_unsent(batch.items)
            return
        written.add_done_callback(lambda done: self._settled(batch, done))

    def _settled(self, batch: FrameBatch, written: asyncio.Future[None]) -> None:
        self.in_flight -= batch.size
        if written.cancelled() or written.exception() is not None:
            _fail(batch.flushed)
        elif not batch.flushed.done():
            batch.flushed.set_result(None)
        self._on_flushed()


def _fail(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(StreamClosedError())
        future.exception()  # read here: an owner that does not wait for it must not log "never retrieved"
