"""The kernel registry: every kernel the service runs, over jupyter_client's multi-kernel manager.

jupyter_client does launching, ports, signals, restarts and provisioners; the registry adds
what the service needs around it: validation of client input, the `max_kernels` limit,
a sanitised kernel environment, activity records for the REST model, and notifications
to observers (the relay) when kernels start, restart, die or stop.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from jupyter_client.kernelspec import NoSuchKernel as JupyterNoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.multikernelmanager import AsyncMultiKernelManager

from kernels_service.kernels.errors import (
    InvalidRequest,
    LimitReached,
    NoSuchKernel,
    NoSuchKernelSpec,
)

log = logging.getLogger("kernels_service.kernels")


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

    def touch(self) -> None:
        self.last_activity = utcnow()

    def model(self) -> dict[str, Any]:
        """The kernel model of the Jupyter REST API."""
        return {
            "id": self.id,
            "name": self.name,
            "last_activity": isoformat(self.last_activity),
            "execution_state": self.execution_state,
            "connections": self.connections,
        }


class KernelObserver(Protocol):
    """Told of kernel life-cycle events (the relay hub is one)."""

    async def kernel_started(self, record: KernelRecord) -> None: ...

    async def kernel_stopping(self, record: KernelRecord) -> None: ...

    def kernel_restarting(self, record: KernelRecord) -> None: ...

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

    @property
    def kernel_spec_manager(self) -> Any:
        return self._multi.kernel_spec_manager

    def add_observer(self, observer: KernelObserver) -> None:
        self._observers.append(observer)

    def list(self) -> list[KernelRecord]:
        return list(self._records.values())

    def get(self, kernel_id: str) -> KernelRecord:
        try:
            return self._records[kernel_id]
        except KeyError:
            raise NoSuchKernel(kernel_id) from None

    async def start(self, name: str | None = None, env: Mapping[str, Any] | None = None) -> KernelRecord:
        """Launch a kernel of kernelspec `name` (default if None) and tell the observers."""
        name = name or self.default_name
        self._check_spec(name)
        if self._max_kernels and len(self._records) >= self._max_kernels:
            raise LimitReached(f"Maximum number of kernels ({self._max_kernels}) reached")
        kernel_id = await self._multi.start_kernel(kernel_name=name, env=self._environment_for(env or {}))
        record = KernelRecord(kernel_id, name, self._multi.get_kernel(kernel_id))
        self._records[kernel_id] = record
        record.manager.add_restart_callback(lambda: self._restarting(record), "restart")
        record.manager.add_restart_callback(lambda: self._died(record), "dead")
        log.info("Kernel started: %s (%s)", kernel_id, name)
        for observer in self._observers:
            await observer.kernel_started(record)
        return record

    async def shutdown(self, kernel_id: str) -> None:
        """Stop a kernel and forget it."""
        record = self.get(kernel_id)
        del self._records[kernel_id]
        for observer in self._observers:
            await observer.kernel_stopping(record)
        try:
            await self._multi.shutdown_kernel(kernel_id)  # it logs "Kernel shutdown: <id>" itself
        except KeyError:  # already gone from jupyter_client's side
            pass

    async def shutdown_all(self) -> None:
        for kernel_id in list(self._records):
            await self.shutdown(kernel_id)

    async def interrupt(self, kernel_id: str) -> None:
        record = self.get(kernel_id)
        await record.manager.interrupt_kernel()
        record.touch()

    async def restart(self, kernel_id: str) -> KernelRecord:
        """Restart a kernel in place (same id, same ports); clients see `restarting`."""
        record = self.get(kernel_id)
        self._restarting(record)
        await record.manager.restart_kernel()
        return record

    def _restarting(self, record: KernelRecord) -> None:
        record.execution_state = "restarting"
        record.touch()
        for observer in self._observers:
            observer.kernel_restarting(record)

    def _died(self, record: KernelRecord) -> None:
        log.warning("Kernel %s died and could not be restarted", record.id)
        record.execution_state = "dead"
        record.touch()
        for observer in self._observers:
            observer.kernel_died(record)

    def _check_spec(self, name: str) -> None:
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
            if not isinstance(key, str) or not isinstance(value, str):
                raise InvalidRequest("env must map variable names to strings")
            if key.startswith("KERNEL_") or key in self._allowed_env:
                env[key] = value
            else:
                log.info("Ignoring env variable %s from client (not allowed)", key)
        return env


def sanitised_environment(secret_names: Iterable[str]) -> dict[str, str]:
    """The service's environment less the variables that hold its secrets."""
    secrets = set(secret_names)
    return {key: value for key, value in os.environ.items() if key not in secrets}
