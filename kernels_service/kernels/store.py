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
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from kernels_service.kernels.errors import ConfigError, StoreUnavailable

__all__ = ["StoreError", "StoreUnavailable", "StoredKernel", "KernelStore"]


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


class KernelStore(Protocol):
    """Where the service keeps its kernels' entries."""

    async def open(self) -> None:
        """Reach the store and check it (StoreError if it cannot be used), before any kernel starts."""

    async def save(self, entry: StoredKernel) -> None:
        """Write the entry (a new kernel, or one restarted on new ports or keys)."""

    async def remove(self, kernel_id: str) -> None:
        """Forget a kernel (it stopped, or is gone); nothing if it is not there."""

    async def entries(self) -> list[StoredKernel]:
        """Every kernel kept, oldest first."""

    async def close(self) -> None:
        """Let go of the store (and of its lock)."""
