"""The kernel registry: every kernel the service runs, over jupyter_client's multi-kernel manager.

jupyter_client does launching, ports, signals, restarts and provisioners; the registry adds
what the service needs around it: validation of client input, the `max_kernels` limit
(a slot is reserved before the launch is awaited), one lifecycle operation per kernel at
a time (lifecycle.py), a sanitised kernel environment, and notifications to observers
(the relay) when kernels start, restart, die or stop.

The registry is the one writer of a kernel's record: the relay reports what it sees on
iopub (`record_status`, `record_activity`, `record_connections`) and the registry decides.
A kernel is no longer found once its clients are told it is going, and leaves the
registry (and stops counting against `max_kernels`) only once its process is gone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from jupyter_client.kernelspec import NoSuchKernel as JupyterNoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.multikernelmanager import AsyncMultiKernelManager

from kernels_service.kernels.errors import (
    Busy,
    InvalidRequest,
    LimitReached,
    NoSuchKernel,
    NoSuchKernelSpec,
    Stopping,
)
from kernels_service.kernels.lifecycle import Lifecycle
from kernels_service.metrics import KERNEL_START

log = logging.getLogger("kernels_service.kernels")

INTERRUPT_WAITS_FOR_START = 10.0  # seconds an interrupt of a starting kernel waits before 409
AUTO_RESTART = "restarting (it died)"  # the lifecycle operation of jupyter_client's auto-restarter


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


class KernelRegistry:
    """Start, list, interrupt, restart and stop kernels; the one owner of kernel lifecycles."""

    def __init__(
        self,
        multi: AsyncMultiKernelManager,
        *,
        default_name: str,
        kernel_env: Mapping[str, str],
        allowed_env: Iterable[str] = (),
        max_kernels: int = 0,
    ):
        self._multi = multi
        self.default_name = default_name
        self._kernel_env = dict(kernel_env)
        self._allowed_env = frozenset(allowed_env)
        self._max_kernels = max_kernels
        self._records: dict[str, KernelRecord] = {}
        self._observers: list[KernelObserver] = []
        self._launching = 0  # starts in flight: they hold a max_kernels slot
        self._no_launches = asyncio.Event()
        self._no_launches.set()
        self._stopping = False
        self._pool: KernelSupply | None = None

    @property
    def kernel_spec_manager(self) -> Any:
        return self._multi.kernel_spec_manager

    def add_observer(self, observer: KernelObserver) -> None:
        self._observers.append(observer)

    def set_pool(self, pool: KernelSupply) -> None:
        self._pool = pool

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
        return self._kernel_env

    def holds(self, record: KernelRecord) -> bool:
        """The kernel of this record is still running (it has not been stopped)."""
        return self._records.get(record.id) is record

    def free_slots(self) -> int | None:
        """Kernels that may still be started under `max_kernels` (None: no limit)."""
        if not self._max_kernels:
            return None
        return self._max_kernels - len(self._records) - self._launching

    async def start(self, name: str | None = None, env: Mapping[str, Any] | None = None) -> KernelRecord:
        """A kernel of kernelspec `name` (default if None) for a client: a ready one from
        the warm pool if one fits (same kernelspec, and no variables asked for that it
        lacks), else a new launch; the observers are told of a launch."""
        began = time.perf_counter()
        name = name or self.default_name
        self.check_kernelspec(name)
        environment = self._environment_for(env or {})
        if self._stopping:
            raise Stopping("The service is stopping")
        if self._pool is not None and environment == self._kernel_env:
            record = await self._pool.take(name)
            if record is not None:
                record.pooled = False
                record.last_activity = utcnow()
                log.info("Kernel started: %s (%s, from the pool)", record.id, name)
                KERNEL_START.labels("true").observe(time.perf_counter() - began)
                return record
        if self.free_slots() == 0 and self._pool is not None:
            await self._pool.give_way()  # a pooled kernel goes before a client is refused
        record = await self.launch(name, environment)
        KERNEL_START.labels("false").observe(time.perf_counter() - began)
        return record

    async def launch(self, name: str, environment: dict[str, str], pooled: bool = False) -> KernelRecord:
        """Launch a kernel (for the pool if `pooled`) and tell the observers."""
        if self._stopping:
            raise Stopping("The service is stopping")
        if self.free_slots() == 0:
            raise LimitReached(f"Maximum number of kernels ({self._max_kernels}) reached")
        self._launching += 1  # the slot is taken before the launch is awaited
        self._no_launches.clear()
        try:
            kernel_id = await self._multi.start_kernel(kernel_name=name, env=environment)
            record = KernelRecord(kernel_id, name, self._multi.get_kernel(kernel_id), pooled=pooled)
            if self._stopping:  # SIGTERM came during the launch: this kernel must not outlive it
                await self._stop_process(record, now=True)  # still starting: nothing to save
                raise Stopping("The service is stopping")
            self._records[kernel_id] = record
        finally:
            self._launching -= 1
            if not self._launching:
                self._no_launches.set()
        manager = record.manager
        manager.add_restart_callback(lambda: self._auto_restarting(record), "restart")
        manager.add_restart_callback(lambda: self._died(record), "dead")
        manager.on_restarted(lambda: self._restarted(record))
        log.info("%s started: %s (%s)", "Pooled kernel" if pooled else "Kernel", kernel_id, name)
        for observer in self._observers:
            await observer.kernel_started(record)
        return record

    async def shutdown(self, kernel_id: str, reason: str = "kernel shut down") -> None:
        """Stop a client's kernel, after any pending operation of it, and forget it once
        it is gone; its clients are told `reason`."""
        await self.stop(self.get(kernel_id), reason)

    async def stop(self, record: KernelRecord, reason: str) -> None:
        """Stop a kernel, pooled or not (see `shutdown`)."""
        kernel_id = record.id
        await record.lifecycle.begin_when_idle("shutting down")
        try:
            if self._records.get(kernel_id) is not record:
                raise NoSuchKernel(kernel_id)  # another shutdown finished while this one waited
            record.going = True  # from now on not found, as its clients are told; still counted
            for observer in self._observers:
                await observer.kernel_stopping(record, reason)
            await self._stop_process(record, now=self._not_up_yet(record))
            self._records.pop(kernel_id, None)
        finally:
            record.lifecycle.end()

    async def _stop_process(self, record: KernelRecord, now: bool = False) -> None:
        """Shut the kernel down through jupyter_client (which logs "Kernel shutdown: <id>");
        if that fails midway, kill it: no process may outlive its record. `now`: the
        kernel has not started, it is killed before jupyter_client is asked."""
        if now:
            await self._kill_unstarted(record)
        try:
            await self._multi.shutdown_kernel(record.id, now=now)
        except KeyError:  # already gone from jupyter_client's side
            return
        except Exception as error:  # noqa: BLE001 - whatever jupyter_client raised, the process must go
            log.warning("Shutting down kernel %s failed (%r); killing it", record.id, error)
            try:
                await record.manager.shutdown_kernel(now=True)
            except Exception as kill_error:  # noqa: BLE001
                log.warning("Killing kernel %s failed too: %r", record.id, kill_error)
            self._multi.remove_kernel(record.id)

    async def shutdown_all(self, timeout: float = 8.0) -> None:
        """Stop every kernel, those being launched included, and start no more; whatever
        is not down within `timeout` seconds (a restart in flight, a kernel that ignores
        its shutdown request) is killed. Then close ZeroMQ: no socket may keep the
        process from exiting."""
        self._stopping = True
        try:
            await asyncio.wait_for(self._shutdown_everything(), timeout)
        except asyncio.TimeoutError:
            log.warning("Kernels still running %ss after the stop began; killing them", timeout)
            await self._kill_everything()
        self._multi.context.destroy(linger=0)

    async def _shutdown_everything(self) -> None:
        await self._no_launches.wait()
        stops = (self.stop(record, "service stopping") for record in list(self._records.values()))
        await asyncio.gather(*stops, return_exceptions=True)

    async def _kill_everything(self) -> None:
        for kernel_id in self._multi.list_kernel_ids():
            provisioner = self._multi.get_kernel(kernel_id).provisioner
            try:
                if provisioner is not None:
                    await provisioner.kill()
                    await asyncio.wait_for(provisioner.wait(), 2)
            except Exception as error:  # noqa: BLE001 - the next kernel must still be killed
                log.warning("Killing kernel %s failed: %r", kernel_id, error)
        self._records.clear()

    async def interrupt(self, kernel_id: str) -> None:
        record = self.get(kernel_id)
        if not record.spoke.is_set():  # SIGINT now would kill it in its imports, with a traceback
            try:
                await asyncio.wait_for(record.spoke.wait(), INTERRUPT_WAITS_FOR_START)
            except asyncio.TimeoutError:
                raise Busy("Kernel is starting; interrupt it once it runs code") from None
        record.lifecycle.begin("interrupting")
        try:
            await record.manager.interrupt_kernel()
            self.record_activity(record)
        finally:
            record.lifecycle.end()

    async def restart(self, kernel_id: str) -> KernelRecord:
        """Restart a kernel in place (same id); clients see `restarting`, then the new kernel."""
        record = self.get(kernel_id)
        record.lifecycle.begin("restarting")
        try:
            now = self._not_up_yet(record)
            self._restarting(record, automatic=False)
            if now:
                await self._kill_unstarted(record)
            await record.manager.restart_kernel(now=now)
        finally:
            record.lifecycle.end()
        return record

    @staticmethod
    async def _kill_unstarted(record: KernelRecord) -> None:
        """Kill a kernel that has not started before jupyter_client stops or restarts it:
        jupyter_client always interrupts first, even with now=True, and a SIGINT kills a
        kernel still importing its modules with a KeyboardInterrupt traceback in the log.
        Its process gone, jupyter_client only cleans up (or launches the new one)."""
        manager = record.manager
        manager.stop_restarter()  # it must not restart the process killed here
        provisioner = manager.provisioner
        if provisioner is None:
            return
        try:
            await provisioner.kill()
            await asyncio.wait_for(provisioner.wait(), 5)
        except Exception as error:  # noqa: BLE001 - jupyter_client's shutdown follows and kills
            log.warning("Killing kernel %s before it started failed: %r", record.id, error)

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
        for observer in self._observers:
            observer.kernel_restarted(record)

    def _restarting(self, record: KernelRecord, automatic: bool) -> None:
        record.execution_state = "restarting"
        record.last_activity = utcnow()
        for observer in self._observers:
            observer.kernel_restarting(record, automatic)

    def _died(self, record: KernelRecord) -> None:
        log.warning("Kernel %s died and could not be restarted", record.id)
        if record.lifecycle.pending == AUTO_RESTART:
            record.lifecycle.end()
        record.execution_state = "dead"
        record.last_activity = utcnow()
        for observer in self._observers:
            observer.kernel_died(record)

    def check_kernelspec(self, name: str) -> None:
        """NoSuchKernelSpec unless `name` is an installed kernelspec."""
        if not isinstance(name, str):
            raise InvalidRequest("kernel name must be a string")
        try:
            self.kernel_spec_manager.get_kernel_spec(name)
        except JupyterNoSuchKernel:
            raise NoSuchKernelSpec(name) from None

    def _environment_for(self, requested: Mapping[str, Any]) -> dict[str, str]:
        """The service's sanitised environment plus the client variables we allow."""
        env = dict(self._kernel_env)
        for key, value in requested.items():
            check_variable(key, value)
            if key.startswith("KERNEL_") or key in self._allowed_env:
                env[key] = value
            else:
                log.info("Ignoring env variable %s from client (not allowed)", key)
        return env


