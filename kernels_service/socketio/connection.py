"""The Socket.IO side of one Engine.IO session, as a state machine: messages in, events out.

Sans-IO like `engine.py`, and apart from it: it never touches the Engine.IO session.
`receive` takes one Engine.IO message and returns what happened (`ConnectRequested`,
`EventReceived`, `Disconnected`, `SessionEnds`); every call that answers or sends
(`accept`, `refuse`, `emit`, `ack`, `disconnect`) returns the Engine.IO messages to
queue, and the I/O layer queues them on the session. The I/O layer decides a connect
(it may have to wait for a kernel) and answers with `accept` or `refuse`; answering a
connect nobody asked for is our own misuse (`LocalProtocolError`). Socket ids come from
the `new_id` the connection is given, so tests can pin them.

Protocol 4 (Engine.IO 3) joins `/` as soon as the session opens and answers a namespace
connect with `0/nsp`; protocol 5 (Engine.IO 4) joins only on request and answers with
`0/nsp,{"sid":...}`. A refused connect is a CONNECT_ERROR the client sees, never a hang.
Anything malformed, or a packet for a namespace the client has not joined, ends the
session (`SessionEnds`), as the reference server does. A session that has joined no
namespace for `connect_timeout` seconds ends too: an idle session costs the server and
gives nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kernels_service.socketio import sio_codec as sio
from kernels_service.socketio.errors import LocalProtocolError, RemoteProtocolError


@dataclass(frozen=True)
class ConnectRequested:
    """The client asks to join `namespace`; answer with `accept` or `refuse`."""

    namespace: str
    auth: dict[str, Any]


@dataclass(frozen=True)
class EventReceived:
    """An event (with `ack_id` if the client wants an ack) on a joined namespace."""

    namespace: str
    name: str
    args: list[Any]
    ack_id: int | None


@dataclass(frozen=True)
class Disconnected:
    """A joined namespace was left (by the client, or because the session ended)."""

    namespace: str


@dataclass(frozen=True)
class SessionEnds:
    """The client broke the protocol, or joined nothing in time: close its session."""

    reason: str


Event = ConnectRequested | EventReceived | Disconnected | SessionEnds
Messages = list[str | bytes]  # Engine.IO messages to queue for the client, in order


def new_socket_id() -> str:
    """A random socket id, as the reference server makes them."""
    return secrets.token_urlsafe(15)


class SocketIOConnection:
    """Namespaces, acks and binary attachments over one Engine.IO session."""

    __slots__ = (
        "protocol", "connect_timeout", "joined", "connecting", "ended", "_new_id", "_idle_since", "_partial",
        "_expected",
    )  # fmt: skip

    def __init__(
        self, engine_version: int, now: float, connect_timeout: float, new_id: Callable[[], str] = new_socket_id
    ):
        self.protocol = 4 if engine_version == 3 else 5
        self.connect_timeout = connect_timeout
        self.joined: dict[str, str] = {}  # namespace -> socket id
        self.connecting: frozenset[str] = frozenset()  # asked for, not yet answered (usually none)
        self.ended = False  # the session is over: nothing more is sent or received
        self._new_id = new_id
        self._idle_since: float | None = now
        self._partial: sio.SioPacket | None = None
        self._expected = 0

    # --- inputs -----------------------------------------------------------------------

    def opened(self) -> list[Event]:
        """Protocol 4 clients are in `/` from the start: ask for that connect at once."""
        if self.protocol == 4:
            self.connecting = frozenset({"/"})
            return [ConnectRequested("/", {})]
        return []

    def receive(self, message: str | bytes, now: float) -> list[Event]:
        """Handle one Engine.IO message; a protocol error ends the session (and every namespace)."""
        if self.ended:
            return []
        try:
            packet = self._assemble(message)
            return [] if packet is None else self._dispatch(packet, now)
        except RemoteProtocolError as error:
            return [SessionEnds(str(error)), *self.session_closed(now)]

    def _assemble(self, message: str | bytes) -> sio.SioPacket | None:
        if isinstance(message, bytes):
            if self._partial is None:
                raise RemoteProtocolError("binary message without a packet expecting it")
            self._partial.attachments.append(message)
            if len(self._partial.attachments) < self._expected:
                return None
            packet, self._partial = self._partial, None
            packet.data = sio.reconstruct(packet.data, packet.attachments)
            return packet
        if self._partial is not None:
            raise RemoteProtocolError("text message while binary attachments were expected")
        packet, self._expected = sio.decode(message)
        if self._expected:
            self._partial = packet
            return None
        return packet

    def _dispatch(self, packet: sio.SioPacket, now: float) -> list[Event]:
        namespace = packet.namespace
        if packet.type == sio.CONNECT:
            if namespace in self.joined or namespace in self.connecting:
                return []  # protocol 4 joined `/` already, yet some clients still ask
            self.connecting |= {namespace}
            return [ConnectRequested(namespace, packet.data or {})]
        if namespace not in self.joined:
            if namespace in self.connecting:
                raise RemoteProtocolError(f"packet for {namespace} before its connect was answered")
            raise RemoteProtocolError(f"packet type {packet.type} for namespace {namespace} not joined")
        if packet.type == sio.DISCONNECT:
            self._leave(namespace, now)
            return [Disconnected(namespace)]
        if packet.type in (sio.EVENT, sio.BINARY_EVENT):
            return [EventReceived(namespace, packet.data[0], packet.data[1:], packet.ack_id)]
        return []  # acks from the client: the server never asks for one

    def _answering(self, namespace: str) -> bool:
        """Take `namespace` off the connects waiting for an answer; False once the session
        ended (the client left while the answer was decided: nothing to send)."""
        if self.ended:
            return False
        if namespace not in self.connecting:
            raise LocalProtocolError(f"no connect to {namespace} waits for an answer")
        self.connecting -= {namespace}
        return True

    def accept(self, namespace: str) -> tuple[str | None, Messages]:
        """Answer a ConnectRequested with yes: the socket id (None if the session ended
        meanwhile) and the messages to send."""
        if not self._answering(namespace):
            return None, []
        sid = self.joined[namespace] = self._new_id()
        self._idle_since = None
        return sid, self.encode(sio.SioPacket(sio.CONNECT, namespace, {"sid": sid} if self.protocol == 5 else None))

    def refuse(self, namespace: str, message: str) -> Messages:
        """Answer a ConnectRequested with no: the client sees the message."""
        if not self._answering(namespace):
            return []
        return self.encode(sio.SioPacket(sio.CONNECT_ERROR, namespace, {"message": message}))

    def tick(self, now: float) -> list[Event]:
        """End a session that has joined no namespace for `connect_timeout`."""
        if not self.ended and self._idle_since is not None and now >= self._idle_since + self.connect_timeout:
            return [SessionEnds("no namespace joined in time")]
        return []

    def session_closed(self, now: float) -> list[Event]:
        """The Engine.IO session ended: every joined namespace is left."""
        left = [Disconnected(namespace) for namespace in self.joined]
        self.joined.clear()
        self.connecting = frozenset()
        self.ended = True
        return left

    # --- outputs ----------------------------------------------------------------------

    def deadline(self) -> float | None:
        """When `tick` must next be called, if ever."""
        return None if self._idle_since is None or self.ended else self._idle_since + self.connect_timeout

    def emit(self, namespace: str, event: str, *args: Any) -> Messages:
        return self.encode(sio.SioPacket(sio.EVENT, namespace, [event, *args]))

    def ack(self, namespace: str, ack_id: int, args: list[Any]) -> Messages:
        return self.encode(sio.SioPacket(sio.ACK, namespace, list(args), ack_id))

    def disconnect(self, namespace: str, now: float) -> Messages:
        """Server-side disconnect from a joined namespace; LocalProtocolError if it is not."""
        if namespace not in self.joined:
            raise LocalProtocolError(f"{namespace} is not joined")
        self._leave(namespace, now)
        return self.encode(sio.SioPacket(sio.DISCONNECT, namespace))

    def _leave(self, namespace: str, now: float) -> None:
        del self.joined[namespace]
        if not self.joined:
            self._idle_since = now

    def encode(self, packet: sio.SioPacket, raw_data: list[bytes] | None = None) -> Messages:
        """The Engine.IO messages of a packet for this connection's protocol (none once
        the session ended)."""
        return [] if self.ended else encode_packet(packet, self.protocol, raw_data)


def encode_packet(packet: sio.SioPacket, protocol: int, raw_data: list[bytes] | None = None) -> list[str | bytes]:
    """The Engine.IO messages of a packet: its text, then its attachments.

    `raw_data`: the packet's JSON data already made, as UTF-8 pieces (joined once, never
    decoded). Protocol 4 text is ASCII-only, so every Engine.IO 3 client (1.x re-encodes
    text payloads as UTF-8, 2.x does not) reads the same characters.
    """
    text, *attachments = sio.encode(packet, protocol, raw_data)
    return [sio.ascii_only(text) if protocol == 4 else text, *attachments]
