"""What the service knows of one kernel beyond jupyter_client's manager, its REST model,
and what the registry tells and asks of the parts around it (observers, the pool)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from jupyter_client.manager import AsyncKernelManager

from kernels_service.kernels.lifecycle import Lifecycle


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    """ISO 8601 with a `Z`, as Jupyter Server writes timestamps."""
    return moment.isoformat().replace("+00:00", "Z")


@dataclass
class KernelRecord:
    """What the service knows of one kernel beyond jupyter_client's manager."""

    id: str
    name: str
    manager: AsyncKernelManager
    last_activity: datetime = field(default_factory=utcnow)
    execution_state: str = "starting"
    connections: int = 0
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    spoke: asyncio.Event = field(default_factory=asyncio.Event)  # its first status came (cleared by a restart)
    pooled: bool = False  # waiting in the warm pool: no client's yet, not listed
    going: bool = False  # its clients were told it is going: not found, but counted until its process is gone
    client_env: dict[str, str] = field(default_factory=dict)  # the KERNEL_* variables its client asked for
    started: datetime = field(default_factory=utcnow)
    # taken up from an earlier service or a replica that died (--keep-kernels): when that
    # one let go of it (None after a crash), and when this one took it up; its output in
    # between may be lost (None: nothing was, as after a drain that handed its clients over)
    left: datetime | None = None
    taken_up: datetime | None = None

    def model(self) -> dict[str, Any]:
        """The kernel model of the Jupyter REST API."""
        return {
            "id": self.id,
            "name": self.name,
            "last_activity": isoformat(self.last_activity),
            "execution_state": self.execution_state,
            "connections": self.connections,
        }


class KernelSupply(Protocol):
    """The warm pool, as the registry sees it."""

    async def take(self, name: str) -> KernelRecord | None:
        """A ready pooled kernel of this kernelspec, now the caller's, or None."""

    async def give_way(self) -> None:
        """Stop a pooled kernel (waiting for one being launched), to free a slot."""


class KernelObserver(Protocol):
    """Told of kernel life-cycle events (the relay hub is one)."""

    async def kernel_started(self, record: KernelRecord) -> None: ...

    async def kernel_stopping(self, record: KernelRecord, reason: str) -> None: ...

    def kernel_restarting(self, record: KernelRecord, automatic: bool) -> None:
        """The kernel is about to restart (its old process may still answer); `automatic`:
        jupyter_client restarts it because it died, no client asked."""

    def kernel_restarted(self, record: KernelRecord) -> None:
        """The new process is launched, perhaps on new ports."""

    def kernel_died(self, record: KernelRecord) -> None: ...
