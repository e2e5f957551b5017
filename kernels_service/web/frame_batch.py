"""Kernel messages to one websocket client, written in batches.

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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tornado.iostream import StreamClosedError

from kernels_service.protocol import KernelMessage
from kernels_service.protocol.ws_frames import WireFrame, writes_of


class FrameBatch:
    """Frames waiting for the end of this turn, the messages they carry, and the future
    done when they are flushed to the socket (or failed: the client is gone)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.frames: list[WireFrame] = []
        self.messages: list[KernelMessage] = []
        self.flushed: asyncio.Future[None] = loop.create_future()

    def add(self, message: KernelMessage, frame: WireFrame) -> None:
        self.frames.append(frame)
        self.messages.append(message)


class BatchWriter:
    """Writes a connection's frames in batches, one per turn of the event loop.

    `stream_of()` gives the connection's stream, or None once it is closing;
    `on_unsent(messages)` gets the messages of a batch that could not be written (the
    connection closed first), so that they can be kept for the client's return."""

    def __init__(self, stream_of: Callable[[], Any], on_unsent: Callable[[list[KernelMessage]], None]):
        self._stream_of = stream_of
        self._on_unsent = on_unsent
        self._batch: FrameBatch | None = None

    def write(self, message: KernelMessage, frame: WireFrame) -> asyncio.Future[None]:
        """Queue one frame; the future, the same for every frame of a batch, is done when
        the batch reached the socket."""
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = FrameBatch(loop)
            loop.call_soon(self._flush)
        self._batch.add(message, frame)
        return self._batch.flushed

    def take_pending(self) -> list[KernelMessage]:
        """The connection closed: the messages not yet written, which will not be."""
        batch, self._batch = self._batch, None
        if batch is None:
            return []
        _fail(batch.flushed)
        return batch.messages

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None:  # taken by take_pending
            return
        stream = self._stream_of()
        try:
            if stream is None:
                raise StreamClosedError()
            for piece in writes_of(batch.frames):
                written = stream.write(piece)  # the stream's writes complete in order
        except StreamClosedError:
            _fail(batch.flushed)
            self._on_unsent(batch.messages)
            return
        written.add_done_callback(lambda done: _settle(batch.flushed, done))


def _fail(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(StreamClosedError())


def _settle(future: asyncio.Future[None], written: asyncio.Future[None]) -> None:
    if future.done():
        return
    if written.cancelled() or written.exception() is not None:
        future.set_exception(StreamClosedError())
    else:
        future.set_result(None)
