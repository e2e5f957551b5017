"""Knowing when a kernel can be relayed to: Jupyter Server's "nudge".

A kernel is ready once it has answered a kernel_info request *and* the iopub status of
one of those requests has reached the relay: only then is the relay's iopub
subscription known to be live (a ZeroMQ SUB drops what was published before its
subscription took effect, so output of a request sent earlier could be lost). The probe
runs at start and after every restart; one request at a time, so a kernel still starting
gets one request, not a pile of them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from kernels_service.protocol import KernelMessage
from kernels_service.protocol.message import decode_json_part, make_message
from kernels_service.protocol.wire import Signer, to_frames

log = logging.getLogger("kernels_service.relay")

RESEND_AFTER = 2.0  # seconds without a kernel_info reply before asking again
IOPUB_GRACE = 0.5  # seconds to wait for a replied request's iopub status before asking again
READY_TIMEOUT = 60.0  # give up waiting for a kernel to answer after this long


class ReadinessProbe:
    """Probes one kernel with kernel_info requests; `ready` is set once it is relayable."""

    def __init__(self, kernel_id: str, manager: Any, signer: Signer):
        self.kernel_id = kernel_id
        self.ready = asyncio.Event()
        self._manager = manager
        self._signer = signer
        self._session = uuid.uuid4().hex  # the probe's requests carry it: their statuses are ours
        self._request_ids: set[str] = set()
        self._status_seen = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def follow(self, manager: Any) -> None:
        """Probe through `manager` from now on (the kernel's manager after a restart or a
        takeover: perhaps another object, on other ports)."""
        self._manager = manager

    def start(self) -> None:
        """Probe (again) from now on: not ready until the kernel answers."""
        self.cancel()
        self.ready.clear()
        self._task = asyncio.ensure_future(self._probe())

    def cancel(self) -> None:
        """Stop probing (a restart begins, the kernel died, the relay closes)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def owns(self, status: KernelMessage) -> bool:
        """True for the iopub status of one of the probe's requests: the probe's business,
        not the clients' (Jupyter Server keeps them from clients too)."""
        if self._session.encode() not in status.parts[1]:
            return False  # a client's status: no JSON decoded on the relay's path
        parent = decode_json_part(status.parts[1], "parent_header")
        if parent.get("session") != self._session:
            return False
        if parent.get("msg_id") in self._request_ids:
            self._status_seen.set()
        return True

    async def _probe(self) -> None:
        shell = self._manager.connect_shell(identity=f"nudge-{uuid.uuid4().hex}".encode())
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._status_seen.clear()
        self._request_ids.clear()
        try:
            while loop.time() < started + READY_TIMEOUT:
                request = make_message("shell", "kernel_info_request", {}, self._session)
                self._request_ids.add(request.header["msg_id"])
                await shell.send_multipart(to_frames(request, self._signer))
                if not await shell.poll(RESEND_AFTER * 1000):
                    continue  # not answered yet (a slow start): ask once more
                while await shell.poll(0):
                    await shell.recv_multipart()
                try:
                    await asyncio.wait_for(self._status_seen.wait(), IOPUB_GRACE)
                    break
                except asyncio.TimeoutError:
                    continue  # answered, but its status was published before we listened
            else:
                log.warning("Kernel %s did not answer kernel_info in %ss", self.kernel_id, READY_TIMEOUT)
            log.debug(
                "Kernel %s ready after %.2fs and %d kernel_info requests",
                self.kernel_id,
                loop.time() - started,
                len(self._request_ids),
            )
            self.ready.set()
        finally:
            self._request_ids.clear()
            shell.close(linger=0)
