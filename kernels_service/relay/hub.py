"""The relay hub: one KernelRelay per running kernel, kept in step with the registry."""

from __future__ import annotations

from kernels_service.kernels import KernelRecord, KernelRegistry, NoSuchKernel
from kernels_service.relay.kernel import KernelRelay
from kernels_service.relay.replay import ReplayPolicy

#: The reason clients are given when the service stops and leaves their kernels running
#: (--keep-kernels): they may come back to them once it is up again.
SERVICE_RESTARTING = "service restarting"


class RelayHub:
    """Observes the registry: creates a relay as each kernel starts, closes it as it stops."""

    def __init__(self, registry: KernelRegistry, replay: ReplayPolicy | None = None):
        self.registry = registry
        self._replay = replay
        self._relays: dict[str, KernelRelay] = {}
        registry.add_observer(self)

    async def close_all(self, reason: str) -> None:
        """Close every relay (the service is stopping): no ZeroMQ socket stays open."""
        for kernel_id in list(self._relays):
            await self._relays.pop(kernel_id).close(reason)

    def get(self, kernel_id: str) -> KernelRelay:
        """The relay of a client's running kernel; NoSuchKernel if there is none (a pooled
        kernel is nobody's yet)."""
        relay = self._relays.get(kernel_id)
        if relay is None or relay.record.pooled:
            raise NoSuchKernel(kernel_id)
        return relay

    async def find(self, kernel_id: str) -> KernelRelay:
        """The relay of a client's kernel, this replica's or another's (over a shared store:
        made here when the first client of it comes, and brought up to date with the
        store's entry for each new client); NoSuchKernel if no replica has it."""
        await self.registry.find(kernel_id)  # another replica's kernel: its relay made, or made to follow a restart
        return self.get(kernel_id)

    async def wait_ready(self, record: KernelRecord) -> None:
        """Return once the kernel answered its first kernel_info (or its relay closed)."""
        relay = self._relays.get(record.id)
        if relay is not None:
            await relay.wait_ready()

    async def kernel_started(self, record: KernelRecord) -> None:
        relay = KernelRelay(record, self.registry, self._replay)
        self._relays[record.id] = relay
        relay.start()

    async def kernel_stopping(self, record: KernelRecord, reason: str) -> None:
        relay = self._relays.pop(record.id, None)
        if relay is not None:
            await relay.close(reason)

    def kernel_restarting(self, record: KernelRecord, automatic: bool) -> None:
        if record.id in self._relays:
            self._relays[record.id].kernel_restarting(automatic)

    def kernel_restarted(self, record: KernelRecord) -> None:
        if record.id in self._relays:
            self._relays[record.id].kernel_restarted()

    def kernel_died(self, record: KernelRecord) -> None:
        if record.id in self._relays:
            self._relays[record.id].kernel_died()
