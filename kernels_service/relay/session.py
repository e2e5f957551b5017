"""A relay session: one ZeroMQ identity with its own shell, control and stdin sockets.

ipykernel sends replies and `input_request`s to the identity that sent the request, so
every client that must get only its own replies (a websocket connection) has its own
session, and whatever must share stdin with a shell requester shares its session.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import zmq
import zmq.asyncio

from kernels_service.protocol import CLIENT_CHANNELS, KernelMessage, ProtocolError
from kernels_service.protocol.wire import Signer, from_frames, to_frames

if TYPE_CHECKING:
    from kernels_service.relay.kernel import KernelRelay, RelayListener

log = logging.getLogger("kernels_service.relay")


class RelaySession:
    """Shell/control/stdin DEALER sockets under one identity, and the listeners they feed."""

    def __init__(self, relay: KernelRelay, identity: bytes, signer: Signer):
        self.relay = relay
        self.identity = identity
        self.listeners: list[RelayListener] = []
        self._signer = signer
        self._sockets: dict[str, zmq.asyncio.Socket] = {}
        self._readers: list[asyncio.Task[None]] = []

    def open(self, manager: object) -> None:
        """Connect the DEALER sockets and start reading them."""
        for channel in CLIENT_CHANNELS:
            connect = getattr(manager, f"connect_{channel}")
            socket = connect(identity=self.identity)
            self._sockets[channel] = socket
            self._readers.append(asyncio.ensure_future(self._read(channel, socket)))

    def send(self, message: KernelMessage) -> None:
        """Sign a client's message with the kernel's key and send it on its channel."""
        socket = self._sockets.get(message.channel)
        if socket is None:
            raise ProtocolError(f"clients cannot send on channel {message.channel!r}")
        socket.send_multipart(to_frames(message, self._signer), copy=False)
        self.relay.record.touch()

    def deliver(self, message: KernelMessage) -> None:
        """Hand a kernel message to every listener of this session."""
        for listener in list(self.listeners):
            listener.deliver(message)

    async def _read(self, channel: str, socket: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames = await socket.recv_multipart()
            except (asyncio.CancelledError, zmq.ZMQError):
                return
            try:
                message = from_frames(channel, frames, self._signer)
            except ProtocolError as exc:
                log.warning("Dropped a %s message from kernel %s: %s", channel, self.relay.kernel_id, exc)
                continue
            self.relay.record.touch()
            self.deliver(message)

    def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        for socket in self._sockets.values():
            socket.close(linger=0)
        self._readers.clear()
        self._sockets.clear()
