"""Reading one kernel's iopub, once, for all its clients.

One SUB socket per kernel, with no receive high-water mark (see `sockets.connect_iopub`),
read by one task that hands each signed, decoded message on (a flood in bursts: see
`sockets.ReadPacer`). After a restart on new
ports, `reconnect` replaces the socket; the relay decides what to do with each message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from kernels_service.protocol import KernelMessage
from kernels_service.protocol.wire import Signer
from kernels_service.relay.sockets import ReadPacer, connect_iopub, read_messages


class IopubReader:
    """Reads a kernel's iopub and calls `on_message` with each message, in order."""

    def __init__(self, kernel_id: str, manager: Any, signer: Signer, on_message: Callable[[KernelMessage], None]):
        self.kernel_id = kernel_id
        self._manager = manager
        self._signer = signer
        self._on_message = on_message
        self._socket = connect_iopub(manager.context, manager.get_connection_info())
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        reading = read_messages(self._socket, "iopub", self._signer, self.kernel_id, self._on_message, ReadPacer())
        self._task = asyncio.ensure_future(reading)

    def reconnect(self) -> None:
        """The kernel moved to new ports: a new socket from its current connection info."""
        self.close()
        self._socket = connect_iopub(self._manager.context, self._manager.get_connection_info())
        self.start()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._socket.close(linger=0)
