"""A real PostgreSQL server for the tests of the shared kernel store: Debian's `postgresql`
package (`.ci/run` installs it), a cluster made in a temporary directory with `initdb`,
run with `pg_ctl` as an unprivileged user (PostgreSQL refuses to run as root), listening
on a free loopback port and on a unix socket in that directory. Stopped by its pid, its
directory removed.

The cluster has a superuser `postgres` (for the tests' own look at the database) and
asks every client for a password (scram-sha-256), so that wrong credentials are refused
as on a real server; `Cluster.url()` is what the service is given, the password goes
through `PGPASSWORD`.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kernels_service.testing.service import free_port

#: The unprivileged user the server runs as when the tests run as root.
SERVER_USER = "nobody"
SUPERUSER = "postgres"


def server_binaries() -> Path:
    """The directory of `initdb` and `pg_ctl` (Debian keeps them off the PATH); fails loudly
    if PostgreSQL is not installed: these tests are never skipped."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    assert initdb, "PostgreSQL's server is not installed (apt-get install postgresql; .ci/run does)"
    return Path(initdb).resolve().parent


class Cluster:
    """One PostgreSQL server of the tests' own."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.data = directory / "data"
        self.socket_dir = directory
        self.port = free_port()
        self.password = secrets.token_hex(16)
        self.bin = server_binaries()
        self.run_as = pwd.getpwnam(SERVER_USER) if os.geteuid() == 0 else None

    def _run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a server program as the server's user."""
        user = {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []} if self.run_as else {}
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(self.directory)}
        where = {"env": env, "cwd": self.directory, **user}
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **where)
        assert done.returncode == 0, f"{argv[0]} failed: {done.stdout}{done.stderr}"
        return done

    def init(self) -> None:
        if self.run_as:
            os.chown(self.directory, self.run_as.pw_uid, self.run_as.pw_gid)
        password_file = self.directory / "superuser-password"
        password_file.write_text(self.password + "\n")
        if self.run_as:
            os.chown(password_file, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=scram-sha-256",
            f"--pwfile={password_file}", "--encoding=UTF8", "--no-instructions",
        )  # fmt: skip
        password_file.unlink()

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.socket_dir}"
        options += " -c fsync=off -c max_connections=200"
        log = self.directory / "server.log"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-o", options, "-w", "start")

    def stop(self) -> None:
        """Stop the server by its pid (pg_ctl's `-m fast`: clients are disconnected)."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
        deadline = time.monotonic() + 60
        while self.pid() is not None:
            assert time.monotonic() < deadline, "PostgreSQL did not stop in 60 s"
            time.sleep(0.05)

    def pid(self) -> int | None:
        """The server's pid, while it runs."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n")[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def url(self, database: str = "postgres", user: str = SUPERUSER) -> str:
        """The store's URL for the service (its password goes by PGPASSWORD)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def environment(self) -> dict[str, str]:
        """What the service needs beside the URL: the password, as an operator passes it."""
        return {"PGPASSWORD": self.password}

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement as the superuser with psql; its output, unaligned."""
        psql = self.bin / "psql"
        env = {**os.environ, "PGPASSWORD": self.password}
        argv = [str(psql), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port)]
        argv += ["-U", SUPERUSER, "-d", database, "-c", statement]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, f"psql failed on {statement!r}: {done.stderr}"
        return done.stdout.strip()

    def new_database(self) -> str:
        """A fresh, empty database; its name."""
        name = f"kernels_{secrets.token_hex(4)}"
        self.sql(f"CREATE DATABASE {name}")
        return name


@contextmanager
def postgres_cluster() -> Iterator[Cluster]:
    """A running PostgreSQL server of the tests' own, stopped and removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="kernels-postgres-"))
    cluster = Cluster(directory)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)
