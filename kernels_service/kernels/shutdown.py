"""The service's stop, for its kernels: every kernel stopped, or the kept ones let go of.

Starts are refused first, and launches in flight are waited for (a kernel launched during
a SIGTERM must not outlive it). With `keep` (--keep-kernels and SIGTERM), the kernels the
keeper keeps are let go of, running, before the rest are stopped; a kernel being
restarted or stopped at that moment is stopped. Whatever is not down within `timeout`
seconds (a restart in flight, a kernel that ignores its shutdown request) is killed.
The registry stays the one writer of its kernels: this only decides the order.
"""

from __future__ import annotations

import asyncio
import logging

from kernels_service.kernels.registry import KernelRegistry

log = logging.getLogger("kernels_service.kernels")

#: Seconds a stop waits for kernels to shut down before killing what is left.
STOP_TIMEOUT = 8.0


async def stop_all(registry: KernelRegistry, timeout: float = STOP_TIMEOUT, keep: bool = False) -> None:
    """Stop every kernel of `registry`, those being launched included, and start no more;
    with `keep`, let the kept ones go first."""
    registry.refuse_starts()
    if keep:
        await let_go_of_kept(registry)
    try:
        await asyncio.wait_for(stop_each(registry), timeout)
    except asyncio.TimeoutError:
        log.warning("Kernels still running %ss after the stop began; killing them", timeout)
        await registry.kill_all()


async def let_go_of_kept(registry: KernelRegistry) -> None:
    """Leave the kept kernels running, out of the registry's hands."""
    await registry.no_launches()
    for record in registry.held():
        if registry.keeps(record) and not record.lifecycle.pending:
            await registry.let_go(record)


async def stop_each(registry: KernelRegistry) -> None:
    await registry.no_launches()
    stops = (registry.stop(record, "service stopping", fenced=False) for record in registry.held())
    await asyncio.gather(*stops, return_exceptions=True)
