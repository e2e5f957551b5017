"""The relay hub: one KernelRelay per running kernel, kept in step with the registry."""

from __future__ import annotations

from kernels_service.kernels import KernelRecord, KernelRegistry, NoSuchKernel
from kernels_service.relay.kernel import KernelRelay


class RelayHub:
    """Observes the registry: creates a relay as each kernel starts, closes it as it stops."""

    def __init__(self, registry: KernelRegistry):
        self.registry = registry
        self._relays: dict[str, KernelRelay] = {}
        registry.add_observer(self)

    def get(self, kernel_id: str) -> KernelRelay:
        """The relay of a running kernel; NoSuchKernel if there is none."""
        try:
            return self._relays[kernel_id]
        except KeyError:
            raise NoSuchKernel(kernel_id) from None

    async def kernel_started(self, record: KernelRecord) -> None:
        relay = KernelRelay(record)
        self._relays[record.id] = relay
        relay.start()

    async def kernel_stopping(self, record: KernelRecord) -> None:
        relay = self._relays.pop(record.id, None)
        if relay is not None:
            await relay.close("kernel shut down")

    def kernel_restarting(self, record: KernelRecord) -> None:
        if record.id in self._relays:
            self._relays[record.id].kernel_restarting()

    def kernel_died(self, record: KernelRecord) -> None:
        if record.id in self._relays:
            self._relays[record.id].kernel_died()
