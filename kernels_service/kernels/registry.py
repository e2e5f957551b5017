"""The kernel registry: every kernel the service runs, over jupyter_client's multi-kernel manager.

jupyter_client does launching, ports, signals, restarts and provisioners; the registry adds
what the service needs around it: validation of client input, the `max_kernels` limit
(a slot is reserved before the launch is awaited), one lifecycle operation per kernel at
a time (lifecycle.py), the kernel environment (environment.py), and notifications to
observers (the relay, observers.py) when kernels start, restart, die or stop. The record
and the observers' protocols are in record.py; the `max_kernels` count in slots.py;
making a process go in stopping.py; the order in which the service's stop stops or lets
go of every kernel in shutdown.py.

The registry is the one writer of a kernel's record: the relay reports what it sees on
iopub (`record_status`, `record_activity`, `record_connections`) and the registry decides.
A kernel is no longer found once its clients are told it is going, and leaves the
registry (and stops counting against `max_kernels`) only once its process is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from datetime import datetime
from typing import Any

from jupyter_client.kernelspec import NoSuchKernel as JupyterNoSuchKernel
from jupyter_client.multikernelmanager import AsyncMultiKernelManager

from kernels_service.kernels.environment import KernelEnvironment
from kernels_service.kernels.errors import (
    Busy,
    InvalidRequest,
    KernelsError,
    LimitReached,
    NoSuchKernel,
    NoSuchKernelSpec,
    Stopping,
    start_failure,
)
from kernels_service.kernels.fleet import Fleet
from kernels_service.kernels.jupyter_client_internals import own_connection_file
from kernels_service.kernels.keeper import KernelKeeper
from kernels_service.kernels.observers import Observers
from kernels_service.kernels.record import KernelObserver, KernelRecord, KernelSupply, utcnow
from kernels_service.kernels.slots import KernelSlots
from kernels_service.kernels.stopping import kill_everything, kill_unstarted, stop_process
from kernels_service.kernels.store import StoredKernel, StoreUnavailable
from kernels_service.metrics import KERNEL_START

log = logging.getLogger("kernels_service.kernels")

INTERRUPT_WAITS_FOR_START = 10.0  # seconds an interrupt of a starting kernel waits before 409
AUTO_RESTART = "restarting (it died)"  # the lifecycle operation of jupyter_client's auto-restarter


class KernelRegistry:
    """Start, list, interrupt, restart and stop kernels; the one owner of kernel lifecycles."""

    def __init__(
        self,
        multi: AsyncMultiKernelManager,
        *,
        default_name: str,
        environment: KernelEnvironment,
        max_kernels: int = 0,
    ):
        self._multi = multi
        self.default_name = default_name
        self._environment = environment
        self._slots = KernelSlots(max_kernels)
        self._records: dict[str, KernelRecord] = {}
        self._observers = Observers()
        self._stopping = False
        self._pool: KernelSupply | None = None
        self._keeper: KernelKeeper | None = None
        self._fleet: Fleet | None = None

    @property
    def kernel_spec_manager(self) -> Any:
        return self._multi.kernel_spec_manager

    def add_observer(self, observer: KernelObserver) -> None:
        self._observers.add(observer)

    def set_pool(self, pool: KernelSupply) -> None:
        self._pool = pool

    def set_keeper(self, keeper: KernelKeeper) -> None:
        """Keep the clients' kernels in `keeper`'s store (--keep-kernels)."""
        self._keeper = keeper

    def join_fleet(self, store: Any) -> Fleet:
        """Serve the kernels other replicas of the shared `store` own too (kernels/fleet.py);
        the fleet, whose `run` the service starts."""
        assert self._keeper is not None, "a shared store's replica keeps its kernels"
        self._fleet = Fleet(store, self, self._keeper, self._multi.connection_only, self._observers)
        return self._fleet

    @property
    def fleet(self) -> Fleet | None:
        """The replicas of a shared store, this one among them (None: no shared store)."""
        return self._fleet

    async def find(self, kernel_id: str) -> KernelRecord:
        """A client's kernel, this replica's or (over a shared store) another's; NoSuchKernel
        if no replica has it."""
        try:
            return self.get(kernel_id)
        except NoSuchKernel:
            if self._fleet is None:
                raise
        return await self._fleet.find(kernel_id)

    async def models(self) -> list[dict[str, Any]]:
        """The REST models of every client's kernel of every replica."""
        models = [record.model() for record in self.list()]
        return models if self._fleet is None else models + await self._fleet.models()

    async def _owned(self, kernel_id: str) -> KernelRecord:
        """The record of a kernel this replica owns, for its lifecycle; OwnedElsewhere if
        another replica does (the request goes there), NoSuchKernel if none does."""
        try:
            return self.get(kernel_id)
        except NoSuchKernel:
            if self._fleet is None:
                raise
        elsewhere = await self._fleet.owner_of(kernel_id)
        if elsewhere is not None:
            raise elsewhere
        return self.get(kernel_id)  # its owner's lease had run out: taken over just now

    def _acting(self, record: KernelRecord) -> AbstractAsyncContextManager[None]:
        """While acting on a kernel: only while this service still owns it (keeper.acting)."""
        return nullcontext() if self._keeper is None else self._keeper.acting(record)

    def list(self) -> list[KernelRecord]:
        """The clients' kernels (pooled ones are nobody's yet)."""
        return [record for record in self._records.values() if not (record.pooled or record.going)]

    def get(self, kernel_id: str) -> KernelRecord:
        """A client's kernel; NoSuchKernel for one nobody knows, one in the pool, and one
        whose clients were told it is going (REST agrees with the websockets at once)."""
        record = self._records.get(kernel_id)
        if record is None or record.pooled or record.going:
            raise NoSuchKernel(kernel_id)
        return record

    @property
    def kernel_env(self) -> dict[str, str]:
        """The environment every kernel gets (before any variables a client asks for)."""
        return self._environment.base

    def holds(self, record: KernelRecord) -> bool:
        """The kernel of this record is still running (it has not been stopped)."""
        return self._records.get(record.id) is record

    def free_slots(self) -> int | None:
        """Kernels that may still be started under `max_kernels` (None: no limit)."""
        return self._slots.free(len(self._records))

    def held(self) -> list[KernelRecord]:
        """Every kernel the registry holds, pooled and going ones too."""
        return list(self._records.values())

    async def start(self, name: str | None = None, env: Mapping[str, Any] | None = None) -> KernelRecord:
        """A kernel of kernelspec `name` (default if None) for a client: a ready one from
        the warm pool if one fits (same kernelspec, and no variables asked for that it
        lacks), else a new launch; the observers are told of a launch."""
        began = time.perf_counter()
        name = name or self.default_name
        self.check_kernelspec(name)
        environment = self._environment.for_client(env or {})
        if self._stopping:
            raise Stopping("The service is stopping")
        if self._keeper is not None:
            await self._keeper.check_room()  # a shared store's kernels of every replica: no launch in vain
        if self._pool is not None and environment == self._environment.base:
            record = await self._pool.take(name)
            if record is not None:
                record.pooled = False
                record.last_activity = utcnow()
                await self._keep_or_end(record)
                log.info("Kernel started: %s (%s, from the pool)", record.id, name)
                KERNEL_START.labels("true").observe(time.perf_counter() - began)
                return record
        if self.free_slots() == 0 and self._pool is not None:
            await self._pool.give_way()  # a pooled kernel goes before a client is refused
        record = await self.launch(name, environment)
        await self._keep_or_end(record)
        KERNEL_START.labels("false").observe(time.perf_counter() - began)
        return record

    async def launch(self, name: str, environment: dict[str, str], pooled: bool = False) -> KernelRecord:
        """Launch a kernel (for the pool if `pooled`) and tell the observers."""
        if self._stopping:
            raise Stopping("The service is stopping")
        with self._slots.launching(len(self._records)):  # the slot is taken before the launch is awaited
            kernel_id = await self._start_kernel(name, environment)
            record = KernelRecord(kernel_id, name, self._multi.get_kernel(kernel_id), pooled=pooled)
            record.client_env = {k: v for k, v in environment.items() if self._environment.base.get(k) != v}
            if self._stopping:  # SIGTERM came during the launch: this kernel must not outlive it
                await stop_process(self._multi, record, now=True)  # still starting: nothing to save
                raise Stopping("The service is stopping")
            self._records[kernel_id] = record
        log.info("%s started: %s (%s)", "Pooled kernel" if pooled else "Kernel", kernel_id, name)
        await self._install(record)
        return record

    async def take_up(
        self, entry: StoredKernel, served: KernelRecord | None = None, missed: bool = True
    ) -> KernelRecord:
        """Take up the kernel of `entry`, launched by an earlier service or by another
        replica (--keep-kernels): a client's kernel like any other from now on. `served`:
        its record as this replica served it for its former owner (kernels/fleet.py), kept
        with its relay and clients, its manager now one that owns the process. `missed`:
        whether its clients may have missed output meanwhile (they are told so); not
        after a drain that handed them over."""
        manager = await self._multi.take_up(entry, self._environment.for_client(entry.client_env))
        record = served or KernelRecord(entry.id, entry.kernelspec, manager, client_env=dict(entry.client_env))
        record.manager = manager
        record.left = datetime.fromisoformat(entry.left.replace("Z", "+00:00")) if entry.left else None
        record.taken_up = utcnow() if missed else None
        self._records[entry.id] = record
        log.info("Kernel taken up: %s (%s, pid %s)", entry.id, entry.kernelspec, entry.provisioner_info.get("pid"))
        await self._install(record, tell=served is None)
        return record

    def give_up(self, kernel_id: str) -> KernelRecord | None:
        """Another replica owns the kernel now (this one lost its lease): it leaves this
        registry's hands unsignalled, its restarter stopped; its record (relay and
        clients still attached) for the fleet to serve as the other's. None if not held."""
        record = self._records.get(kernel_id)
        if record is None or record.pooled:
            return None
        record.manager.stop_restarter()
        own_connection_file(record.manager, False)
        del self._records[kernel_id]
        self._multi.remove_kernel(kernel_id)
        log.warning("Kernel %s is another replica's now (this one's lease on it ran out)", kernel_id)
        return record

    async def take_up_kept(self) -> int:
        """Take up the kernels an earlier service kept (--keep-kernels); how many."""
        return 0 if self._keeper is None else await self._keeper.take_up_all(self.take_up)

    async def _install(self, record: KernelRecord, tell: bool = True) -> None:
        """Follow the kernel's restarts and deaths, and tell the observers it is there
        (unless they know it already: a kernel taken over that this replica served)."""
        manager = record.manager
        manager.add_restart_callback(lambda: self._auto_restarting(record), "restart")
        manager.add_restart_callback(lambda: self._died(record), "dead")
        manager.on_restarted(lambda: self._restarted(record))
        if tell:
            await self._observers.started(record)

    async def _keep(self, record: KernelRecord) -> None:
        if self._keeper is not None:
            await self._keeper.keep(record)

    async def _keep_or_end(self, record: KernelRecord) -> None:
        """Keep a client's new kernel; if the store is out of reach, the kernel is ended
        (one that no store knows would not outlive the service as promised) and the
        client told why (StoreUnavailable: 503); so it is if a shared store already keeps
        --max-kernels kernels of all replicas (LimitReached: 503)."""
        try:
            if self._keeper is not None:
                await self._keeper.keep(record, new=True)
        except (StoreUnavailable, LimitReached) as error:
            log.warning("Kernel %s ended: %s", record.id, error)
            await stop_process(self._multi, record, now=self._not_up_yet(record))
            self._records.pop(record.id, None)
            raise

    async def _start_kernel(self, name: str, environment: dict[str, str]) -> str:
        """jupyter_client's start; a launch that fails for any reason of the kernel's or its
        provisioner's is KernelNotStarted (KernelRefused if the provisioner refused it:
        errors.start_failure), its details logged in one line."""
        try:
            return await self._multi.start_kernel(kernel_name=name, env=environment)
        except KernelsError:
            raise
        except Exception as error:  # a provisioner may raise anything: it is the kernel's failure
            log.error("Kernel of %s not started: %s: %s", name, type(error).__name__, error)
            raise start_failure(name, error) from None

    async def shutdown(self, kernel_id: str, reason: str = "kernel shut down") -> None:
        """Stop a client's kernel, after any pending operation of it, and forget it once
        it is gone; its clients are told `reason`."""
        await self.stop(await self._owned(kernel_id), reason)

    async def stop(self, record: KernelRecord, reason: str, fenced: bool = True) -> None:
        """Stop a kernel, pooled or not (see `shutdown`); `fenced`: only while this service
        owns it (the service's own stop stops whatever it holds)."""
        kernel_id = record.id
        await record.lifecycle.begin_when_idle("shutting down")
        try:
            if self._records.get(kernel_id) is not record:
                raise NoSuchKernel(kernel_id)  # another shutdown finished while this one waited
            if fenced:
                async with self._acting(record):
                    await self._stop_process(record, reason)
            else:
                await self._stop_process(record, reason)
            self._records.pop(kernel_id, None)
            await self._forget(kernel_id)
        finally:
            record.lifecycle.end()

    async def _stop_process(self, record: KernelRecord, reason: str) -> None:
        record.going = True  # from now on not found, as its clients are told; still counted
        await self._observers.stopping(record, reason)
        await stop_process(self._multi, record, now=self._not_up_yet(record))

    async def _forget(self, kernel_id: str) -> None:
        if self._keeper is not None:
            await self._keeper.forget(kernel_id)

    # --- the service's stop (shutdown.py decides the order) ---------------------------------

    def refuse_starts(self) -> None:
        """Start no more kernels: the service is stopping."""
        self._stopping = True

    async def no_launches(self) -> None:
        """Return once no launch is in flight."""
        await self._slots.no_launches()

    def keeps(self, record: KernelRecord) -> bool:
        """Whether the kernel is one that outlives the service (--keep-kernels)."""
        return self._keeper is not None and not record.pooled and self._keeper.keeps(record)

    async def let_go(self, record: KernelRecord) -> None:
        """Leave a kept kernel running, out of the registry's hands: its entry says when
        it was let go of, and its clients are told the service is restarting."""
        assert self._keeper is not None
        record.manager.stop_restarter()
        own_connection_file(record.manager, False)  # not removed when jupyter_client collects the manager
        await self._keeper.keep_left(record, utcnow())
        record.going = True
        await self._observers.stopping(record, "service restarting")  # relay.SERVICE_RESTARTING
        self._records.pop(record.id)
        self._multi.remove_kernel(record.id)
        log.info("Kernel left running: %s", record.id)

    async def kill_all(self) -> None:
        """Kill every kernel's process at once, and forget them (the last resort of a stop)."""
        await kill_everything(self._multi)
        self._records.clear()

    async def interrupt(self, kernel_id: str) -> None:
        record = await self._owned(kernel_id)
        if not record.spoke.is_set():  # SIGINT now would kill it in its imports, with a traceback
            try:
                await asyncio.wait_for(record.spoke.wait(), INTERRUPT_WAITS_FOR_START)
            except asyncio.TimeoutError:
                raise Busy("Kernel is starting; interrupt it once it runs code") from None
        record.lifecycle.begin("interrupting")
        try:
            async with self._acting(record):
                await record.manager.interrupt_kernel()
            self.record_activity(record)
        finally:
            record.lifecycle.end()

    async def restart(self, kernel_id: str) -> KernelRecord:
        """Restart a kernel in place (same id, new ports); clients see `restarting`, then
        the new kernel (its relay follows it to its ports)."""
        record = await self._owned(kernel_id)
        record.lifecycle.begin("restarting")
        try:
            async with self._acting(record):
                now = self._not_up_yet(record)
                self._restarting(record, automatic=False)
                if now:
                    await kill_unstarted(record)
                # on new ports: another service on this machine (a replica) may take a port
                # the old process let go of before the new one binds it
                await record.manager.restart_kernel(now=now, newports=True)
        finally:
            record.lifecycle.end()
        if self._keeper is not None and not record.pooled:
            await self._keeper.keep_restarted(record)  # before the answer: other replicas follow it from there
        return record

    @staticmethod
    def _not_up_yet(record: KernelRecord) -> bool:
        """A kernel that has not spoken yet has nothing to save: it is killed at once."""
        return not record.spoke.is_set()

    # --- what the relay reports; the registry alone writes the record ------------------------

    def record_activity(self, record: KernelRecord) -> None:
        record.last_activity = utcnow()

    def record_status(self, record: KernelRecord, execution_state: str) -> None:
        """An iopub status from the kernel; ignored once it is dead or while it restarts
        (the old process may still speak)."""
        record.last_activity = utcnow()
        if record.execution_state != "dead" and record.lifecycle.pending not in ("restarting", AUTO_RESTART):
            record.execution_state = execution_state
            record.spoke.set()

    def record_connections(self, record: KernelRecord, connections: int) -> None:
        record.connections = connections

    # --- jupyter_client's restart callbacks --------------------------------------------------

    def _auto_restarting(self, record: KernelRecord) -> None:
        record.lifecycle.begin_automatic(AUTO_RESTART)
        self._restarting(record, automatic=True)

    def _restarted(self, record: KernelRecord) -> None:
        if record.lifecycle.pending == AUTO_RESTART:
            record.lifecycle.end()
        record.execution_state = "starting"
        record.spoke.clear()
        log.info("Kernel restarted: %s", record.id)
        self._observers.restarted(record)
        if self._keeper is not None and not record.pooled:
            still_held = lambda: self.holds(record) and not record.going  # noqa: E731
            asyncio.ensure_future(self._keeper.keep_when_store_answers(record, still_held))

    def _restarting(self, record: KernelRecord, automatic: bool) -> None:
        record.execution_state = "restarting"
        record.last_activity = utcnow()
        self._observers.restarting(record, automatic)

    def _died(self, record: KernelRecord) -> None:
        log.warning("Kernel %s died and could not be restarted", record.id)
        if record.lifecycle.pending == AUTO_RESTART:
            record.lifecycle.end()
        record.execution_state = "dead"
        record.last_activity = utcnow()
        self._observers.died(record)

    def check_kernelspec(self, name: str) -> None:
        """NoSuchKernelSpec unless `name` is an installed kernelspec."""
        if not isinstance(name, str):
            raise InvalidRequest("kernel name must be a string")
        try:
            self.kernel_spec_manager.get_kernel_spec(name)
        except JupyterNoSuchKernel:
            raise NoSuchKernelSpec(name) from None
