"""The warm pool: kernels started and past their first kernel_info_reply before anyone asks.

A start request that fits a pooled kernel (same kernelspec, no variables asked for that
it lacks) gets it at once instead of waiting for a launch. The pool refills in the
background, one launch at a time, so a burst of requests never launches more than the
pool at once. Pooled kernels count toward `max_kernels`: the pool launches only while
two slots are free (one stays for a client), and gives way, a pooled kernel stopped,
before a client is refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Iterable

from kernels_service.kernels.errors import KernelsError
from kernels_service.kernels.record import KernelRecord
from kernels_service.kernels.registry import KernelRegistry

log = logging.getLogger("kernels_service.kernels")

READY_TIMEOUT = 60.0  # seconds a pooled kernel may take to answer; then it is stopped

WaitReady = Callable[[KernelRecord], Awaitable[None]]


class KernelPool:
    """`size` ready kernels of each kernelspec in `names`, kept by `run()`."""

    def __init__(self, registry: KernelRegistry, wait_ready: WaitReady, size: int, names: Iterable[str]):
        self._registry = registry
        self._wait_ready = wait_ready
        self.size = size
        self._ready: dict[str, deque[KernelRecord]] = {name: deque() for name in dict.fromkeys(names)}
        self._wanted = asyncio.Event()  # a kernel was taken or stopped: refill
        self._launch: asyncio.Task[KernelRecord | None] | None = None
        self._stopping: set[asyncio.Future[None]] = set()
        registry.add_observer(self)

    @property
    def ready(self) -> int:
        """Pooled kernels ready to be taken."""
        return sum(len(kernels) for kernels in self._ready.values())

    async def take(self, name: str) -> KernelRecord | None:
        """A ready kernel of this kernelspec. One restarting, or whose process is gone
        though jupyter_client's restarter has not noticed yet (it polls every few seconds),
        is passed over: a request sent to it now would run in its successor before the
        relay hears its output."""
        kernels = self._ready.get(name, deque())
        for _ in range(len(kernels)):
            record = kernels.popleft()
            if record.execution_state == "idle" and self._registry.holds(record) and await record.manager.is_alive():
                self._wanted.set()
                return record
            kernels.append(record)
        return None

    # --- the registry's observer: a pooled kernel that dies leaves the pool -------------------

    async def kernel_started(self, record: KernelRecord) -> None: ...

    async def kernel_stopping(self, record: KernelRecord, reason: str) -> None:
        self._forget(record)

    def kernel_restarting(self, record: KernelRecord, automatic: bool) -> None: ...

    def kernel_restarted(self, record: KernelRecord) -> None: ...

    def kernel_died(self, record: KernelRecord) -> None:
        if record.pooled:
            log.warning("Pooled kernel %s died; replacing it", record.id)
            self._forget(record)
            stopping = asyncio.ensure_future(self._stop(record))
            self._stopping.add(stopping)  # a task nobody holds may be collected
            stopping.add_done_callback(self._stopping.discard)

    def _forget(self, record: KernelRecord) -> None:
        for kernels in self._ready.values():
            if record in kernels:
                kernels.remove(record)
                self._wanted.set()

    async def give_way(self) -> None:
        for kernels in self._ready.values():
            if kernels:
                await self._stop(kernels.popleft())
                return
        if self._launch is not None:  # a launch holds the slot: stop what it brings
            record = await asyncio.shield(self._launch)
            if record is not None and record.pooled:
                self._forget(record)
                await self._stop(record)

    async def run(self) -> None:
        """Refill until cancelled: one launch at a time, while two slots are free."""
        while True:
            name = self._wanting()
            free = self._registry.free_slots()
            if name is None or (free is not None and free < 2):
                self._wanted.clear()
                await self._wanted.wait()
                continue
            self._launch = asyncio.ensure_future(self._launch_one(name))
            try:
                record = await asyncio.shield(self._launch)
            finally:
                self._launch = None
            if record is None:
                await asyncio.sleep(5)  # a failing launch is not retried in a tight loop
            elif record.pooled and self._registry.holds(record):  # not given way meanwhile
                self._ready[name].append(record)

    def _wanting(self) -> str | None:
        for name, kernels in self._ready.items():
            if len(kernels) < self.size:
                return name
        return None

    async def _launch_one(self, name: str) -> KernelRecord | None:
        try:
            record = await self._registry.launch(name, dict(self._registry.kernel_env), pooled=True)
        except KernelsError as error:
            log.warning("Pooled kernel of %s not started: %s", name, error)
            return None
        try:
            await asyncio.wait_for(self._wait_ready(record), READY_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("Pooled kernel %s did not answer in %ss; stopping it", record.id, READY_TIMEOUT)
            await self._stop(record)
            return None
        return record

    async def _stop(self, record: KernelRecord) -> None:
        try:
            await self._registry.stop(record, "kernel shut down")
        except KernelsError:
            pass  # already gone
        self._wanted.set()
