"""Culling with Jupyter Server's options: idle kernels, dead kernels, and their clients told why."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import datetime, timedelta, timezone

import socketio

from kernels_service.kernels.culler import CullPolicy, why_cull
from kernels_service.kernels.record import KernelRecord
from kernels_service.testing.channels import ChannelsClient, close_of, stream_text
from kernels_service.testing.service import Service, descendants, identified, running_service, still_running
from tests.support.kernelspecs import write_once_kernelspec
from tests.support.metrics import scrape, value
from tests.support.waiting import wait_until

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def record(state: str = "idle", quiet: float = 100, connections: int = 0) -> KernelRecord:
    kernel = KernelRecord("k", "python3", manager=None, last_activity=NOW - timedelta(seconds=quiet))
    kernel.execution_state, kernel.connections = state, connections
    return kernel


def test_the_policy_follows_jupyter_servers_rules():
    policy = CullPolicy(idle_timeout=10, interval=5)
    assert why_cull(record(quiet=11), policy, NOW) == "idle"
    assert why_cull(record(quiet=9), policy, NOW) is None
    assert why_cull(record(quiet=11, connections=1), policy, NOW) is None
    assert why_cull(record("busy", quiet=11), policy, NOW) is None
    assert why_cull(record(quiet=11, connections=2), CullPolicy(10, 5, connected=True), NOW) == "idle"
    assert why_cull(record("busy", quiet=11), CullPolicy(10, 5, busy=True), NOW) == "idle"
    # culling is off by default, but dead kernels go after an interval whatever the timeout
    assert why_cull(record(quiet=10**6), CullPolicy(), NOW) is None
    assert why_cull(record("dead", quiet=299, connections=1), CullPolicy(), NOW) is None
    assert why_cull(record("dead", quiet=300, connections=1), CullPolicy(), NOW) == "dead"


def test_a_kernel_pending_a_lifecycle_operation_is_not_idle():
    kernel = record(quiet=11)
    kernel.lifecycle.begin("restarting")
    assert why_cull(kernel, CullPolicy(10, 5), NOW) is None


def kernel_ids(service: Service) -> set[str]:
    return {model["id"] for model in service.request("GET", "api/kernels")[2]}


def wait_until_gone(service: Service, kernel_id: str, timeout: float = 30) -> None:
    wait_until(lambda: kernel_id not in kernel_ids(service), timeout, f"kernel {kernel_id} being culled")


def test_idle_kernels_are_culled_but_not_those_with_clients_or_busy():
    with running_service("--initial-kernels=0", "--cull-idle-timeout=2", "--cull-interval=1") as service:
        idle, connected, busy = service.start_kernel(), service.start_kernel(), service.start_kernel()
        watcher = ChannelsClient(service, connected)
        watcher.execute("pass")
        runner = ChannelsClient(service, busy)
        runner.send("shell", "execute_request", {"code": "import time; time.sleep(60)"})
        runner.recv_until(lambda m: m["header"]["msg_type"] == "execute_input")
        runner.close()  # busy, and no client left
        wait_until_gone(service, idle)
        assert f"Culling kernel {idle} (idle)" in service.output()
        # give the culler the chance to take the other two: past their timeout, two passes more
        last = max(
            datetime.fromisoformat(service.request("GET", f"api/kernels/{k}")[2]["last_activity"])
            for k in (connected, busy)
        )
        while datetime.now(timezone.utc) < last + timedelta(seconds=4):
            time.sleep(0.2)
        assert {connected, busy} <= kernel_ids(service)
        _, outputs = watcher.execute("print('kept')")
        assert stream_text(outputs) == "kept\n"
        watcher.close()


def test_with_cull_connected_clients_of_both_doors_are_told_why():
    with running_service(
        "--initial-kernels=0", "--cull-idle-timeout=2", "--cull-interval=1", "--cull-connected"
    ) as service:
        kernel = service.start_kernel()
        client = ChannelsClient(service, kernel)
        _, outputs = client.execute("import os; print(os.getpid())")
        pid = int(stream_text(outputs))
        disconnected = asyncio.run(socketio_client_until_disconnected(service, kernel))
        assert disconnected, "the socket.io client was not disconnected"
        code, reason = close_of(client)
        assert (code, reason) == (1001, "kernel culled")
        assert service.request("GET", f"api/kernels/{kernel}")[0] == 404, "REST must agree with the websocket"
        assert kernel not in kernel_ids(service)
        wait_for_exit(service, pid)
        assert f"Culling kernel {kernel} (idle)" in service.output()
        samples = scrape(service)
        assert value(samples, "kernels_service_culled_total", reason="idle") == 1
        assert value(samples, "kernels_service_clients_closed_total", reason="culled") == 2  # both doors


def wait_for_exit(service: Service, pid: int, timeout: float = 30) -> None:
    """Wait until kernel process `pid` (the service's child now) has ended."""
    process = identified([pid] if pid in descendants(service.pid) else [])
    wait_until(lambda: not still_running(process), timeout, f"the exit of kernel process {pid}")


async def socketio_client_until_disconnected(service: Service, kernel_id: str) -> bool:
    """A python-socketio client on the kernel's iopub, sending nothing; True once the
    service disconnects it from the namespace."""
    client = socketio.AsyncClient(reconnection=False)
    namespace = f"/iopub/{kernel_id}"
    gone = asyncio.Event()
    client.on("disconnect", gone.set, namespace=namespace)
    await client.connect(
        f"http://127.0.0.1:{service.port}",
        namespaces=[namespace],
        transports=["websocket"],
        socketio_path="/socket.io",
        auth={"token": service.token},
        wait_timeout=60,
    )
    try:
        await asyncio.wait_for(gone.wait(), 30)
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        await client.disconnect()


def test_dead_kernels_are_reclaimed_after_an_interval_with_culling_off(tmp_path):
    write_once_kernelspec(tmp_path)
    with running_service(
        "--initial-kernels=0",
        "--cull-interval=1",
        "--KernelRestarter.time_to_dead=0.5",
        "--KernelRestarter.restart_limit=1",
        env={"JUPYTER_PATH": str(tmp_path)},
    ) as service:
        kernel = service.start_kernel(name="once")
        client = ChannelsClient(service, kernel)
        _, outputs = client.execute("import os; print(os.getpid())")
        os.kill(int(stream_text(outputs)), signal.SIGKILL)
        assert close_of(client) == (1001, "kernel culled")
        wait_until_gone(service, kernel)
        assert f"Culling kernel {kernel} (dead)" in service.output()
