"""The kernel store: what the service must know of each kernel to take it up again after a
restart, an upgrade or a crash of the service (`--keep-kernels`).

`KernelStore` is what the registry's keeper uses; `SqliteKernelStore`, the one kept in a
file of Python's own sqlite3, needs no server. A store shared by several replicas (a
server database) would be another implementation of the same four methods.

An entry holds the kernel's connection information, its HMAC key and CurveZMQ keys
included: the store's directory is private (0700) and its file too (0600). The store
refuses, rather than repairs, what it did not make: a file of another version, one it
cannot read, or one that others may read is a `StoreError` (the service exits 1 and leaves
the file as it was, for the operator). One store serves one service at a time: the
second is refused (an exclusive lock, released when the first one's process ends, however
it ends).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import stat
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from kernels_service.kernels.errors import ConfigError

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE kernels (
    id TEXT PRIMARY KEY,
    entry TEXT NOT NULL
)
"""


#: A new entry, or a kernel's entry replaced in place (its place in the order kept).
UPSERT = "INSERT INTO kernels (id, entry) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET entry = excluded.entry"


class StoreError(ConfigError):
    """The kernel store cannot be used; the message says which file and why."""


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

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> StoredKernel:
        return cls(**json.loads(text))


class KernelStore(Protocol):
    """Where the service keeps its kernels' entries."""

    def save(self, entry: StoredKernel) -> None:
        """Write the entry (a new kernel, or one restarted on new ports or keys)."""

    def remove(self, kernel_id: str) -> None:
        """Forget a kernel (it stopped, or is gone); nothing if it is not there."""

    def entries(self) -> list[StoredKernel]:
        """Every kernel kept, oldest first."""

    def close(self) -> None:
        """Let go of the store (and of its lock)."""


class SqliteKernelStore:
    """A kernel store in one SQLite file, locked by this service while it is open."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._lock = take_lock(self.path + ".lock", self.path)
        try:
            self._db = open_database(self.path)
        except BaseException:
            os.close(self._lock)
            raise

    def save(self, entry: StoredKernel) -> None:
        with self._db:
            self._db.execute(UPSERT, (entry.id, entry.to_json()))

    def remove(self, kernel_id: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM kernels WHERE id = ?", (kernel_id,))

    def entries(self) -> list[StoredKernel]:
        rows = self._db.execute("SELECT id, entry FROM kernels ORDER BY rowid").fetchall()
        try:
            return [StoredKernel.from_json(entry) for _, entry in rows]
        except (ValueError, TypeError) as error:
            raise StoreError(f"the kernel store {self.path} holds an entry it cannot read: {error}") from None

    def close(self) -> None:
        self._db.close()
        os.close(self._lock)


def private_directory(path: str) -> None:
    """Make the store's directory (0700) if it is not there; StoreError if it is there and
    others may enter it."""
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        mode = os.stat(directory).st_mode
    except OSError as error:
        raise StoreError(f"cannot make the kernel store's directory {directory}: {error.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(f"the kernel store's directory {directory} may be entered by others (mode {mode & 0o777:o})")


def take_lock(lock_path: str, store_path: str) -> int:
    """An exclusive lock on the store, held as long as the returned descriptor is open;
    StoreError if another service holds it."""
    private_directory(store_path)
    try:
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise StoreError(f"cannot open the kernel store's lock {lock_path}: {error.strerror}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise StoreError(f"the kernel store {store_path} is in use by another service") from None
    return descriptor


def open_database(path: str) -> sqlite3.Connection:
    """The store's database: made (0600, this version) if there is no file, else checked."""
    if not os.path.exists(path):
        return create_database(path)
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(f"the kernel store {path} may be read by others (mode {mode & 0o777:o}): chmod 600 it")
    try:
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            db.close()
            raise StoreError(f"the kernel store {path} is of version {version}; this service reads {SCHEMA_VERSION}")
        db.execute("SELECT id, entry FROM kernels LIMIT 1").fetchall()
    except sqlite3.Error as error:
        raise StoreError(f"cannot read the kernel store {path}: {error}") from None
    return db


def create_database(path: str) -> sqlite3.Connection:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)  # 0600 from the start
    os.close(descriptor)
    db = sqlite3.connect(path)
    with db:
        db.execute(SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return db
