"""kernel-relay's socket.io namespaces: `/shell/<id>`, `/stdin/<id>` (`/stdio/<id>`),
`/iopub/<id>`, `/control/<id>`, with or without the base path in front.

Each namespace is one channel of one kernel. All socket.io clients of a kernel share one
relay session, and every socket in a namespace gets every message of that channel, as
kernel-relay did. The event `msg` carries one Jupyter message each way; buffers travel
as binary attachments.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from kernels_service.access import AccessPolicy, token_from
from kernels_service.kernels import KernelsError, NoSuchKernel
from kernels_service.metrics import closed_reason, count_closed
from kernels_service.protocol import KernelMessage, ProtocolError
from kernels_service.protocol.message import message_from_dict
from kernels_service.relay import RelayHub, RelaySession
from kernels_service.relay.outbox import Outbox
from kernels_service.relay.session import KernelNotReading
from kernels_service.relay.turn_cache import TurnCache
from kernels_service.socketio import sio_codec as sio
from kernels_service.socketio.connection import encode_packet
from kernels_service.socketio.namespaces import ConnectRefused, Socket

log = logging.getLogger("kernels_service.socketio")

CHANNEL_OF_NAMESPACE = {"shell": "shell", "stdin": "stdin", "stdio": "stdin", "iopub": "iopub", "control": "control"}
NAMESPACE = re.compile(r"^/(?P<name>shell|stdin|stdio|iopub|control)/(?P<kernel_id>[\w-]+)/?$")
PLACEHOLDER = '{{"_placeholder":true,"num":{}}}'


def msg_event(message: KernelMessage) -> tuple[list[bytes], list[bytes]]:
    """The `["msg", {...}]` event as UTF-8 pieces spliced from the raw parts (no JSON is
    decoded, no part copied: the socket.io codec joins the pieces once), and its buffers."""
    header, parent, metadata, content = message.parts
    buffers = ",".join(PLACEHOLDER.format(i) for i in range(len(message.buffers))).encode()
    pieces = [
        b'["msg",{"header":', header, b',"parent_header":', parent, b',"metadata":', metadata,
        b',"content":', content, b',"buffers":[', buffers, b"]}]",
    ]  # fmt: skip
    return pieces, message.buffers


def message_from_event(channel: str, args: list[Any]) -> KernelMessage:
    """A client's `msg` event as a kernel message; ProtocolError if it is not one."""
    if len(args) != 1 or not isinstance(args[0], dict):
        raise ProtocolError("msg takes one Jupyter message object")
    buffers = args[0].get("buffers") or []
    if not isinstance(buffers, list) or not all(isinstance(b, bytes) for b in buffers):
        raise ProtocolError("buffers must be binary attachments")
    return message_from_dict(channel, args[0], buffers)


class SharedEncodings:
    """Encodes a kernel message once per namespace spelling and protocol, for every socket
    it fans out to in this turn of the event loop (see relay.turn_cache)."""

    def __init__(self) -> None:
        self._cache = TurnCache()

    def encoded(self, message: KernelMessage, namespace: str, protocol: int) -> list[str | bytes]:
        return self._cache.get(message, (namespace, protocol), _encode_event, namespace, protocol)


def _encode_event(message: KernelMessage, namespace: str, protocol: int) -> list[str | bytes]:
    pieces, buffers = msg_event(message)
    packet = sio.SioPacket(sio.EVENT, namespace, attachments=buffers)
    return encode_packet(packet, protocol, pieces)


class ChannelListener:
    """Relays one channel of a kernel to one socket (a RelayListener), through an outbox
    that holds output back and merges stream messages while the client is slow."""

    def __init__(self, socket: Socket, channel: str, session: RelaySession, queue_limit: int, shared: SharedEncodings):
        self.socket = socket
        self.channel = channel
        self.channels = frozenset((channel,))  # RelayListener
        self.session = session
        self.shared = shared
        self.outbox = Outbox(self._emit, self._give_up, limit=queue_limit)

    def deliver(self, message: KernelMessage) -> None:
        self.outbox.put(message)  # the session hands it only messages of its channel

    def _emit(self, message: KernelMessage) -> tuple[int, Any]:
        messages = self.shared.encoded(message, self.socket.namespace, self.socket.protocol)
        self.socket.emit_encoded(messages)
        return sum(map(len, messages)), self.socket.drained()

    def _give_up(self, reason: str) -> None:
        log.warning("Closing Socket.IO session of %s: %s", self.socket.namespace, reason)
        self.socket.close_session(reason)

    def relay_closed(self, reason: str) -> None:
        count_closed(closed_reason(reason))
        self.socket.disconnect()

    def moved(self, reason: str) -> None:
        """socket.io's clients share one session per kernel: none is handed over."""
        self.relay_closed(reason)


