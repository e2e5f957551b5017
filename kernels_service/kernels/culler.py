"""Reclaiming kernels nobody uses, with Jupyter Server's options and rules.

Every `interval` seconds: a kernel that has been `dead` for an interval is shut down,
whatever the idle timeout; with `idle_timeout` > 0, so is a kernel idle for longer than
that, unless it is busy (`cull_busy` culls those too) or has clients (`cull_connected`
culls those too). Activity is any message relayed either way (the registry's
`last_activity`). Its clients are closed with the reason "kernel culled".
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from kernels_service.kernels.errors import KernelsError, NoSuchKernel
from kernels_service.kernels.record import KernelRecord, utcnow
from kernels_service.kernels.registry import KernelRegistry
from kernels_service.metrics import CULLED as CULLED_TOTAL

log = logging.getLogger("kernels_service.kernels")

CULLED = "kernel culled"


@dataclass(frozen=True)
class CullPolicy:
    idle_timeout: float = 0  # seconds; 0: idle kernels are never culled
    interval: float = 300
    connected: bool = False  # cull kernels that still have clients
    busy: bool = False  # cull kernels that are busy


def why_cull(record: KernelRecord, policy: CullPolicy, now: datetime) -> str | None:
    """Why this kernel should go now ("dead", "idle"), or None if it stays."""
    quiet = (now - record.last_activity).total_seconds()
    if record.execution_state == "dead":
        return "dead" if quiet >= policy.interval else None
    if policy.idle_timeout <= 0 or quiet <= policy.idle_timeout:
        return None
    if record.execution_state == "busy" and not policy.busy:
        return None
    if record.connections and not policy.connected:
        return None
    if record.lifecycle.pending is not None:  # starting, restarting...: not idle
        return None
    return "idle"


class Culler:
    """Runs the policy against the registry every `interval` seconds until cancelled."""

    def __init__(self, registry: KernelRegistry, policy: CullPolicy):
        self._registry = registry
        self.policy = policy

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.policy.interval)
            await self.cull_once()

    async def cull_once(self) -> None:
        for record in self._registry.list():
            now = utcnow()  # each shutdown takes a while: judge each kernel as it is now
            reason = why_cull(record, self.policy, now)
            if reason is None:
                continue
            quiet = (now - record.last_activity).total_seconds()
            log.info(
                "Culling kernel %s (%s): %s for %.0fs, %d connection(s)",
                record.id,
                reason,
                record.execution_state,
                quiet,
                record.connections,
            )
            CULLED_TOTAL.labels(reason).inc()
            try:
                await self._registry.shutdown(record.id, reason=CULLED)
            except NoSuchKernel:
                pass  # shut down by someone else meanwhile
            except KernelsError as error:  # no longer this replica's, or its store out of reach
                log.warning("Kernel %s not culled: %s", record.id, error)
