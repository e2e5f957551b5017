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
from kernels_service.kernels.registry import KernelRecord, KernelRegistry

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

    @property
    def ready(self) -> int:
        """Pooled kernels ready to be taken."""
        return sum(len(kernels) for kernels in self._ready.values())

    def take(self, name: str) -> KernelRecord | None:
        kernels = self._ready.get(name)
        while kernels:
            record = kernels.popleft()
            self._wanted.set()
            if record.execution_state != "dead" and self._registry.holds(record):
                return record
            asyncio.ensure_future(self._stop(record))  # died in the pool
        return None

    async def give_way(self) -> None:
        for kernels in self._ready.values():
            if kernels:
                await self._stop(kernels.popleft())
                return
        if self._launch is not None:  # a launch holds the slot: stop what it brings
            record = await asyncio.shield(self._launch)
            if record is not None and record.pooled:
                for kernels in self._ready.values():
                    if record in kernels:
                        kernels.remove(record)
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
