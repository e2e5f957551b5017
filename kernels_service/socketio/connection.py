"""The Socket.IO side of one Engine.IO session: namespaces, attachments, acks, errors.

Protocol 4 (Engine.IO 3) joins `/` as soon as the session opens and answers a namespace
connect with `0/nsp`; protocol 5 (Engine.IO 4) joins only on request and answers with
`0/nsp,{"sid":...}`. A refused connect is a CONNECT_ERROR the client sees, never a hang.
Anything malformed, or a packet for a namespace the client has not joined, closes the
session, as the reference server does.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kernels_service.protocol import ProtocolError
from kernels_service.socketio import sio_codec as sio
from kernels_service.socketio.engine import EngineSession

log = logging.getLogger("kernels_service.socketio")


class ConnectRefused(Exception):
    """Raised by a namespace's `on_connect`; the message goes to the client."""


@dataclass(frozen=True)
class Handshake:
    """What the client sent when it opened the Engine.IO session."""

    query: dict[str, str]
    headers: dict[str, str]


class NamespaceHandler(Protocol):
    """What a namespace does with its sockets."""

    def on_connect(self, socket: Socket, auth: dict[str, Any]) -> Awaitable[None]:
        """Check a connect (raise ConnectRefused to refuse); nothing may be sent yet."""

    def on_connected(self, socket: Socket, auth: dict[str, Any]) -> None:
        """The client has its connect acknowledgement: the socket may now emit."""

    def on_event(self, socket: Socket, event: str, args: list[Any], ack_id: int | None) -> None: ...

    def on_disconnect(self, socket: Socket) -> None: ...


class Namespaces(Protocol):
    """Finds the handler of a namespace name, or None for an unknown namespace."""

    def resolve(self, namespace: str) -> NamespaceHandler | None: ...


@dataclass(eq=False)
class Socket:
    """One client's membership of one namespace."""

    connection: SocketIOConnection
    namespace: str
    handler: NamespaceHandler
    sid: str = field(default_factory=lambda: secrets.token_urlsafe(15))
    context: Any = None  # what the namespace handler keeps for this socket

    @property
    def handshake(self) -> Handshake:
        return self.connection.handshake

    def emit(self, event: str, *args: Any) -> None:
        self.connection.send(sio.SioPacket(sio.EVENT, self.namespace, [event, *args]))

    def emit_raw(self, data: str, attachments: list[bytes]) -> None:
        """Emit an event whose JSON array text is already made (placeholders for attachments)."""
        packet = sio.SioPacket(sio.EVENT, self.namespace, attachments=attachments)
        self.connection.send(packet, raw_data=data)

    def ack(self, ack_id: int, args: list[Any]) -> None:
        self.connection.send(sio.SioPacket(sio.ACK, self.namespace, list(args), ack_id))

    def disconnect(self) -> None:
        """Server-side disconnect from this namespace."""
        if self.connection.sockets.get(self.namespace) is self:
            self.connection.send(sio.SioPacket(sio.DISCONNECT, self.namespace))
            self.connection.drop(self)


class SocketIOConnection:
    """Socket.IO packets over one Engine.IO session."""

    def __init__(self, engine: EngineSession, namespaces: Namespaces, handshake: Handshake):
        self.engine = engine
        #: Called when something was queued outside a request; the server sets it to its flush.
        self.on_output: Callable[[], None] = lambda: None
        #: A future done when the output queued so far has left; the server sets it.
        self.drained: Callable[[], Any] = lambda: None
        self.protocol = 4 if engine.version == 3 else 5
        self.namespaces = namespaces
        self.handshake = handshake
        self.sockets: dict[str, Socket] = {}
        self._partial: sio.SioPacket | None = None
        self._expected = 0

    def opened(self) -> None:
        """Protocol 4 joins the main namespace at once."""
        handler = self.namespaces.resolve("/")
        if self.protocol == 4 and handler is not None:
            socket = self.sockets["/"] = Socket(self, "/", handler)
            self.send(sio.SioPacket(sio.CONNECT, "/"))
            handler.on_connected(socket, {})

    def send(self, packet: sio.SioPacket, raw_data: str | None = None) -> None:
        text, *attachments = sio.encode(packet, self.protocol, raw_data)
        self.engine.send(sio.ascii_only(text) if self.engine.b64 else text)  # type: ignore[arg-type]
        for attachment in attachments:
            self.engine.send(attachment)

    async def receive(self, message: str | bytes) -> None:
        """Handle one Engine.IO message; a protocol error closes the session."""
        try:
            packet = self._assemble(message)
            if packet is not None:
                await self._dispatch(packet)
        except ProtocolError as error:
            log.info("Closing Socket.IO session %s: %s", self.engine.sid, error)
            self.engine.close(str(error))

    def _assemble(self, message: str | bytes) -> sio.SioPacket | None:
        if isinstance(message, bytes):
            if self._partial is None:
                raise ProtocolError("binary message without a packet expecting it")
            self._partial.attachments.append(message)
            if len(self._partial.attachments) < self._expected:
                return None
            packet, self._partial = self._partial, None
            packet.data = sio.reconstruct(packet.data, packet.attachments)
            return packet
        if self._partial is not None:
            raise ProtocolError("text message while binary attachments were expected")
        packet, self._expected = sio.decode(message)
        if self._expected:
            self._partial = packet
            return None
        return packet

    async def _dispatch(self, packet: sio.SioPacket) -> None:
        socket = self.sockets.get(packet.namespace)
        if packet.type == sio.CONNECT and socket is None:
            await self._connect(packet.namespace, packet.data or {})
        elif packet.type == sio.CONNECT and self.protocol == 4 and packet.namespace == "/":
            pass  # protocol 4 joined `/` already; some clients still ask
        elif socket is None or packet.type == sio.CONNECT:
            raise ProtocolError(f"packet type {packet.type} for namespace {packet.namespace} not joined")
        elif packet.type == sio.DISCONNECT:
            self.drop(socket)
        elif packet.type in (sio.EVENT, sio.BINARY_EVENT):
            socket.handler.on_event(socket, packet.data[0], packet.data[1:], packet.ack_id)

    async def _connect(self, namespace: str, auth: dict[str, Any]) -> None:
        handler = self.namespaces.resolve(namespace)
        if handler is None:
            return self._refuse(namespace, "Invalid namespace")
        socket = Socket(self, namespace, handler)
        try:
            await handler.on_connect(socket, auth)
        except ConnectRefused as refusal:
            return self._refuse(namespace, str(refusal))
        if self.engine.closed:
            handler.on_disconnect(socket)
            return None
        self.sockets[namespace] = socket
        data = {"sid": socket.sid} if self.protocol == 5 else None
        self.send(sio.SioPacket(sio.CONNECT, namespace, data))
        handler.on_connected(socket, auth)
        return None

    def _refuse(self, namespace: str, message: str) -> None:
        data: Any = {"message": message} if self.protocol == 5 else message
        self.send(sio.SioPacket(sio.CONNECT_ERROR, namespace, data))

    def drop(self, socket: Socket) -> None:
        """Forget a socket and tell its handler."""
        if self.sockets.get(socket.namespace) is socket:
            del self.sockets[socket.namespace]
            socket.handler.on_disconnect(socket)

    def closed(self) -> None:
        """The Engine.IO session ended: every socket is disconnected."""
        for socket in list(self.sockets.values()):
            self.drop(socket)
