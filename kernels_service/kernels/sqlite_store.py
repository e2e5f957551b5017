"""The kernel store of one service: one SQLite file (Python's own sqlite3, no server).

The store's directory is private (0700) and its file too (0600): entries hold kernels'
keys. The store refuses, rather than repairs, what it did not make: a file of another
version, one it cannot read, or one that others may read is a `StoreError` (the service
exits 1 and leaves the file as it was, for the operator). One store serves one service at
a time: the second is refused (an exclusive lock, released when the first one's process
ends, however it ends).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from kernels_service.kernels.store import StoredKernel, StoreError

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE kernels (
    id TEXT PRIMARY KEY,
    entry TEXT NOT NULL
)
"""


#: A new entry, or a kernel's entry replaced in place (its place in the order kept).
UPSERT = "INSERT INTO kernels (id, entry) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET entry = excluded.entry"


class SqliteKernelStore:
    """A kernel store in one SQLite file, locked by this service while it is open."""

    shared = False  # one service per file

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._lock = take_lock(self.path + ".lock", self.path)
        try:
            self._db = open_database(self.path)
        except BaseException:
            os.close(self._lock)
            raise

    async def open(self) -> None:
        """Nothing: the file is open (and locked) once the store is made."""

    async def save(self, entry: StoredKernel, limit: int | None = None) -> None:
        """Write the entry (`limit`: the registry counts this service's kernels itself)."""
        with self._db:
            self._db.execute(UPSERT, (entry.id, entry.to_json()))

    async def remove(self, kernel_id: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM kernels WHERE id = ?", (kernel_id,))

    async def entries(self) -> list[StoredKernel]:
        rows = self._db.execute("SELECT id, entry FROM kernels ORDER BY rowid").fetchall()
        try:
            return [StoredKernel.from_json(entry) for _, entry in rows]
        except (ValueError, TypeError) as error:
            raise StoreError(f"the kernel store {self.path} holds an entry it cannot read: {error}") from None

    @asynccontextmanager
    async def acting(self, kernel_id: str) -> AsyncIterator[None]:
        yield  # one service per file: nobody else acts on its kernels

    async def claim(self, kernel_id: str) -> bool:
        return True  # one service per file: its kernels are this one's

    async def release(self) -> None:
        """Nothing: no other service waits for its kernels."""

    async def close(self) -> None:
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
