"""What a namespace handler sees: its sockets, the handshake, and the way to refuse.

A `Socket` is one client's membership of one namespace. Handlers emit on it; the
Socket.IO connection turns that into packets and the server sends them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio


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


class ClientLink(Protocol):
    """The server's side of one client's Engine.IO session, as that client's sockets use
    it (the server gives each session one: `server.SessionLink`). Declared here, beside
    its user, so that this module needs nothing of the server's."""

    @property
    def handshake(self) -> Handshake: ...

    @property
    def session_id(self) -> str: ...

    @property
    def protocol(self) -> int: ...

    def emit(self, namespace: str, event: str, args: tuple[Any, ...]) -> None: ...

    def send_encoded(self, messages: list[str | bytes]) -> None: ...

    def ack(self, namespace: str, ack_id: int, args: list[Any]) -> None: ...

    def drained(self) -> asyncio.Future[None]: ...

    def disconnect(self, socket: Socket) -> None: ...

    def close_session(self, reason: str) -> None: ...


class Socket:
    """One client's membership of one namespace, as its handler uses it."""

    def __init__(self, link: ClientLink, namespace: str, handler: NamespaceHandler):
        self._link = link
        self.namespace = namespace
        self.handler = handler
        self.sid = ""  # set when the connect is accepted
        self.context: Any = None  # what the namespace handler keeps for this socket

    @property
    def handshake(self) -> Handshake:
        return self._link.handshake

    @property
    def session_id(self) -> str:
        """The Engine.IO session id (for logs)."""
        return self._link.session_id

    def emit(self, event: str, *args: Any) -> None:
        self._link.emit(self.namespace, event, args)

    @property
    def protocol(self) -> int:
        """The Socket.IO protocol of this client: 4 (Engine.IO 3) or 5 (Engine.IO 4)."""
        return self._link.protocol

    def emit_encoded(self, messages: list[str | bytes]) -> None:
        """Send a packet already encoded for this socket's namespace and protocol
        (`connection.encode_packet`): the same bytes may go to many sockets."""
        self._link.send_encoded(messages)

    def ack(self, ack_id: int, args: list[Any]) -> None:
        self._link.ack(self.namespace, ack_id, args)

    def drained(self) -> asyncio.Future[None]:
        """A future done once everything queued for this client so far has left the server."""
        return self._link.drained()

    def disconnect(self) -> None:
        """Server-side disconnect from this namespace."""
        self._link.disconnect(self)

    def close_session(self, reason: str) -> None:
        """End the client's whole Engine.IO session, with a reason."""
        self._link.close_session(reason)
