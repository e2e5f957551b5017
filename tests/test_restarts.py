"""One kernel, one lifecycle at a time: restarts that clients survive (JupyterLab's own
client, new ports), and concurrent lifecycle requests that never make a 500, an orphan
kernel or a service that cannot stop."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import (
    Service,
    descendants,
    identified,
    running_service,
    still_running,
    tracebacks,
)
from tests.support.kernelspecs import write_kernelspec
from tests.support.node import run_node
from tests.support.paths import ROOT
from tests.support.waiting import wait_until

PROVISIONERS = ROOT / "tests" / "support" / "provisioners"


@pytest.fixture(scope="module")
def service():
    with running_service() as service:
        yield service


@pytest.mark.parametrize("protocol", ["v1", "legacy"])
def test_jupyterlab_sees_idle_after_each_of_20_restarts(service, protocol):
    (kernel,) = [k for k in service.request("GET", "api/kernels")[2] if k["name"] == "python3"][:1]
    # 20 kernel starts in a row: on a loaded machine that takes minutes, so the bound is the script's own
    result = run_node(
        "jupyterlab_restarts.js", protocol, service.http_url(""), service.token, kernel["id"], "20", timeout=620
    )
    assert result["restarts"] == 20
    assert result["protocol"] == ("v1.kernel.websocket.jupyter.org" if protocol == "v1" else "")
    assert not tracebacks(service.output())


def test_rapid_restarts_leave_every_model_idle_without_a_client(service):
    kernels = [service.start_kernel() for _ in range(3)]
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda k: service.request("POST", f"api/kernels/{k}/restart")[0], kernels * 2))
    assert set(statuses) <= {200, 409}, statuses
    states = lambda: {k: service.request("GET", f"api/kernels/{k}")[2]["execution_state"] for k in kernels}  # noqa: E731
    wait_until(lambda: set(states().values()) == {"idle"}, 60, "every kernel idle after the restarts")
    for kernel in kernels:
        assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204


def test_concurrent_restarts_and_interrupts_are_answered_200_204_or_409(service):
    kernel = service.start_kernel()
    requests = [("POST", f"api/kernels/{kernel}/restart")] * 6 + [("POST", f"api/kernels/{kernel}/interrupt")] * 4
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda r: service.request(*r), requests))
    statuses = sorted(status for status, _, _ in answers)
    assert 200 in statuses and set(statuses) <= {200, 204, 409}, statuses
    for status, _, body in answers:
        if status == 409:
            assert body["message"].startswith("Kernel is "), body
    client = ChannelsClient(service, kernel)
    assert stream_text(client.execute("print('after')", timeout=60)[1]) == "after\n"
    client.close()
    assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204


def test_delete_during_a_restart_stops_the_kernel_for_good(service):
    kernel = service.start_kernel()
    assert processes_of(kernel), "the kernel's process is not found by its connection file"
    before = identified(descendants(service.pid))
    with ThreadPoolExecutor(2) as pool:
        restart = pool.submit(service.request, "POST", f"api/kernels/{kernel}/restart")
        time.sleep(0.05)  # not for ordering: either order must end with the kernel gone
        delete = pool.submit(service.request, "DELETE", f"api/kernels/{kernel}")
        assert restart.result()[0] in (200, 404, 409)
        assert delete.result()[0] == 204
    assert service.request("GET", f"api/kernels/{kernel}")[0] == 404
    # whichever process the kernel has (the first, or one a restart launched): none stays
    wait_until(lambda: processes_of(kernel) == [], 15, "the deleted kernel's processes gone")
    kernel_pids = [pid for pid in still_running(before) if pid not in descendants(service.pid)]
    assert not kernel_pids, f"the deleted kernel's processes live on: {kernel_pids}"


def processes_of(kernel_id: str) -> list[int]:
    """The live processes whose command line names the kernel's connection file."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f"kernel-{kernel_id}".encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue  # gone meanwhile
    return found


