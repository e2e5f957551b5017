"""The PostgreSQL kernel store's tables, and the version check every service makes at start.

Version 1: the replicas and the kernels. Version 2 adds the sessions a draining replica
hands over (`kernels_service_handovers`); a service of version 2 adds that table to a
version 1 database, which version 1 services go on using (`oldest_reader` stays 1).

`kernels_service_schema` holds the version the tables are at (`version`) and the oldest
service schema version that can still use them (`oldest_reader`). A service makes the
tables in a database that has none, uses tables it can read, and refuses, leaving them as
they were, tables that need a newer service or that it does not recognise. A change rolls
out in two steps while replicas of two versions run (docs/deployment.md): first only
additions (`version` raised, `oldest_reader` kept), later what removes or changes
meaning (`oldest_reader` raised, once no replica of the old version is left).
"""

from __future__ import annotations

from typing import Any

import psycopg

from kernels_service.kernels.store import StoreError

#: The schema this service writes, and the oldest schema version it can read and write.
SCHEMA_VERSION = 2

#: The oldest schema version this service brings up to its own (by additions only: a
#: service of that older version still uses the tables, its `oldest_reader` unchanged).
OLDEST_UPGRADED = 1

#: Version 2's addition: the websocket sessions a draining replica hands over to whichever
#: replica its clients come back to (kernels/handover.py), until when it waits for them.
HANDOVERS = """CREATE TABLE kernels_service_handovers (
        kernel_id text NOT NULL,
        session_key text NOT NULL,
        address text NOT NULL,
        until timestamptz NOT NULL,
        PRIMARY KEY (kernel_id, session_key)
    )"""

#: Version 2's additions to a kernel's row: its owner let go of it on purpose (a drain:
#: `released`), when it was last claimed, and whether that claim followed such a release
#: (`handed_over`: its clients were handed over and missed nothing) or its owner's death.
KERNEL_COLUMNS_2 = (
    "ALTER TABLE kernels_service_kernels ADD COLUMN released boolean NOT NULL DEFAULT false",
    "ALTER TABLE kernels_service_kernels ADD COLUMN handed_over boolean NOT NULL DEFAULT false",
    "ALTER TABLE kernels_service_kernels ADD COLUMN claimed timestamptz",
)

#: What brings the tables from a version to the next one.
UPGRADES = {
    1: (HANDOVERS, *KERNEL_COLUMNS_2, "UPDATE kernels_service_schema SET version = 2"),
}

#: The tables: the version; the replicas (a name, where others forward a kernel's
#: lifecycle requests, until when it is alive); the kernels (an entry, its owner's lease
#: with its fencing epoch, and its state and activity as every replica lists it).
SCHEMA = (
    """CREATE TABLE kernels_service_schema (
        version integer NOT NULL,
        oldest_reader integer NOT NULL
    )""",
    f"INSERT INTO kernels_service_schema (version, oldest_reader) VALUES ({SCHEMA_VERSION}, {OLDEST_UPGRADED})",
    """CREATE TABLE kernels_service_replicas (
        name text PRIMARY KEY,
        address text NOT NULL,
        alive_until timestamptz NOT NULL
    )""",
    """CREATE TABLE kernels_service_kernels (
        id text PRIMARY KEY,
        position bigserial NOT NULL,
        entry jsonb NOT NULL,
        owner text NOT NULL,
        epoch bigint NOT NULL DEFAULT 1,
        lease_until timestamptz NOT NULL,
        execution_state text NOT NULL DEFAULT 'starting',
        last_activity timestamptz NOT NULL DEFAULT now()
    )""",
    HANDOVERS,
    *KERNEL_COLUMNS_2,
)

#: What a service reads of each table: a query that fails if a column it needs is missing.
EXPECTED = (
    "SELECT name, address, alive_until FROM kernels_service_replicas LIMIT 1",
    "SELECT id, position, entry, owner, epoch, lease_until, execution_state, last_activity,"
    " released, handed_over, claimed FROM kernels_service_kernels LIMIT 1",
    "SELECT kernel_id, session_key, address, until FROM kernels_service_handovers LIMIT 1",
)

#: Every service on one database takes this transaction lock while it makes or checks the
#: schema: several started at once make it once.
SCHEMA_LOCK = 0x6B65726E656C73  # "kernels"


async def make_or_check(connection: psycopg.AsyncConnection, name: str) -> bool:
    """Make the tables in a database that has none (True), or check those it has (False);
    StoreError, with the database left as it was, if this service cannot use them."""
    try:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            exists = await connection.execute("SELECT to_regclass('kernels_service_schema') IS NOT NULL")
            if not (await exists.fetchone())[0]:
                for statement in SCHEMA:
                    await connection.execute(statement)
                return True
            versions = await connection.execute("SELECT version, oldest_reader FROM kernels_service_schema")
            for statement in upgrade(check_version(await versions.fetchall(), name)):
                await connection.execute(statement)
            for query in EXPECTED:
                await connection.execute(query)
            return False
    except psycopg.Error as error:
        raise StoreError(f"cannot use the kernel store {name}: {str(error).strip().splitlines()[0]}") from None


def upgrade(version: int) -> list[str]:
    """The statements that bring tables of `version` to this service's (none if they are
    at it or newer)."""
    return [statement for step in range(version, SCHEMA_VERSION) for statement in UPGRADES[step]]


def check_version(rows: list[tuple[Any, ...]], name: str) -> int:
    """The tables' version; StoreError unless the one row of versions says this service
    may use them (brought up to its version if they are older)."""
    if len(rows) != 1:
        raise StoreError(f"the kernel store {name} has {len(rows)} schema versions: not a store it made")
    version, oldest_reader = rows[0]
    if oldest_reader > SCHEMA_VERSION:
        raise StoreError(
            f"the kernel store {name} is of schema version {version}, which needs a service of "
            f"schema version {oldest_reader} or newer; this service's is {SCHEMA_VERSION}"
        )
    if version < OLDEST_UPGRADED:
        raise StoreError(
            f"the kernel store {name} is of schema version {version}, older than any this service reads "
            f"({OLDEST_UPGRADED})"
        )
    return version
