"""The kernel store in a PostgreSQL database (psycopg 3, async, with its pool): one that
the service's replicas can share (`--kernel-store=postgresql://user@host:port/db`).

The URL names the server, user and database, never a password: one in the URL would be on
the service's command line (every local user's `ps`) and perhaps in a log, so it is
refused. The password comes as libpq takes it: `PGPASSWORD`, a password file
(`PGPASSFILE`, `~/.pgpass`, or `passfile=` in the URL), or no password at all (a unix
socket with peer authentication, client certificates).

The schema is versioned in a table of its own (`kernels_service_schema`): the version the
database is at, and the oldest service schema version that can still use it. A service
makes the schema in an empty database, uses one it can read, and refuses (exit 1, the
database left as it was) one that needs a newer service. docs/deployment.md says how a
schema change rolls out while replicas of two versions run.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from kernels_service.kernels.store import StoredKernel, StoreError, StoreUnavailable

log = logging.getLogger("kernels_service.kernels")

#: The schema this service writes, and the oldest schema version it can read and write.
SCHEMA_VERSION = 1
SCHEMA = (
    """CREATE TABLE kernels_service_schema (
        version integer NOT NULL,
        oldest_reader integer NOT NULL
    )""",
    f"INSERT INTO kernels_service_schema (version, oldest_reader) VALUES ({SCHEMA_VERSION}, {SCHEMA_VERSION})",
    """CREATE TABLE kernels_service_kernels (
        id text PRIMARY KEY,
        position bigserial NOT NULL,
        entry jsonb NOT NULL
    )""",
)

#: Every service on one database takes this transaction lock while it makes or checks the
#: schema (three replicas started at once make it once), and holds the session lock of
#: the same key while it runs: one service per store until kernels have owners (leases).
SCHEMA_LOCK = 0x6B65726E656C73  # "kernels"
SERVICE_LOCK = 0x6B65726E656C7331  # "kernels1"

#: How long a connection may take (libpq's connect_timeout), and a query's wait for a
#: connection of the pool while the database is out of reach.
CONNECT_TIMEOUT = 10
POOL_TIMEOUT = 5.0

UPSERT = (
    "INSERT INTO kernels_service_kernels (id, entry) VALUES (%s, %s)"
    " ON CONFLICT (id) DO UPDATE SET entry = excluded.entry"
)


def checked_url(url: str) -> str:
    """libpq's connection string of `url`, checked: StoreError if it cannot be parsed or
    carries a password. The error never repeats the URL's parameters."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as error:
        raise StoreError(f"--kernel-store: not a PostgreSQL URL libpq can read ({first_line(error)})") from None
    if "password" in params:
        raise StoreError(
            "--kernel-store: the URL carries a password, which every local user could read on the "
            "command line: give it by PGPASSWORD or a password file (PGPASSFILE) instead"
        )
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    params.setdefault("application_name", "kernels-service")
    return make_conninfo(**params)


def described(url: str) -> str:
    """The store as the log names it: server, port, user, database."""
    params = conninfo_to_dict(url)
    host, port = params.get("host", "(default host)"), params.get("port", "5432")
    return f"postgresql {params.get('user', '(default user)')}@{host}:{port}/{params.get('dbname', '(default)')}"


def first_line(error: BaseException) -> str:
    return str(error).strip().split("\n")[0]


class PostgresKernelStore:
    """A kernel store in a PostgreSQL database."""

    def __init__(self, url: str):
        self.conninfo = checked_url(url)
        self.name = described(self.conninfo)
        self._lock_holder: psycopg.AsyncConnection | None = None
        self._pool: AsyncConnectionPool | None = None

    async def open(self) -> None:
        """Connect, make or check the schema, take the service lock, open the pool."""
        self._lock_holder = await self._connect()
        try:
            await self._check_schema(self._lock_holder)
            await self._take_service_lock(self._lock_holder)
            self._pool = AsyncConnectionPool(
                self.conninfo,
                min_size=1,
                max_size=4,
                open=False,
                timeout=POOL_TIMEOUT,
                kwargs={"autocommit": True},
                check=AsyncConnectionPool.check_connection,
                name="kernel-store",
            )
            await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except BaseException:
            await self.close()
            raise
        log.info("Kernels kept in %s (schema version %s)", self.name, SCHEMA_VERSION)

    async def _connect(self) -> psycopg.AsyncConnection:
        try:
            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except psycopg.Error as error:
            raise StoreError(f"cannot reach the kernel store {self.name}: {first_line(error)}") from None

    async def _check_schema(self, connection: psycopg.AsyncConnection) -> None:
        """Make the schema in a database that has none; check the version of one that has."""
        try:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                exists = await connection.execute("SELECT to_regclass('kernels_service_schema') IS NOT NULL")
                if not (await exists.fetchone())[0]:
                    for statement in SCHEMA:
                        await connection.execute(statement)
                    log.info("Made the kernel store's schema (version %s) in %s", SCHEMA_VERSION, self.name)
                    return
                versions = await connection.execute("SELECT version, oldest_reader FROM kernels_service_schema")
                self._check_version(await versions.fetchall())
                await connection.execute("SELECT id, entry FROM kernels_service_kernels LIMIT 1")
        except psycopg.Error as error:
            raise StoreError(f"cannot use the kernel store {self.name}: {first_line(error)}") from None

    def _check_version(self, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) != 1:
            raise StoreError(f"the kernel store {self.name} has {len(rows)} schema versions: not a store it made")
        version, oldest_reader = rows[0]
        if oldest_reader > SCHEMA_VERSION:
            raise StoreError(
                f"the kernel store {self.name} is of schema version {version}, which needs a service of "
                f"schema version {oldest_reader} or newer; this service's is {SCHEMA_VERSION}"
            )
        if version < SCHEMA_VERSION:
            raise StoreError(
                f"the kernel store {self.name} is of schema version {version}, older than any this service "
                f"reads ({SCHEMA_VERSION})"
            )

    async def _take_service_lock(self, connection: psycopg.AsyncConnection) -> None:
        taken = await (await connection.execute("SELECT pg_try_advisory_lock(%s)", (SERVICE_LOCK,))).fetchone()
        if not taken[0]:
            raise StoreError(f"the kernel store {self.name} is in use by another service")

    async def _execute(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on a connection of the pool; StoreUnavailable if the database
        does not answer."""
        if self._pool is None:
            raise StoreUnavailable("The kernel store is not open")
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(query, params)
                return await cursor.fetchall() if cursor.description else []
        except (psycopg.OperationalError, PoolTimeout) as error:
            log.warning("The kernel store %s did not answer: %s", self.name, first_line(error))
            raise StoreUnavailable("The kernel store (the service's database) is out of reach; try again") from None

    async def save(self, entry: StoredKernel) -> None:
        await self._execute(UPSERT, (entry.id, Jsonb(entry.to_json_object())))

    async def remove(self, kernel_id: str) -> None:
        await self._execute("DELETE FROM kernels_service_kernels WHERE id = %s", (kernel_id,))

    async def entries(self) -> list[StoredKernel]:
        rows = await self._execute("SELECT id, entry FROM kernels_service_kernels ORDER BY position")
        try:
            return [StoredKernel(**entry) for _, entry in rows]
        except TypeError as error:
            raise StoreError(f"the kernel store {self.name} holds an entry it cannot read: {error}") from None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._lock_holder is not None:
            await self._lock_holder.close()  # the session's lock goes with it
            self._lock_holder = None