def kernels_of(runtime_dir: Path) -> list[int]:
    """Processes running with a connection file from this runtime directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(runtime_dir).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("during", ["a start", "a restart", "a delete"])
def test_sigterm_during_a_lifecycle_operation_exits_0_within_10s_leaving_nothing(tmp_path, during):
    runtime = tmp_path / "runtime"
    service = Service(env={"JUPYTER_RUNTIME_DIR": str(runtime)})
    (kernel,) = service.request("GET", "api/kernels")[2]
    request = {
        "a start": ("POST", "api/kernels", {}),
        "a restart": ("POST", f"api/kernels/{kernel['id']}/restart"),
        "a delete": ("DELETE", f"api/kernels/{kernel['id']}"),
    }[during]
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(service.request, *request)
        time.sleep(0.05)  # not for ordering: the stop must hold wherever the operation is
        started = time.monotonic()
        code = service.stop(signal.SIGTERM, timeout=30)
        took = time.monotonic() - started
        try:
            pending.result()
        except OSError:
            pass  # the service may close the connection as it stops
    assert code == 0 and took < 10, (code, took, service.output()[-3000:])
    wait_until(lambda: not kernels_of(runtime), 5, "no kernel outliving the service")
    assert not list(runtime.glob("kernel-*.json")), "connection files were left behind"
    assert not tracebacks(service.output())


def new_ports_kernelspec(root: Path) -> dict[str, str]:
    write_kernelspec(root, "newports", metadata={"kernel_provisioner": {"provisioner_name": "new-ports-provisioner"}})
    return {"JUPYTER_PATH": str(root), "PYTHONPATH": os.pathsep.join([str(PROVISIONERS), str(ROOT)])}


SHELL_PORT = "import json, ipykernel.connect as c; print(json.load(open(c.get_connection_file()))['shell_port'])"


def test_a_kernel_that_restarts_on_new_ports_is_followed(tmp_path):
    """Over tcp (kernels elsewhere, and containers, change ports when they restart); over
    ipc a restarted kernel's sockets keep their paths."""
    with running_service(
        "--initial-kernels=0",
        "--kernel-transport=tcp",
        "--KernelRestarter.time_to_dead=0.5",
        env=new_ports_kernelspec(tmp_path),
    ) as service:
        kernel = service.start_kernel(name="newports")
        client = ChannelsClient(service, kernel)
        ports = [stream_text(client.execute(SHELL_PORT)[1])]
        assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
        ports.append(stream_text(client.execute(SHELL_PORT, timeout=60)[1]))  # the same websocket
        _, outputs = client.execute("import os; print(os.getpid())")
        os.kill(int(stream_text(outputs)), signal.SIGKILL)  # an automatic restart, on new ports too
        client.recv_until(lambda m: m["content"].get("execution_state") == "restarting", timeout=60)
        ports.append(stream_text(client.execute(SHELL_PORT, timeout=60)[1]))
        assert len(set(ports)) == 3, ports
        fresh = ChannelsClient(service, kernel, protocol="v1")
        assert stream_text(fresh.execute("print('fresh')")[1]) == "fresh\n"
        fresh.close()
        client.close()
        assert "restarted on new ports" in service.output()


@pytest.mark.parametrize("then", ["DELETE", "restart", "kernel-relay shutdown"])
def test_a_kernel_stopped_or_restarted_as_it_starts_leaves_no_traceback(then):
    """jupyter_client interrupts a kernel before it stops or restarts it, and a kernel still
    importing its modules dies of that SIGINT with a traceback; one that has not started
    is killed first instead."""
    with running_service("--initial-kernels=0") as service:
        for _ in range(4):
            kernel = service.start_kernel()
            if then == "DELETE":
                assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
            elif then == "restart":
                assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
                client = ChannelsClient(service, kernel)
                assert stream_text(client.execute("print('up')", timeout=60)[1]) == "up\n"
                client.close()
                assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
            else:
                assert service.request("GET", f"shutdown/{kernel}")[0] == 200
        output = service.output()
        assert "Traceback" not in output and "KeyboardInterrupt" not in output, output[-3000:]


def test_a_local_tcp_kernel_restarted_through_rest_takes_new_ports_and_its_clients_follow():
    """The ports a restarted kernel let go of are free for a moment before the new process
    binds them: another service on the machine (a replica, or a test of another worker)
    could take one, and the new process would die with 'Address already in use'. So a
    restart picks its ports again; the same websocket goes on, on the new ports."""
    with running_service("--initial-kernels=0", "--kernel-transport=tcp") as service:
        kernel = service.start_kernel()
        client = ChannelsClient(service, kernel)
        try:
            ports = [stream_text(client.execute(SHELL_PORT)[1])]
            for _ in range(2):
                assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
                ports.append(stream_text(client.execute(SHELL_PORT, timeout=60)[1]))
            assert len(set(ports)) == 3, ports
        finally:
            client.close()
