"""The warm pool: ready kernels handed out by start requests that fit, refilled in the background."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import websocket

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import Service, descendants, identified, running_service, still_running
from tests.support.kernelspecs import write_kernelspec
from tests.support.paths import ROOT
from tests.support.waiting import wait_until


def wait_for_pool(service: Service, ready: int, timeout: float = 60) -> None:
    wait_until(lambda: service.request("GET", "api/status")[2]["pool"] == ready, timeout, f"{ready} pooled kernel(s)")


def pooled_ids(service: Service) -> list[str]:
    return re.findall(r"Pooled kernel started: ([\w-]+)", service.output())


def kernel_info(service: Service, kernel_id: str) -> dict:
    client = ChannelsClient(service, kernel_id)
    try:
        client.send("shell", "kernel_info_request", {})
        return client.recv_until(lambda m: m["header"]["msg_type"] == "kernel_info_reply")[-1]
    finally:
        client.close()


def test_a_start_takes_a_ready_kernel_from_the_pool_and_the_pool_refills():
    with running_service() as service:
        wait_for_pool(service, 1)
        (pooled,) = pooled_ids(service)
        assert len(service.request("GET", "api/kernels")[2]) == 1, "a pooled kernel is nobody's yet"
        status, _, model = service.request("POST", "api/kernels", {})
        assert status == 201 and model["id"] == pooled
        assert model["execution_state"] == "idle", "a pooled kernel has answered already"
        assert f"Kernel started: {pooled} (python3, from the pool)" in service.output()
        assert kernel_info(service, pooled)["content"]["status"] == "ok"
        wait_for_pool(service, 1)  # refilled
        assert len(pooled_ids(service)) == 2
        assert len(service.request("GET", "api/kernels")[2]) == 2
        # kernel-relay's /spawn takes from the pool too
        spawned = service.request("POST", "spawn/python3")[2]["id"]
        assert spawned == pooled_ids(service)[1]


def test_a_pooled_kernel_cannot_be_reached_before_it_is_taken():
    with running_service("--initial-kernels=0") as service:
        wait_for_pool(service, 1)
        (pooled,) = pooled_ids(service)
        for method in ("GET", "DELETE"):
            assert service.request(method, f"api/kernels/{pooled}")[0] == 404
        assert service.request("POST", f"api/kernels/{pooled}/interrupt")[0] == 404
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            ChannelsClient(service, pooled)
        assert refused.value.status_code == 404
        assert service.request("GET", "api/status")[2]["kernels"] == 0


def make_second_kernelspec(root) -> None:
    """A second Python kernelspec, `other`, in a JUPYTER_PATH of its own."""
    write_kernelspec(root, "other")


def test_requests_that_do_not_fit_the_pool_are_launched(tmp_path):
    make_second_kernelspec(tmp_path)
    with running_service(
        "--initial-kernels=0", "--KernelsService.allowed_kernel_env=['ALLOWED']", env={"JUPYTER_PATH": str(tmp_path)}
    ) as service:
        wait_for_pool(service, 1)
        (pooled,) = pooled_ids(service)
        for body in ({"env": {"KERNEL_COLOUR": "blue"}}, {"env": {"ALLOWED": "yes"}}, {"name": "other"}):
            status, _, model = service.request("POST", "api/kernels", body)
            assert status == 201 and model["id"] != pooled and model["execution_state"] == "starting", body
        # a variable the service ignores asks nothing of the kernel: the pooled one fits
        status, _, model = service.request("POST", "api/kernels", {"env": {"IGNORED": "x"}})
        assert status == 201 and model["id"] == pooled


def test_other_kernelspecs_are_pooled_when_asked(tmp_path):
    make_second_kernelspec(tmp_path)
    with running_service(
        "--initial-kernels=0", "--pool-size=2", "--pool-kernelspecs=other", env={"JUPYTER_PATH": str(tmp_path)}
    ) as service:
        wait_for_pool(service, 4)
        status, _, model = service.request("POST", "api/kernels", {"name": "other"})
        assert status == 201 and model["execution_state"] == "idle" and model["name"] == "other"
        assert f"Kernel started: {model['id']} (other, from the pool)" in service.output()
        client = ChannelsClient(service, model["id"])
        _, outputs = client.execute("print('other')")
        assert stream_text(outputs) == "other\n"
        client.close()


def test_pool_size_zero_keeps_no_kernels():
    with running_service("--initial-kernels=0", "--pool-size=0") as service:
        status, _, model = service.request("POST", "api/kernels", {})
        assert status == 201 and model["execution_state"] == "starting"
        assert service.request("GET", "api/status")[2]["pool"] == 0
        assert len(descendants(service.pid)) == 1


@pytest.mark.parametrize("argv", [["--pool-kernelspecs=no-such-spec"], ["--pool-size=-1"]])
def test_a_bad_pool_setting_stops_the_start(argv):
    command = [sys.executable, str(ROOT / "kernels.py"), "--port=0", *argv]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Cannot start" in result.stdout + result.stderr
    assert "Serving at" not in result.stdout + result.stderr


@pytest.mark.parametrize("pool_size", [0, 1, 3])
def test_a_burst_of_starts_gets_exactly_max_kernels_with_or_without_a_pool(pool_size):
    """Slots are taken before launches are awaited, and pooled kernels count toward the
    limit, but a client is never refused while one is pooled: a burst of starts through
    both REST doors gets exactly max_kernels kernels, and no more run."""
    with running_service("--initial-kernels=0", "--max-kernels=5", f"--pool-size={pool_size}") as service:
        with ThreadPoolExecutor(20) as workers:
            posts = list(workers.map(lambda _: service.request("POST", "api/kernels", {})[0], range(12)))
            spawns = list(workers.map(lambda _: service.request("POST", "spawn/python3")[0], range(8)))
        statuses = posts + spawns
        assert statuses.count(201) + statuses.count(200) == 5, statuses
        assert set(statuses) <= {200, 201, 503}, statuses
        assert len(service.request("GET", "api/kernels")[2]) == 5
        assert len(descendants(service.pid)) <= 5


def test_a_killed_pooled_kernel_is_never_handed_out_broken():
    """A pooled kernel whose process is gone, though jupyter_client's restarter has not
    noticed yet (it polls every 3 s), is passed over. `kill()` only sends the signal: the
    test waits for the death itself (a zombie of the service's), since a kernel that dies
    after it was handed out is a restart the client sees, not this case."""
    with running_service("--initial-kernels=0") as service:
        wait_for_pool(service, 1)
        (pooled,) = pooled_ids(service)
        (pid,) = [p for p in descendants(service.pid) if pooled.encode() in Path(f"/proc/{p}/cmdline").read_bytes()]
        process = identified([pid])
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not still_running(process), 30, "the pooled kernel's death")
        status, _, model = service.request("POST", "api/kernels", {})
        assert status == 201
        client = ChannelsClient(service, model["id"])
        _, outputs = client.execute("print('works')", timeout=60)
        assert stream_text(outputs) == "works\n"
        client.close()
        wait_for_pool(service, 1)
