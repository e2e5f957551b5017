"""The I/O side of one Engine.IO session: what the tornado layer keeps beside the two
sans-IO state machines (`engine.EngineIOSession`, `connection.SocketIOConnection`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol

from kernels_service.socketio.connection import SocketIOConnection
from kernels_service.socketio.eio_codec import Packet
from kernels_service.socketio.engine import EngineIOSession
from kernels_service.socketio.namespaces import Handshake, Socket
from kernels_service.websocket_writer import FrameWriter


class Transport(Protocol):
    """A websocket as the server sees it (the tornado handler): its frame writer, and a way to close it."""

    @property
    def writer(self) -> FrameWriter: ...

    def close_transport(self, code: int | None = None, reason: str | None = None) -> None: ...


@dataclass(eq=False, slots=True)
class SessionIO:
    """One Engine.IO session's state machines and its I/O. Each field has one writer:
    `websocket`, `probe`, `timer` and `drain`: the server; `poll`: the long polls
    (`polling.LongPolls`); `sockets` and `task`: the Socket.IO dispatch
    (`dispatch.SocketIODispatch`). What is on its way to a websocket is counted by that
    websocket's own writer (`websocket_writer.FrameWriter`)."""

    engine: EngineIOSession
    connection: SocketIOConnection
    handshake: Handshake
    sockets: dict[str, Socket] = field(default_factory=dict)
    poll: asyncio.Future[list[Packet] | None] | None = None
    websocket: Transport | None = None
    probe: Transport | None = None
    timer: Any = None
    drain: asyncio.Future[None] | None = None  # done when all output queued so far has left
    task: asyncio.Task[None] | None = None  # the Socket.IO task, while messages wait

    @property
    def sid(self) -> str:
        return self.engine.sid
