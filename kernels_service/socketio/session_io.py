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


class Transport(Protocol):
    """A websocket as the server sees it (the tornado handler)."""

    def send_frames(self, frames: list[str | bytes]) -> Any:
        """Write frames in one go; a future done when all have left, or None if they cannot be sent."""

    def close_transport(self, code: int | None = None, reason: str | None = None) -> None: ...


@dataclass(eq=False, slots=True)
class SessionIO:
    """One Engine.IO session's state machines and its I/O. Each field has one writer:
    `websocket`, `probe`, `timer` and the output fields (`in_flight`, `unwritten`,
    `drain`): the server; `poll`: the long polls (`polling.LongPolls`); `sockets` and
    `task`: the Socket.IO dispatch (`dispatch.SocketIODispatch`)."""

    engine: EngineIOSession
    connection: SocketIOConnection
    handshake: Handshake
    sockets: dict[str, Socket] = field(default_factory=dict)
    poll: asyncio.Future[list[Packet] | None] | None = None
    websocket: Transport | None = None
    probe: Transport | None = None
    timer: Any = None
    in_flight: int = 0  # bytes written to the websocket (or about to be) and not yet flushed to the network
    unwritten: list[str | bytes] | None = None  # frames for the websocket at the end of this turn
    drain: asyncio.Future[None] | None = None  # done when all output queued so far has left
    task: asyncio.Task[None] | None = None  # the Socket.IO task, while messages wait

    @property
    def sid(self) -> str:
        return self.engine.sid