#: Longest value a client may give a kernel variable, and longest name, in characters
#: (Linux refuses a variable over 128 KiB, and a character takes up to 4 bytes: the
#: launch would fail with a traceback, not a clear error). Characters, as the API's
#: JSON Schema counts them.
MAX_VARIABLE_CHARS = 16 * 1024
MAX_NAME_CHARS = 1024


def check_variable(name: Any, value: Any) -> None:
    """Raise InvalidRequest for a variable a process cannot be given: not strings, an
    empty name or one with `=`, a NUL anywhere, no UTF-8 form, or a value too long."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise InvalidRequest("env must map variable names to strings")
    if not name or "=" in name:
        raise InvalidRequest(f"env: {name!r} is not a variable name")
    if "\0" in name or "\0" in value:
        raise InvalidRequest(f"env: {name!r} holds a NUL character")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequest(f"env: a variable name is longer than {MAX_NAME_CHARS} characters")
    try:
        value.encode()
        name.encode()
    except UnicodeEncodeError:
        raise InvalidRequest(f"env: {name!r} holds a lone surrogate") from None
    if len(value) > MAX_VARIABLE_CHARS:
        raise InvalidRequest(f"env: {name!r} is longer than {MAX_VARIABLE_CHARS} characters")


def sanitised_environment(secret_names: Iterable[str]) -> dict[str, str]:
    """The service's environment less the variables that hold its secrets."""
    secrets = set(secret_names)
    return {key: value for key, value in os.environ.items() if key not in secrets}
