"""The kernel store: what the service must know of each kernel to take it up again after a
restart, an upgrade or a crash of the service (`--keep-kernels`).

`KernelStore` is what the registry's keeper uses. Two implementations: `SqliteKernelStore`
(kernels/sqlite_store.py), one file and no server, the embedded default for one service;
`PostgresKernelStore` (kernels/postgres_store.py), a PostgreSQL database that replicas
can share. kernels/stores.py picks one by the location `--kernel-store` gives.

An entry holds the kernel's connection information, its HMAC key and CurveZMQ keys
included: whoever can read the store can run code in its kernels (docs/deployment.md says
what that asks of a database's access rules).
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from kernels_service.kernels.errors import ConfigError, KernelsError, StoreUnavailable

__all__ = ["KernelStore", "LeaseLost", "Replica", "StoreError", "StoreUnavailable", "StoredKernel", "StoredRow"]


class StoreError(ConfigError):
    """The kernel store cannot be used as given; the message says which store and why
    (the service does not start: exit 1)."""


@dataclass(frozen=True)
class StoredKernel:
    """One kernel, as the store keeps it: enough to reach it, signal it, and tell whether
    a process found later is still the same one."""

    id: str
    kernelspec: str
    connection_info: dict[str, Any]  # jupyter_client's, keys as text
    provisioner: str  # the provisioner's name
    provisioner_info: dict[str, Any]  # its get_provisioner_info(): a local kernel's pid, a container's name...
    client_env: dict[str, str] = field(default_factory=dict)  # the client's KERNEL_* variables
    host: str = ""  # the machine and user that started it: another's entries are never signalled
    uid: int = -1
    process_start: int | None = None  # a local kernel's start time (clock ticks after boot): no reused pid
    started: str = ""  # ISO 8601
    last_activity: str = ""
    left: str = ""  # when the service let go of it, running (SIGTERM); "" after a crash

    def to_json_object(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StoredKernel:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Replica:
    """This service as the other replicas of a shared store know it."""

    name: str  # one running service at a time per name: a restart with the same name takes its kernels back
    address: str  # where the others forward requests for the kernels it owns (http://host:port/base/)
    lease_time: float = 5.0  # seconds its leases last without renewal


@dataclass(frozen=True)
class StoredRow:
    """A kernel as a shared store lists it: its entry, its owner and that owner's address,
    the owner's lease epoch, and its state and activity as the replicas last wrote them."""

    entry: StoredKernel
    owner: str
    owner_address: str
    epoch: int
    execution_state: str
    last_activity: str  # ISO 8601
    lease_ended: float | None = None  # seconds since the owner's lease ran out (None: it runs)
    released: bool = False  # its owner let go of it on purpose (a drain), not yet claimed
    handed_over: bool = False  # its last claim followed a drain (its clients missed nothing), not a death
    claimed: str = ""  # when it was last claimed (ISO 8601; "": never, its first owner holds it)


class LeaseLost(KernelsError):
    """This replica no longer owns the kernel (another took it over): it must not act on
    it (409)."""


class KernelStore(Protocol):
    """Where the service keeps its kernels' entries."""

    shared: bool  # whether replicas share it (each kernel then has an owner: kernels/fleet.py)

    async def open(self) -> None:
        """Reach the store and check it (StoreError if it cannot be used), before any kernel starts."""

    async def save(self, entry: StoredKernel, limit: int | None = None) -> None:
        """Write the entry (a new kernel, or one restarted on new ports or keys); with
        `limit`, a new kernel only if the store keeps fewer (LimitReached otherwise)."""

    async def remove(self, kernel_id: str) -> None:
        """Forget a kernel (it stopped, or is gone); nothing if it is not there."""

    async def entries(self) -> list[StoredKernel]:
        """Every kernel kept, oldest first."""

    async def close(self) -> None:
        """Let go of the store (and of its lock)."""

    async def claim(self, kernel_id: str) -> bool:
        """Make this service the kernel's owner, if no other live one is (at start: to take
        it up); whether it is now."""

    async def release(self) -> None:
        """Let go of this service's kernels at once (it stops and leaves them running)."""

    def acting(self, kernel_id: str) -> AbstractAsyncContextManager[None]:
        """While this service acts on the kernel (interrupt, restart, stop): LeaseLost if it
        does not own it any more."""
