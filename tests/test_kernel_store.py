"""The SQLite kernel store (kernels/sqlite_store.py): entries kept across openings, private files, one
service at a time, and stores it did not make refused and left as they were."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernels_service.kernels.keeper import KernelKeeper
from kernels_service.kernels.sqlite_store import SqliteKernelStore
from kernels_service.kernels.store import StoredKernel, StoreError
from tests.support.waiting import wait_until

KEY = "b1946ac9-2d7c8d4e-key"
run = asyncio.run  # the store's methods are coroutines


def entry(kernel_id: str = "k1", **changes) -> StoredKernel:
    info = {"transport": "tcp", "ip": "127.0.0.1", "shell_port": 21000, "key": KEY, "signature_scheme": "hmac-sha256"}
    fields = dict(
        id=kernel_id, kernelspec="python3", connection_info=info, provisioner="local-provisioner",
        provisioner_info={"pid": 4242, "pgid": 4242, "ip": "127.0.0.1"}, client_env={"KERNEL_USERNAME": "alice"},
        host="machine", uid=1000, process_start=123456, started="2026-12-06T10:00:00Z",
    )  # fmt: skip
    fields.update(changes)
    return StoredKernel(**fields)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "store" / "kernels.sqlite")


def test_entries_are_kept_across_openings_replaced_and_removed(path: str):
    store = SqliteKernelStore(path)
    run(store.save(entry("k1")))
    run(store.save(entry("k2")))
    run(store.save(entry("k1", process_start=999)))  # restarted: replaced, in place
    run(store.close())
    store = SqliteKernelStore(path)
    assert run(store.entries()) == [entry("k1", process_start=999), entry("k2")]
    run(store.remove("k1"))
    run(store.remove("no-such-kernel"))
    assert run(store.entries()) == [entry("k2")]
    run(store.close())


def test_the_store_and_its_directory_are_private(path: str):
    run(SqliteKernelStore(path).close())
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path + ".lock").st_mode & 0o777 == 0o600


def test_a_second_service_is_refused_until_the_first_lets_go(path: str):
    first = SqliteKernelStore(path)
    with pytest.raises(StoreError, match="in use by another service"):
        SqliteKernelStore(path)
    run(first.close())
    run(SqliteKernelStore(path).close())


HOLDER = """
import sys, time
from kernels_service.kernels.keeper import KernelKeeper
from kernels_service.kernels.sqlite_store import SqliteKernelStore
SqliteKernelStore(sys.argv[1])
print("held", flush=True)
time.sleep(120)
"""


def test_the_lock_of_a_killed_service_is_released_with_its_process(path: str):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(StoreError, match="in use"):
            SqliteKernelStore(path)
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        wait_until(lambda: try_open(path), 10, "the store free again")
    finally:
        holder.kill()
        holder.wait(30)


def try_open(path: str) -> bool:
    try:
        run(SqliteKernelStore(path).close())
        return True
    except StoreError:
        return False


def refused_and_untouched(path: str, match: str) -> None:
    before = Path(path).read_bytes(), os.stat(path).st_mode
    for _ in range(2):  # the second time too, not "in use": a refused store lets go of its lock
        with pytest.raises(StoreError, match=match):
            SqliteKernelStore(path)
    assert (Path(path).read_bytes(), os.stat(path).st_mode) == before, "the store was changed"


def test_a_corrupt_store_is_refused_and_left_as_it_was(path: str):
    run(SqliteKernelStore(path).close())
    Path(path).write_bytes(b"not a database " * 100)
    refused_and_untouched(path, "cannot read the kernel store")


def test_a_store_of_another_version_is_refused_and_left_as_it_was(path: str):
    run(SqliteKernelStore(path).close())
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 2")
    refused_and_untouched(path, "is of version 2; this service reads 1")


def test_a_store_others_may_read_is_refused_and_left_as_it_was(path: str):
    run(SqliteKernelStore(path).close())
    os.chmod(path, 0o644)
    refused_and_untouched(path, r"may be read by others \(mode 644\)")


def test_a_store_directory_others_may_enter_is_refused(path: str):
    run(SqliteKernelStore(path).close())
    os.chmod(os.path.dirname(path), 0o755)
    with pytest.raises(StoreError, match="may be entered by others"):
        SqliteKernelStore(path)


def test_an_entry_it_cannot_read_is_an_error_not_a_crash(path: str):
    store = SqliteKernelStore(path)
    with store._db:
        store._db.execute('INSERT INTO kernels (id, entry) VALUES (\'x\', \'{"id": "x", "unknown": 1}\')')
    with pytest.raises(StoreError, match="holds an entry it cannot read"):
        run(store.entries())
    run(store.close())


text = st.text(max_size=40)
entries = st.builds(
    StoredKernel,
    id=text, kernelspec=text, provisioner=text,
    connection_info=st.dictionaries(text, st.one_of(text, st.integers(0, 65535))),
    provisioner_info=st.dictionaries(text, st.one_of(text, st.integers(), st.none())),
    client_env=st.dictionaries(text, text), host=text, uid=st.integers(-1, 2**31),
    process_start=st.one_of(st.none(), st.integers(0, 2**62)), started=text, last_activity=text,
)  # fmt: skip


@given(entries)
def test_any_entry_round_trips_through_its_json(kept: StoredKernel):
    assert StoredKernel.from_json(kept.to_json()) == kept


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=4096))
def test_any_bytes_in_the_store_file_open_or_are_refused_as_a_store_error(tmp_path: Path, content: bytes):
    path = tmp_path / "any" / "kernels.sqlite"
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.unlink(missing_ok=True)
    path.write_bytes(content)
    os.chmod(path, 0o600)
    try:
        store = SqliteKernelStore(str(path))
    except StoreError:
        return
    run(store.entries())  # an empty file is a fresh database to SQLite: it must then read as one
    run(store.close())


@pytest.mark.parametrize(
    ("provisioner", "taken"),
    [("local-provisioner", False), ("docker-provisioner", False), ("kubernetes-provisioner", True), ("yarn", False)],
)
def test_which_kernels_of_another_machine_a_service_may_take_over(tmp_path: Path, provisioner: str, taken: bool):
    """A local kernel only on its own machine and uid, a docker container only through its
    machine's engine; a pod the cluster's API finds from any machine (kubernetes-provisioner)
    anywhere. A kernel of a provisioner that is not kept is never taken up."""
    keeper = KernelKeeper(SqliteKernelStore(str(tmp_path / "kernels.sqlite")))
    other = entry(provisioner=provisioner, host="another-machine", provisioner_info={"kernel_ns": "kernels"})
    refusal = keeper.why_not_take_up(other)
    assert (refusal is None) == taken, refusal
    if provisioner == "yarn":
        assert refusal == ("it belongs to another-machine (uid 1000), not to this service", False)
    same = entry(provisioner=provisioner, host=keeper.host, uid=keeper.uid, provisioner_info={"kernel_ns": "kernels"})
    if provisioner in ("docker-provisioner", "kubernetes-provisioner"):
        assert keeper.why_not_take_up(same) is None  # its provisioner says whether it still runs
