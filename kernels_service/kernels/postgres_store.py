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

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from kernels_service.kernels.errors import LimitReached
from kernels_service.kernels.postgres_schema import SCHEMA_VERSION, make_or_check
from kernels_service.kernels.store import LeaseLost, Replica, StoredKernel, StoredRow, StoreError, StoreUnavailable

log = logging.getLogger("kernels_service.kernels")
#: psycopg's pool logs each failed reconnection (every second or so while the database is
#: out of reach); the store logs once per request it cannot serve instead.
logging.getLogger("psycopg.pool").setLevel(logging.ERROR)

#: How long a connection may take (libpq's connect_timeout), and a query's wait for a
#: connection of the pool while the database is out of reach.
CONNECT_TIMEOUT = 10
POOL_TIMEOUT = 3.0
DOWN_TIMEOUT = 0.5  # the same wait, while the database does not answer

#: The transaction lock under which a new kernel is counted and admitted (--max-kernels).
COUNT_LOCK = 0x6B65726E656C7332  # "kernels2"

#: The class of the session locks that keep one running service per replica name.
REPLICA_LOCK_CLASS = 0x6B73  # "ks"

KERNELS = "kernels_service_kernels"
LEASE = "now() + make_interval(secs => %(lease)s)"

#: A new kernel is this replica's (epoch 1); an entry saved again (a restart) stays only if
#: the kernel is still this replica's, which the returned epoch says.
SAVE = (
    f"INSERT INTO {KERNELS} (id, entry, owner, lease_until) VALUES (%(id)s, %(entry)s, %(me)s, {LEASE})"
    f" ON CONFLICT (id) DO UPDATE SET entry = excluded.entry WHERE {KERNELS}.owner = %(me)s RETURNING epoch"
)
#: A kernel whose owner is this replica's name (an earlier process of it) or whose lease
#: has run out becomes this replica's, with the next epoch.
CLAIM = (
    f"UPDATE {KERNELS} SET owner = %(me)s, epoch = epoch + 1, lease_until = {LEASE},"
    " handed_over = (released AND owner <> %(me)s), released = false, claimed = now()"
    " WHERE id = %(id)s AND (owner = %(me)s OR lease_until <= now()) RETURNING epoch"
)
#: Every lease of this replica's name renewed; the kernels and epochs renewed say which
#: kernels it still owns (one another replica claimed is not among them).
#: Every lease of this replica let go of (a drain, or a stop that leaves kernels running).
RELEASE = f"UPDATE {KERNELS} SET lease_until = now(), released = true WHERE owner = %(me)s"
RENEW = f"UPDATE {KERNELS} SET lease_until = {LEASE} WHERE owner = %(me)s RETURNING id, epoch"
ALIVE = (
    f"INSERT INTO kernels_service_replicas (name, address, alive_until) VALUES (%(me)s, %(address)s, {LEASE})"
    " ON CONFLICT (name) DO UPDATE SET address = excluded.address, alive_until = excluded.alive_until"
)
ROWS = (
    "SELECT k.entry, k.owner, coalesce(r.address, ''), k.epoch, k.execution_state, k.last_activity,"
    " CASE WHEN k.lease_until <= now() THEN extract(epoch FROM now() - k.lease_until)::float8 END,"
    " k.released, k.handed_over, k.claimed"
    f" FROM {KERNELS} k LEFT JOIN kernels_service_replicas r ON r.name = k.owner"
)
STATE = (
    f"UPDATE {KERNELS} SET execution_state = %s, last_activity = greatest(last_activity, %s)"
    " WHERE id = %s AND owner = %s"
)
SEEN = f"UPDATE {KERNELS} SET last_activity = greatest(last_activity, %s) WHERE id = %s"
#: A kernel whose lease ended long ago and that no replica could take over, dropped: only
#: at the epoch the dropping replica saw (one claimed meanwhile stays).
DROP = (
    f"DELETE FROM {KERNELS} WHERE id = %s AND epoch = %s"
    " AND lease_until < now() - make_interval(secs => %s) RETURNING id"
)
HANDOVER = (
    "INSERT INTO kernels_service_handovers (kernel_id, session_key, address, until)"
    " VALUES (%s, %s, %s, now() + make_interval(secs => %s)) ON CONFLICT (kernel_id, session_key)"
    " DO UPDATE SET address = excluded.address, until = excluded.until"
)
TAKE_HANDOVER = (
    "DELETE FROM kernels_service_handovers WHERE kernel_id = %s AND session_key = %s AND until > now()"
    " RETURNING address"
)
ACTING = f"SELECT 1 FROM {KERNELS} WHERE id = %s AND owner = %s AND epoch = %s AND lease_until > now() FOR UPDATE"


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
    """A kernel store in a PostgreSQL database, shared by the replicas of one service.

    Each kernel has one owner at a time, by a lease in its row: the replica that started or
    claimed it, until `lease_until`, which the owner renews (`renew`) every third of its
    lease time; each claim raises the kernel's epoch (fencing). The owner's acts on a
    kernel happen inside `acting`, which holds the kernel's row and checks that the lease
    and the epoch are still this replica's. One running process per replica name: a
    session lock on a connection of its own, released when the process ends however it
    ends."""

    shared = True  # replicas share it

    def __init__(self, url: str, replica: Replica):
        self.conninfo = checked_url(url)
        self.name = described(self.conninfo)
        self.replica = replica
        self._epochs: dict[str, int] = {}  # the epoch of each kernel this replica owns
        self._lock_holder: psycopg.AsyncConnection | None = None
        self._pool: AsyncConnectionPool | None = None
        self._renewed: float | None = None  # when this replica's leases were last renewed (monotonic)
        self._down = False  # the database did not answer the last request
        self._closing: set[asyncio.Task[None]] = set()  # pools being closed after a failure

    @property
    def _params(self) -> dict[str, Any]:
        return {"me": self.replica.name, "lease": self.replica.lease_time, "address": self.replica.address}

    async def open(self) -> None:
        """Connect, make or check the schema, take the replica name's lock, open the pool."""
        self._lock_holder = await self._connect()
        try:
            if await make_or_check(self._lock_holder, self.name):
                log.info("Made the kernel store's schema (version %s) in %s", SCHEMA_VERSION, self.name)
            await self._take_replica_lock(self._lock_holder)
            self._pool = self._new_pool()
            await self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
            await self.renew()
        except BaseException:
            await self.close()
            raise
        log.info("Kernels kept in %s (schema version %s), as replica %s", self.name, SCHEMA_VERSION, self.replica.name)

    def _new_pool(self) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self.conninfo,
            min_size=1,
            max_size=10,  # acts hold a connection while they last (acting)
            open=False,
            timeout=POOL_TIMEOUT,
            kwargs={"autocommit": True},
            check=AsyncConnectionPool.check_connection,
            name="kernel-store",
        )

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection of the pool; StoreUnavailable if the database does not answer. While
        it has not answered, a request waits DOWN_TIMEOUT only, and each failure starts a
        fresh pool: its first attempt is at once (the pool's own would wait ever longer, up
        to minutes), so the store is back within a request of the database."""
        if self._pool is None:
            raise StoreUnavailable("The kernel store is not open")
        try:
            async with self._pool.connection(timeout=DOWN_TIMEOUT if self._down else POOL_TIMEOUT) as connection:
                yield connection
            self._down = False
        except (psycopg.OperationalError, PoolTimeout) as error:
            if not self._down:
                log.warning("The kernel store %s did not answer: %s", self.name, first_line(error))
            self._down = True
            await self._renew_pool()
            raise StoreUnavailable("The kernel store (the service's database) is out of reach; try again") from None

    async def _renew_pool(self) -> None:
        old, self._pool = self._pool, self._new_pool()
        await self._pool.open(wait=False)
        if old is not None:
            self._closing.add(asyncio.ensure_future(old.close(timeout=1)))
            self._closing = {task for task in self._closing if not task.done()}

    async def _connect(self) -> psycopg.AsyncConnection:
        try:
            return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
        except psycopg.Error as error:
            raise StoreError(f"cannot reach the kernel store {self.name}: {first_line(error)}") from None

    async def _take_replica_lock(self, connection: psycopg.AsyncConnection) -> None:
        query = "SELECT pg_try_advisory_lock(%s, hashtext(%s))"
        taken = await (await connection.execute(query, (REPLICA_LOCK_CLASS, self.replica.name))).fetchone()
        if not taken[0]:
            raise StoreError(
                f"the kernel store {self.name} is in use by another service named {self.replica.name!r} "
                "(--replica-name: each replica needs a name of its own)"
            )

    async def _execute(self, query: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Run one statement; StoreUnavailable if the database does not answer."""
        async with self._connection() as connection:
            cursor = await connection.execute(query, params)
            return await cursor.fetchall() if cursor.description else []

    async def save(self, entry: StoredKernel, limit: int | None = None) -> None:
        """Write a new kernel's entry (this replica's from now on), or a restarted one's;
        LeaseLost if another replica owns it now. With `limit` (--max-kernels), a new
        kernel is admitted only if fewer than `limit` kernels of every replica are kept,
        counted in the same transaction (LimitReached otherwise): a burst spread over the
        replicas cannot pass it."""
        params = {**self._params, "id": entry.id, "entry": Jsonb(entry.to_json_object())}
        async with self._connection() as connection, connection.transaction():
            if limit is not None:
                await connection.execute("SELECT pg_advisory_xact_lock(%s)", (COUNT_LOCK,))
                count = await connection.execute(f"SELECT count(*) FROM {KERNELS} WHERE id <> %(id)s", params)
                if (await count.fetchone())[0] >= limit:
                    raise LimitReached(f"Maximum number of kernels ({limit}) reached across the replicas")
            rows = await (await connection.execute(SAVE, params)).fetchall()
        if not rows:  # its epoch stays: the next renewal finds the kernel lost
            raise LeaseLost(f"Kernel {entry.id} is owned by another replica now")
        self._epochs[entry.id] = rows[0][0]

    async def remove(self, kernel_id: str) -> None:
        """Forget a kernel this replica owns (another replica's entry stays)."""
        await self._execute(f"DELETE FROM {KERNELS} WHERE id = %s AND owner = %s", (kernel_id, self.replica.name))
        self._epochs.pop(kernel_id, None)

    async def count(self) -> int:
        """How many kernels every replica keeps."""
        return (await self._execute(f"SELECT count(*) FROM {KERNELS}"))[0][0]

    async def entries(self) -> list[StoredKernel]:
        return [row.entry for row in await self.rows()]

    async def rows(self, kernel_id: str | None = None) -> list[StoredRow]:
        """Every kernel of every replica (or the one of `kernel_id`), oldest first."""
        where, params = (" WHERE k.id = %s", (kernel_id,)) if kernel_id is not None else ("", ())
        rows = await self._execute(ROWS + where + " ORDER BY k.position", params)
        try:
            return [
                StoredRow(
                    StoredKernel(**entry),
                    owner,
                    address,
                    epoch,
                    state,
                    isoformat_z(activity),
                    ended,
                    released,
                    handed_over,
                    isoformat_z(claimed) if claimed is not None else "",
                )  # fmt: skip
                for entry, owner, address, epoch, state, activity, ended, released, handed_over, claimed in rows
            ]
        except TypeError as error:
            raise StoreError(f"the kernel store {self.name} holds an entry it cannot read: {error}") from None

    async def claim(self, kernel_id: str) -> bool:
        """Own the kernel if it was this replica name's or its lease ran out (the next epoch)."""
        rows = await self._execute(CLAIM, {**self._params, "id": kernel_id})
        if rows:
            self._epochs[kernel_id] = rows[0][0]
        return bool(rows)

    async def renew(self) -> list[str]:
        """Renew this replica's leases and its own row (alive, and its address); the
        kernels it owned and does not any more (another replica claimed them: their
        lease ran out while this one was paused or cut off from the database)."""
        began = time.monotonic()
        held = dict(self._epochs)  # before the renewal: a kernel saved or claimed meanwhile is not judged
        renewed = dict(await self._execute(RENEW, self._params))
        await self._execute(ALIVE, self._params)
        self._renewed = began
        lost = [k for k, epoch in held.items() if renewed.get(k) != epoch and self._epochs.get(k) == epoch]
        for kernel_id in lost:
            del self._epochs[kernel_id]
        return lost

    async def drop(self, row: StoredRow, after: float) -> bool:
        """Forget a kernel whose lease ended more than `after` seconds ago and that no
        replica took over (at the epoch of `row`); whether it was dropped."""
        return bool(await self._execute(DROP, (row.entry.id, row.epoch, after)))

    async def release(self) -> None:
        """Let go of every lease at once (the service stops and leaves its kernels running):
        another replica, or this one's next process, may claim them without waiting."""
        await self._execute(RELEASE, self._params)
        await self._execute("DELETE FROM kernels_service_replicas WHERE name = %(me)s", self._params)
        self._epochs.clear()

    async def offer_handovers(self, sessions: list[tuple[str, str]], wait: float) -> None:
        """Say that this replica holds what these (kernel id, session key) websocket
        sessions miss, for `wait` seconds, for whichever replica their clients come back to."""
        async with self._connection() as connection, connection.cursor() as cursor:
            await cursor.execute("DELETE FROM kernels_service_handovers WHERE until < now()")
            offers = [(kernel_id, key, self.replica.address, wait) for kernel_id, key in sessions]
            await cursor.executemany(HANDOVER, offers)

    async def handover_of(self, kernel_id: str, key: str) -> str | None:
        """The address of the replica that holds a session's missed messages, if one does
        (it is forgotten here: the one who asks takes them)."""
        rows = await self._execute(TAKE_HANDOVER, (kernel_id, key))
        return rows[0][0] if rows else None

    async def report(self, states: list[tuple[str, str, datetime]], seen: list[tuple[str, datetime]]) -> None:
        """Write the state and activity of kernels this replica owns (`states`: id, state,
        last activity), and the activity its clients made on others' kernels (`seen`)."""
        if not states and not seen:
            return
        async with self._connection() as connection, connection.cursor() as cursor:
            if states:
                owned = [(state, activity, kernel_id, self.replica.name) for kernel_id, state, activity in states]
                await cursor.executemany(STATE, owned)
            if seen:
                await cursor.executemany(SEEN, [(activity, kernel_id) for kernel_id, activity in seen])

    @asynccontextmanager
    async def acting(self, kernel_id: str) -> AsyncIterator[None]:
        """Act on an owned kernel (interrupt, restart, stop, cull) while its row is held and
        its lease and epoch are still this replica's; LeaseLost if they are not: a replica
        that was paused past its lease acts on nothing another one took over. With the
        database out of reach, it acts only while the lease it last renewed surely runs
        (StoreUnavailable after that)."""
        held = AsyncExitStack()
        try:
            await self._hold_row(held, kernel_id)
        except LeaseLost:
            await self._let_go(held)
            raise
        except StoreUnavailable:
            await self._let_go(held)
            if not self._lease_surely_runs():
                raise
            log.warning("Acting on kernel %s on this replica's lease, which surely still runs", kernel_id)
        try:
            yield
        finally:
            await self._let_go(held)

    async def _let_go(self, held: AsyncExitStack) -> None:
        """End the transaction that held a kernel's row (it only read: whether it commits
        does not matter) and give its connection back."""
        try:
            await held.aclose()
        except (psycopg.Error, PoolTimeout) as error:
            log.debug("The kernel store's row hold ended badly: %s", first_line(error))

    async def _hold_row(self, held: AsyncExitStack, kernel_id: str) -> None:
        """Begin a transaction that holds the kernel's row, if this replica still owns it."""
        connection = await held.enter_async_context(self._connection())
        await held.enter_async_context(connection.transaction())
        epoch = self._epochs.get(kernel_id)
        row = await (await connection.execute(ACTING, (kernel_id, self.replica.name, epoch))).fetchone()
        if row is None:  # its epoch stays: the next renewal finds the kernel lost (fleet gives it up)
            raise LeaseLost(f"Kernel {kernel_id} is owned by another replica now")

    def _lease_surely_runs(self) -> bool:
        """Whether this replica's leases still run by its own clock: renewed less than
        half a lease ago (the rest is margin for clocks and the act itself)."""
        return self._renewed is not None and time.monotonic() - self._renewed < self.replica.lease_time / 2

    async def close(self) -> None:
        if self._closing:  # pools given up after a failure, still closing
            await asyncio.wait(self._closing, timeout=2)
            self._closing.clear()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._lock_holder is not None:
            await self._lock_holder.close()  # the session's lock goes with it
            self._lock_holder = None


def isoformat_z(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
