"""Which kernel store `--kernel-store` names: a PostgreSQL URL (a store replicas share,
kernels/postgres_store.py; psycopg is an extra, imported only then) or a file's path
(SQLite, kernels/sqlite_store.py)."""

from __future__ import annotations

from kernels_service.kernels.store import KernelStore, Replica, StoreError

#: The schemes of a PostgreSQL store's URL (libpq's).
POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


def make_store(location: str, replica: Replica) -> KernelStore:
    """The store at `location`: a PostgreSQL URL (shared, this service being `replica` of
    it) or a file's path. A URL of another scheme is a StoreError (never taken for a
    relative path)."""
    if location.startswith(POSTGRESQL_SCHEMES):
        try:
            from kernels_service.kernels.postgres_store import PostgresKernelStore
        except ImportError:
            raise StoreError(
                "a PostgreSQL kernel store needs psycopg: pip install 'kernels-service[postgresql]'"
            ) from None
        return PostgresKernelStore(location, replica)
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise StoreError(f"--kernel-store: no store of scheme {scheme!r}; give a path or a postgresql:// URL")
    from kernels_service.kernels.sqlite_store import SqliteKernelStore

    return SqliteKernelStore(location)
