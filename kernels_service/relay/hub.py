"""The relay hub: one KernelRelay per running kernel, kept in step with the registry; and, as
the replica drains, the websocket sessions it hands over (relay/handover.py)."""

from __future__ import annotations

import asyncio

from kernels_service.kernels import KernelRecord, KernelRegistry, NoSuchKernel
from kernels_service.protocol import KernelMessage
from kernels_service.relay.kernel import KernelRelay
from kernels_service.relay.replay import ReplayPolicy

#: The reason clients are given when the service stops and leaves their kernels running
#: (--keep-kernels): they may come back to them once it is up again.
SERVICE_RESTARTING = "service restarting"

#: Seconds a hand-over waits for its client's connection to the draining replica to close
#: and the replies to its requests to come (relay/handover.TAKE_TIMEOUT is longer).
HANDOVER_TAKE = 8.0


class RelayHub:
    """Observes the registry: creates a relay as each kernel starts, closes it as it stops."""

    def __init__(self, registry: KernelRegistry, replay: ReplayPolicy | None = None):
        self.registry = registry
        self._replay = replay
        self._relays: dict[str, KernelRelay] = {}
        self._handed: dict[str, KernelRelay] = {}  # relays of kernels let go of, kept for their hand-overs
        self._offered: set[tuple[str, str]] = set()  # (kernel id, key) of sessions not yet taken
        self._all_taken = asyncio.Event()
        registry.add_observer(self)

    async def close_all(self, reason: str) -> None:
        """Close every relay (the service is stopping): no ZeroMQ socket stays open."""
        for relays in (self._relays, self._handed):
            for kernel_id in list(relays):
                await relays.pop(kernel_id).close(reason)

    # --- a drain's hand-over of websocket sessions (relay/handover.py) ------------------------

    def handover_offers(self) -> list[tuple[str, str, bool]]:
        """The (kernel id, key, whether it has a client now) of every websocket session a
        drain hands over."""
        return [(kernel_id, *keyed) for kernel_id, relay in self._relays.items() for keyed in relay.handover_keys()]

    def hand_over(self, awaited: list[tuple[str, str]], reason: str) -> None:
        """Close every client with `reason`, the websocket sessions kept for the replicas
        their clients come back to; `awaited`: those the drain waits for (their clients
        were connected: they come back at once)."""
        self._offered = set(awaited)
        if not self._offered:
            self._all_taken.set()
        for relay in self._relays.values():
            relay.hand_over(reason)

    async def take_session(self, kernel_id: str, key: str, wait: float = HANDOVER_TAKE) -> list[KernelMessage] | None:
        """What a handed-over session kept, once its client's connection here has closed
        and the replies to its requests came (waiting `wait` seconds at most); None if
        there is no such session."""
        relay = self._relays.get(kernel_id) or self._handed.get(kernel_id)
        if relay is None or not relay.handing_over:
            return None
        deadline = asyncio.get_running_loop().time() + wait
        while relay.handover_waits(key) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        taken = relay.take_session(key)
        self._offered.discard((kernel_id, key))
        if not self._offered:
            self._all_taken.set()
        return taken

    async def handover_of(self, kernel_id: str, key: str | None) -> str | None:
        """Where a draining replica keeps what this websocket session missed, if one does."""
        fleet = self.registry.fleet
        return None if fleet is None or not key else await fleet.handover_of(kernel_id, key)

    async def handovers_taken(self, timeout: float) -> int:
        """Wait until every session awaited was taken, or `timeout` seconds; how many were not."""
        try:
            await asyncio.wait_for(self._all_taken.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return len(self._offered)

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
        if relay is not None and relay.handing_over and reason == SERVICE_RESTARTING:
            self._handed[record.id] = relay  # let go of while it drains: its sessions wait to be taken
        elif relay is not None:
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