class KernelChannelNamespace:
    """The handler of one `/<channel>/<kernel id>` namespace."""

    def __init__(self, namespaces: KernelNamespaces, channel: str, kernel_id: str):
        self.hub = namespaces.hub
        self.access = namespaces.access
        self.queue_limit = namespaces.queue_limit
        self.shared = namespaces.shared
        self.channel = channel
        self.kernel_id = kernel_id

    async def on_connect(self, socket: Socket, auth: dict[str, Any]) -> None:
        check_token(self.access, socket, auth)
        try:
            relay = await self.hub.find(self.kernel_id)
        except KernelsError as error:  # none, or the shared store out of reach
            raise ConnectRefused(str(error)) from None
        await relay.wait_ready()
        if relay.closed:
            raise ConnectRefused(f"No such kernel: {self.kernel_id}")

    def on_connected(self, socket: Socket, auth: dict[str, Any]) -> None:
        try:
            relay = self.hub.get(self.kernel_id)
            session = relay.shared_session()
        except NoSuchKernel:
            socket.disconnect()
            return
        socket.context = ChannelListener(socket, self.channel, session, self.queue_limit, self.shared)
        relay.attach(session, socket.context)

    def on_event(self, socket: Socket, event: str, args: list[Any], ack_id: int | None) -> None:
        listener = socket.context
        if event != "msg" or listener is None:
            return
        try:
            message = message_from_event(self.channel, args)
            listener.session.send(message)
        except ProtocolError as error:
            log.info("Bad msg on %s: %s", socket.namespace, error)
            socket.emit("error", {"message": str(error)})
        except KernelNotReading as error:  # the kernel is hung: this namespace is left, with the reason
            log.warning("Disconnecting %s: %s", socket.namespace, error)
            socket.emit("error", {"message": str(error)})
            socket.disconnect()

    def on_disconnect(self, socket: Socket) -> None:
        listener, socket.context = socket.context, None
        if listener is None:
            return
        try:
            relay = self.hub.get(self.kernel_id)
        except NoSuchKernel:  # the kernel is gone, and its sessions with it
            return
        relay.detach(listener.session, listener, listener.outbox.take_waiting())


def check_token(access: AccessPolicy, socket: Socket, auth: dict[str, Any]) -> None:
    """Refuse a connect without the service's token: in the connect's `auth` (protocol 5),
    or in the handshake's `Authorization` header or `?token=` (any protocol)."""
    supplied = auth.get("token") if isinstance(auth.get("token"), str) else None
    if not access.token_valid(supplied or token_from(socket.handshake.headers, socket.handshake.query)):
        raise ConnectRefused("Forbidden: missing or bad token")


class MainNamespace:
    """`/`: protocol 4 clients are in it from the start; it carries nothing, but it needs
    the token like every namespace, so an unauthenticated session joins nothing and is
    closed after the connect timeout."""

    def __init__(self, access: AccessPolicy):
        self.access = access

    async def on_connect(self, socket: Socket, auth: dict[str, Any]) -> None:
        check_token(self.access, socket, auth)

    def on_connected(self, socket: Socket, auth: dict[str, Any]) -> None:
        return None

    def on_event(self, socket: Socket, event: str, args: list[Any], ack_id: int | None) -> None:
        return None

    def on_disconnect(self, socket: Socket) -> None:
        return None


class KernelNamespaces:
    """Resolves kernel channel namespaces, with or without the base path prefix."""

    def __init__(self, hub: RelayHub, access: AccessPolicy, base_path: str, queue_limit: int = 128 * 1024 * 1024):
        self.hub = hub
        self.access = access
        self.prefix = base_path.rstrip("/")
        self.queue_limit = queue_limit
        self.shared = SharedEncodings()
        self._main = MainNamespace(access)

    def resolve(self, namespace: str) -> KernelChannelNamespace | MainNamespace | None:
        if namespace == "/":
            return self._main
        if self.prefix and namespace.startswith(self.prefix + "/"):
            namespace = namespace[len(self.prefix) :]
        match = NAMESPACE.match(namespace)
        if match is None:
            return None
        channel = CHANNEL_OF_NAMESPACE[match["name"]]
        return KernelChannelNamespace(self, channel, match["kernel_id"])
