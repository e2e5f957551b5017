"""--keep-kernels: local kernels outlive a SIGTERM or a crash of the service, and the next
start takes them up again, variables and all; stores and kernels it must not use are
refused or dropped, never signalled; without it, no kernel outlives the service."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernels_service.kernels.sqlite_store import SqliteKernelStore
from kernels_service.kernels.store import StoredKernel
from kernels_service.processes import process_start
from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import Service, descendants, free_port, identified, kill_left, tracebacks
from tests.support.kernel_code import run_code as run
from tests.support.metrics import scrape, value
from tests.support.node import NODE_DIR, TESTS, read_until_ready
from tests.support.socketio_code import run_over_socketio
from tests.support.waiting import wait_until

QUIET = ("--initial-kernels=0", "--pool-size=0")


class Kept:
    """Services run on one store, one after the other; every kernel they launched is
    ended at the end of the test, whatever happened."""

    def __init__(self, store: Path, location: str = "", env: dict[str, str] | None = None):
        self.store = store  # the SQLite store's file, when the store is one
        self.location = location or str(store)  # what --kernel-store says
        self.env = env or {}
        self.kernels: dict[int, int] = {}  # pid: start time of every kernel process seen
        self.services: list[Service] = []
        self.port = free_port()  # each service started again where the last one was (its replica name too)

    def start(self, *args: str, keep: bool = True, port: int | None = None) -> Service:
        options = (*QUIET, *args, *(("--keep-kernels", f"--kernel-store={self.location}") if keep else ()))
        service = Service(*options, port=port or self.port, env=self.env)
        self.services.append(service)
        return service

    def kernel_pid(self, service: Service, kernel: str) -> int:
        client = ChannelsClient(service, kernel)
        try:
            pid = int(stream_text(client.execute("import os; print(os.getpid())", timeout=60)[1]))
        finally:
            client.close()
        self.kernels |= identified([pid])
        return pid

    def left_running(self) -> tuple[str, int]:
        """A kernel of a service stopped by SIGTERM, left running: its id and pid."""
        first = self.start()
        kernel = first.start_kernel()
        pid = self.kernel_pid(first, kernel)
        self.stop(first, signal.SIGTERM)
        return kernel, pid

    def stop(self, service: Service, signum: int) -> None:
        self.kernels |= identified(descendants(service.pid))
        if signum == signal.SIGKILL:
            service.process.kill()
            service.process.wait(30)
        else:
            assert service.stop(signum) == 0, service.output()
        assert tracebacks(service.output()) == [], service.output()

    def end(self) -> None:
        for service in self.services:
            if service.process.poll() is None:
                self.kernels |= identified(descendants(service.pid))
                service.stop(signal.SIGINT)
        kill_left(self.kernels)


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[Kept]:
    """Services on an SQLite store."""
    runs = Kept(tmp_path / "store" / "kernels.sqlite")
    try:
        yield runs
    finally:
        runs.end()


@pytest.fixture(params=["sqlite", "postgresql"])
def kept_anywhere(request, tmp_path: Path) -> Iterator[Kept]:
    """Services on a store of each kind: an SQLite file, a PostgreSQL database of its own."""
    if request.param == "sqlite":
        runs = Kept(tmp_path / "store" / "kernels.sqlite")
    else:
        cluster = request.getfixturevalue("postgres")
        runs = Kept(tmp_path / "unused", cluster.url(cluster.new_database()), cluster.environment())
    try:
        yield runs
    finally:
        runs.end()


def told_of_the_restart(service: Service, kernel: str) -> str:
    """The notice a client gets when it connects to a kernel taken up after a restart."""
    client = ChannelsClient(service, kernel)
    try:
        (notice,) = [
            m for m in client.recv_until(lambda m: m["header"]["msg_type"] == "stream", timeout=30)
            if m["header"]["msg_type"] == "stream"
        ]  # fmt: skip
    finally:
        client.close()
    text = notice["content"]["text"]
    assert notice["content"]["name"] == "stderr" and "The service restarted: output of this kernel" in text
    return text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_kernel_outlives_the_service_and_keeps_its_variables(kept_anywhere: Kept, signum: int):
    first = kept_anywhere.start()
    kernel = first.start_kernel()
    pid = kept_anywhere.kernel_pid(first, kernel)
    assert run(first, kernel, "x = 42") == ""
    kept_anywhere.stop(first, signum)
    assert process_start(pid) is not None, "the kernel died with the service"
    second = kept_anywhere.start()
    assert [k["id"] for k in second.request("GET", "api/kernels")[2]] == [kernel]
    assert f"Kernel taken up: {kernel}" in second.output()
    notice = told_of_the_restart(second, kernel)  # once, to each client that comes
    assert ("between" in notice) == (signum == signal.SIGTERM), notice  # after a crash, only when it came back
    assert run(second, kernel, "print(x)") == "42\n"
    assert asyncio.run(run_over_socketio(second, kernel, "print(x + 1)")) == "43\n"
    kept_anywhere.stop(second, signal.SIGINT)  # Ctrl-C stops everything, --keep-kernels or not
    wait_until(lambda: process_start(pid) is None, 10, "the kernel stopped by SIGINT")


def test_a_taken_up_kernel_is_interrupted_restarted_counted_and_deleted_like_any_other(kept_anywhere: Kept):
    kernel, pid = kept_anywhere.left_running()
    second = kept_anywhere.start()
    assert second.request("POST", f"api/kernels/{kernel}/interrupt")[0] == 204
    wait_until(lambda: value(scrape(second), "kernels_service_kernels", state="idle") == 1, 30, "counted idle")
    assert second.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
    new_pid = kept_anywhere.kernel_pid(second, kernel)
    assert new_pid != pid and process_start(pid) is None, "the restart did not replace the process"
    kept_anywhere.stop(second, signal.SIGTERM)  # the restarted kernel is kept too, under its new pid
    third = kept_anywhere.start()
    assert run(third, kernel, "import os; print(os.getpid())") == f"{new_pid}\n"
    assert third.request("DELETE", f"api/kernels/{kernel}")[0] == 204
    wait_until(lambda: process_start(new_pid) is None, 10, "the deleted kernel gone")
    kept_anywhere.stop(third, signal.SIGTERM)
    fourth = kept_anywhere.start()
    assert fourth.request("GET", "api/kernels")[2] == []  # deleted: no longer kept
    kept_anywhere.stop(fourth, signal.SIGTERM)


def test_a_taken_up_kernel_is_culled(kept: Kept):
    kernel, pid = kept.left_running()
    second = kept.start("--cull-idle-timeout=2", "--cull-interval=1")
    wait_until(lambda: second.request("GET", "api/kernels")[2] == [], 30, "the kernel culled")
    wait_until(lambda: process_start(pid) is None, 10, "the culled kernel's process gone")
    kept.stop(second, signal.SIGTERM)


def test_a_kernel_that_died_while_the_service_was_down_is_dropped_at_start(kept_anywhere: Kept):
    kernel, pid = kept_anywhere.left_running()
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: process_start(pid) is None, 10, "the kernel killed")
    second = kept_anywhere.start()
    assert second.request("GET", "api/kernels")[2] == []
    assert f"Kernel {kernel} not taken up: its process is gone" in second.output()
    kept_anywhere.stop(second, signal.SIGTERM)
    third = kept_anywhere.start()
    assert kernel not in third.output(), "the dropped kernel's entry was kept"
    kept_anywhere.stop(third, signal.SIGTERM)


def test_a_second_service_on_the_same_store_is_refused(kept: Kept):
    kept.start()
    with pytest.raises(RuntimeError, match="service exited with 1") as refused:
        kept.start(port=free_port())
    assert "is in use by another service" in str(refused.value)


def test_a_corrupt_store_stops_the_start_and_is_left_as_it_was(kept: Kept):
    kept.store.parent.mkdir(mode=0o700)
    kept.store.write_bytes(b"this is not a kernel store" * 40)
    kept.store.chmod(0o600)
    before = kept.store.read_bytes()
    with pytest.raises(RuntimeError, match="service exited with 1") as refused:
        kept.start()
    assert "Cannot start: cannot read the kernel store" in str(refused.value)
    assert "Traceback" not in str(refused.value)
    assert kept.store.read_bytes() == before


def test_without_keep_kernels_no_kernel_outlives_a_sigkill_of_the_service(kept: Kept):
    service = kept.start(keep=False)
    kernel = service.start_kernel()
    pid = kept.kernel_pid(service, kernel)
    kept.stop(service, signal.SIGKILL)
    wait_until(lambda: process_start(pid) is None, 15, "the kernel ending with its service")
    assert not kept.store.exists(), "a store was made without --keep-kernels"


def foreign_entries(store: Path) -> list[StoredKernel]:
    """Entries no service here may signal: one of another machine, one of another user,
    both naming this test's own process; and one whose pid is now another process (this
    test's, with another start time)."""
    me = os.getpid()
    base = dict(kernelspec="python3", connection_info={}, provisioner="local-provisioner", host=socket.gethostname())
    info = {"pid": me, "pgid": os.getpgid(me), "ip": "127.0.0.1"}
    return [
        StoredKernel(id="elsewhere", **{**base, "host": "another-machine"}, provisioner_info=info, uid=os.getuid(),
                     process_start=process_start(me)),
        StoredKernel(id="another-user", **base, provisioner_info=info, uid=os.getuid() + 1,
                     process_start=process_start(me)),
        StoredKernel(id="reused-pid", **base, provisioner_info=info, uid=os.getuid(), process_start=1),
    ]  # fmt: skip


