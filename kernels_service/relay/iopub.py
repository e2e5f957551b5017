"""Reading one kernel's iopub, once, for all its clients.

One SUB socket per kernel, with no receive high-water mark (see `sockets.connect_iopub`),
read from the event loop's reader callback on its file descriptor, which hands each
signed message on. No future or task per message: output comes at thousands of messages
a second, and zmq.asyncio's machinery per message was most of the relay's cost. After a restart on new
ports, `reconnect` replaces the socket; the relay decides what to do with each message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import zmq

from kernels_service.protocol import KernelMessage
from kernels_service.protocol.wire import Signer
from kernels_service.relay.sockets import MAX_BURST, connect_iopub, hand_on


class IopubReader:
    """Reads a kernel's iopub and calls `on_message` with each message, in order."""

    def __init__(self, kernel_id: str, manager: Any, signer: Signer, on_message: Callable[[KernelMessage], None]):
        self.kernel_id = kernel_id
        self._manager = manager
        self._signer = signer
        self._on_message = on_message
        self._socket = connect_iopub(manager.context, manager.get_connection_info())
        self._reading: zmq.Socket | None = None  # the same socket, read without asyncio
        self._fd = -1

    def start(self) -> None:
        """Read whatever is queued now, then whenever ZeroMQ signals the socket's descriptor."""
        self._reading = zmq.Socket.shadow(self._socket.underlying)
        self._fd = self._reading.getsockopt(zmq.FD)
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._drain)
        loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Hand on up to MAX_BURST queued messages. ZeroMQ's descriptor signals a change, not
        a level: what is still queued after a burst is read in a later turn of the loop."""
        reading = self._reading
        if reading is None:
            return
        try:
            for _ in range(MAX_BURST):
                if not reading.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    return
                hand_on(reading.recv_multipart(zmq.NOBLOCK), "iopub", self._signer, self.kernel_id, self._on_message)
        except zmq.ZMQError:  # closed under us
            return
        asyncio.get_running_loop().call_soon(self._drain)

    def reconnect(self) -> None:
        """The kernel moved to new ports: a new socket from its current connection info."""
        self.close()
        self._socket = connect_iopub(self._manager.context, self._manager.get_connection_info())
        self.start()

    def close(self) -> None:
        if self._reading is not None:
            asyncio.get_running_loop().remove_reader(self._fd)
            self._reading = None
        self._socket.close(linger=0)
