"""`--keep-kernels`: the store kept in step with the registry's kernels, and the kernels an
earlier service left running taken up again at start.

Local kernels are kept (their processes outlive the service: launched independent, with
no stderr pipe to it), and container kernels of gateway_provisioners' docker-provisioner
and kubernetes-provisioner (their containers and pods outlive it anyway; the provisioner
finds one again by its kernel id); a kernel of another provisioner is stopped with the
service as before. An entry of another machine or user is never signalled (but a
kubernetes-provisioner kernel's, whose pod the cluster's API finds from anywhere): it is
skipped, with a log line, and left in the store; one whose process or container is gone
(or whose pid is now another process's) is dropped, with a log line.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime
from typing import Any

from kernels_service.kernels.errors import LimitReached
from kernels_service.kernels.provisioners.kept import (
    LOCAL_PROVISIONER,
    ForeignProcess,
    json_safe,
    process_start,
    provisioner_name,
)
from kernels_service.kernels.record import KernelRecord, isoformat
from kernels_service.kernels.store import KernelStore, LeaseLost, StoredKernel, StoreError, StoreUnavailable

log = logging.getLogger("kernels_service.kernels")

#: Provisioners whose kernels are kept: the local one (kernels launched independent), and
#: gateway_provisioners' container ones, whose containers and pods outlive the service
#: anyway and which restore themselves from their provisioner info (the container or pod
#: is found by kernel id, through the machine's container engine or the cluster's API).
KEPT_PROVISIONERS = (LOCAL_PROVISIONER, "docker-provisioner", "kubernetes-provisioner")

#: Those whose kernels any machine of the deployment reaches (the cluster's API finds a
#: kernel's pod from any pod): taken over by a replica on another machine too. A local
#: kernel needs the same machine and uid; a docker container, the same machine's engine.
ANY_MACHINE_PROVISIONERS = ("kubernetes-provisioner",)

#: Seconds between tries to save a restarted kernel's entry while the store is out of reach.
STORE_RETRY = 3.0


class KernelKeeper:
    """Writes each kept kernel's entry when it starts or restarts, drops it when it stops."""

    def __init__(self, store: KernelStore, max_kernels: int | None = None):
        self.store = store
        self.max_kernels = max_kernels  # counted in a shared store across replicas
        self.host = socket.gethostname()
        self.uid = os.getuid()

    def keeps(self, record: KernelRecord) -> bool:
        """Whether the kernel outlives the service (its provisioner's kernels can be taken up)."""
        return provisioner_name(record.manager.kernel_spec) in KEPT_PROVISIONERS

    def stores(self, record: KernelRecord) -> bool:
        """Whether the kernel's entry is written: one that outlives the service, and in a
        shared store every client's kernel (the other replicas serve it from its entry)."""
        return not record.pooled and (self.store.shared or self.keeps(record))

    async def keep(self, record: KernelRecord, left: datetime | None = None, new: bool = False) -> None:
        """Save the kernel's entry (after its start, `new`: admitted under --max-kernels in
        a shared store; or a restart: new pid, perhaps new ports; `left`: when the service
        lets go of it, running)."""
        if self.stores(record):
            limit = self.max_kernels if new and self.store.shared else None
            await self.store.save(await self.entry(record, left), limit)

    async def check_room(self) -> None:
        """LimitReached if a shared store already keeps --max-kernels kernels (of every
        replica): a start is refused before its launch. The count that admits a kernel is
        the one `keep(new=True)` makes, in the same transaction as its entry."""
        if self.max_kernels and self.store.shared and await self.store.count() >= self.max_kernels:
            raise LimitReached(f"Maximum number of kernels ({self.max_kernels}) reached across the replicas")

    async def keep_left(self, record: KernelRecord, left: datetime) -> None:
        """Say in its entry when the service let go of a kernel, running; if the store is
        out of reach its last entry stays, and still finds it (as after a crash)."""
        try:
            await self.keep(record, left=left)
        except StoreUnavailable:
            log.warning("Kernel %s left running; the kernel store did not answer to say when", record.id)

    async def keep_restarted(self, record: KernelRecord) -> None:
        """Save a kernel's entry after a restart a client asked for, before it is answered:
        a client that goes on through another replica then finds the new process in the
        store (a store out of reach: tried again in the background)."""
        try:
            await self.keep(record)
        except StoreUnavailable:
            asyncio.ensure_future(self.keep_when_store_answers(record, lambda: not record.going))
        except LeaseLost as error:
            log.warning("%s; its entry is not written", error)

    async def keep_when_store_answers(self, record: KernelRecord, still_held: Callable[[], bool]) -> None:
        """Save a restarted kernel's entry (its new pid, perhaps ports and key), trying
        again every few seconds while the store is out of reach and the kernel is held: an
        entry left stale would have the next service drop a live kernel."""
        while still_held():
            try:
                await self.keep(record)
                return
            except StoreUnavailable:
                await asyncio.sleep(STORE_RETRY)
            except LeaseLost as error:
                log.warning("%s; its entry is not written", error)
                return

    async def forget(self, kernel_id: str) -> None:
        """Drop a stopped kernel's entry; if the store is out of reach the entry stays, and
        the next service that reads it finds the process gone and drops it."""
        try:
            await self.store.remove(kernel_id)
        except StoreUnavailable:
            log.warning("Kernel %s stopped; its entry stays in the kernel store until a start drops it", kernel_id)

    def acting(self, record: KernelRecord) -> AbstractAsyncContextManager[None]:
        """While acting on a kernel (interrupt, restart, stop): a pooled kernel is nobody
        else's; a stored one only while this service owns it (a shared store's lease and
        epoch, checked as the act happens: LeaseLost if not)."""
        return nullcontext() if record.pooled else self.store.acting(record.id)

    async def entry(self, record: KernelRecord, left: datetime | None = None) -> StoredKernel:
        manager = record.manager
        info: dict[str, Any] = json_safe(await manager.provisioner.get_provisioner_info())
        info.pop("connection_info", None)  # kept once, below
        pid = info.get("pid")
        return StoredKernel(
            id=record.id,
            kernelspec=record.name,
            connection_info=json_safe(manager.get_connection_info()),
            provisioner=provisioner_name(record.manager.kernel_spec),
            provisioner_info=info,
            client_env=dict(record.client_env),
            host=self.host,
            uid=self.uid,
            process_start=process_start(pid) if pid else None,
            started=isoformat(record.started),
            last_activity=isoformat(record.last_activity),
            left=isoformat(left) if left is not None else "",
        )

    def why_not_take_up(self, entry: StoredKernel) -> tuple[str, bool] | None:
        """Why the kernel of `entry` cannot be taken up, and whether its entry is to be
        dropped (its kernel is gone); None if it can."""
        elsewhere = (entry.host, entry.uid) != (self.host, self.uid)
        if elsewhere and entry.provisioner not in ANY_MACHINE_PROVISIONERS:
            return f"it belongs to {entry.host} (uid {entry.uid}), not to this service", False
        if entry.provisioner not in KEPT_PROVISIONERS:
            return f"kernels of {entry.provisioner} are not taken up", True
        if entry.provisioner != LOCAL_PROVISIONER:
            return None  # its provisioner tells whether it still runs (ServiceKernelManager.take_up)
        pid = entry.provisioner_info.get("pid")
        started = process_start(pid) if pid else None
        if started is None:
            return "its process is gone", True
        if started != entry.process_start:
            return f"its pid {pid} is now another process's", True
        return None

    async def take_up_all(self, take_up: Callable[[StoredKernel], Awaitable[Any]]) -> int:
        """Take up every kernel of the store that can be, with `take_up` (the registry's; before
        any other kernel starts); how many were. A live kernel that cannot be taken up after all
        (its kernelspec is gone, say) is ended: no kernel runs that no service knows of. A store
        that stops answering meanwhile stops the start (StoreError)."""
        try:
            return await self._take_up_each(take_up)
        except StoreUnavailable as error:
            raise StoreError(f"the kernel store did not answer at start: {error}") from None

    async def _take_up_each(self, take_up: Callable[[StoredKernel], Awaitable[Any]]) -> int:
        taken = 0
        for entry in await self.store.entries():
            taken += await self.take_over(entry, take_up)
        return taken

    async def take_over(self, entry: StoredKernel, take_up: Callable[[StoredKernel], Awaitable[Any]]) -> bool:
        """Claim the kernel of `entry` and take it up with `take_up`, if it can be (at start,
        or when its replica's lease ran out); whether it was. One that another live
        replica owns is left to it; one whose process is gone is dropped; one that fails to
        be taken up is ended (no kernel runs that no service knows of)."""
        refusal = self.why_not_take_up(entry)
        if refusal is not None and not refusal[1]:
            log.warning("Kernel %s not taken up: %s", entry.id, refusal[0])
            return False
        if not await self.store.claim(entry.id):
            return False  # another replica's, alive: it serves it, and this one relays it
        if refusal is not None:
            log.warning("Kernel %s not taken up: %s", entry.id, refusal[0])
            await self.store.remove(entry.id)
            return False
        try:
            await take_up(entry)
            return True
        except Exception as error:  # noqa: BLE001 - whatever failed, the kernel must not run unknown
            log.warning("Kernel %s not taken up (%s: %s); ending it", entry.id, type(error).__name__, error)
            if entry.provisioner == LOCAL_PROVISIONER:
                ForeignProcess(entry.provisioner_info["pid"], entry.process_start).terminate()
            await self.store.remove(entry.id)
            return False