def test_entries_of_other_machines_users_or_processes_are_never_signalled(kept: Kept):
    store = SqliteKernelStore(str(kept.store))
    for entry in foreign_entries(kept.store):
        asyncio.run(store.save(entry))
    asyncio.run(store.close())
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        service = kept.start()
        output = service.output()
        assert service.request("GET", "api/kernels")[2] == []
        assert "Kernel elsewhere not taken up: it belongs to another-machine" in output
        assert "Kernel another-user not taken up: it belongs to" in output
        assert "Kernel reused-pid not taken up: its pid" in output and "is now another process's" in output
        kept.stop(service, signal.SIGTERM)
        service = kept.start()
        output = service.output()  # the other machine's and user's entries are left for them
        assert "Kernel elsewhere not taken up" in output and "Kernel another-user not taken up" in output
        assert "reused-pid" not in output
        kept.stop(service, signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert received == [], "the service signalled a process that was not its kernel"


def test_jupyterlabs_client_comes_back_by_itself_across_a_restart(kept: Kept):
    """@jupyterlab/services' kernel connection, across a SIGTERM and a new start of the
    service on the same port: it reconnects by itself, sees `idle`, and the variable set
    before the restart is still there."""
    first = kept.start()
    kernel = first.start_kernel()
    kept.kernel_pid(first, kernel)
    node = shutil.which("node")
    assert node, "node is not installed: the JupyterLab client tests need it (see .ci/run)"
    script = [node, str(NODE_DIR / "jupyterlab_reconnect.js"), first.http_url(""), first.token, kernel]
    client = subprocess.Popen(script, cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert read_until_ready(client), client.stderr.read()
        kept.stop(first, signal.SIGTERM)
        second = kept.start(port=first.port)
        out, err = client.communicate(timeout=180)
    finally:
        client.kill()
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome["ok"], (outcome, err)
    assert outcome["states"] == ["connecting", "connected"] and outcome["text"] == "42\n", outcome
    kept.stop(second, signal.SIGINT)


def test_the_environment_variable_turns_it_on_as_the_image_passes_it(kept: Kept):
    first = Service(*QUIET, f"--kernel-store={kept.store}", env={"KERNELS_KEEP_KERNELS": "1"})
    kept.services.append(first)
    kernel = first.start_kernel()
    pid = kept.kernel_pid(first, kernel)
    kept.stop(first, signal.SIGTERM)
    assert process_start(pid) is not None, "KERNELS_KEEP_KERNELS=1 did not keep the kernel"
    second = kept.start()
    assert [k["id"] for k in second.request("GET", "api/kernels")[2]] == [kernel]
    kept.stop(second, signal.SIGINT)
