"""HAProxy, with the project's own configuration (`deploy/haproxy/haproxy.cfg`), in front of
three replicas of one PostgreSQL store: round robin with no affinity for the REST API and
the kernel websockets, and still every client works: ours, JupyterLab's own
(`@jupyterlab/services`), Jupyter Server through `--gateway-url`, and socket.io."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import Service
from tests.support.balancer import Balancer
from tests.support.kernel_code import run_code as run
from tests.support.node import run_node
from tests.support.socketio_code import run_over_socketio
from tests.test_gateway import JupyterServer

API = re.compile(r"access_log:\d+\] \d{3} (GET|POST|DELETE) /jupyter/api/kernels")


@pytest.fixture(scope="module")
def shared_balancer(shared_replicas: list[Service]) -> Iterator[Balancer]:
    front = Balancer(shared_replicas)
    try:
        yield front
    finally:
        front.stop()


@pytest.fixture
def balancer(shared_balancer: Balancer, replicas: list[Service]) -> Balancer:
    """The balancer before three replicas with no kernel (none left after the test)."""
    return shared_balancer


def answered(replica: Service) -> int:
    """How many requests of the kernels API the replica answered itself (its access log)."""
    return len(API.findall(replica.output()))


def test_every_request_works_whichever_replica_the_balancer_picks(balancer: Balancer, replicas: list[Service]):
    status, _, model = balancer.request("POST", "api/kernels", {})
    assert status == 201, model
    kernel = model["id"]
    before = [answered(replica) for replica in replicas]
    for _ in range(6):  # each request to the next replica: all of them see the kernel at once
        assert balancer.request("GET", f"api/kernels/{kernel}")[0] == 200
        assert [k["id"] for k in balancer.request("GET", "api/kernels")[2]] == [kernel]
    spread = [answered(replica) - earlier for replica, earlier in zip(replicas, before, strict=True)]
    assert all(count >= 3 for count in spread), spread  # 12 requests, round robin over 3
    assert run(balancer, kernel, "x = 6 * 7; print(x)", "v1") == "42\n"
    assert run(balancer, kernel, "print(x)", "legacy") == "42\n"
    assert balancer.request("POST", f"api/kernels/{kernel}/interrupt")[0] == 204
    assert balancer.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
    assert run(balancer, kernel, "print('after')", "v1") == "after\n"
    assert balancer.request("DELETE", f"api/kernels/{kernel}")[0] == 204
    for _ in range(3):
        assert balancer.request("GET", f"api/kernels/{kernel}")[0] == 404


def test_socketio_through_the_balancer(balancer: Balancer):
    kernel = balancer.request("POST", "api/kernels", {})[2]["id"]
    assert asyncio.run(run_over_socketio(balancer, kernel, "print(7 * 6)")) == "42\n"
    balancer.request("DELETE", f"api/kernels/{kernel}")


@pytest.mark.parametrize("protocol", ["v1", "legacy"])
def test_jupyterlabs_client_restarts_and_runs_code_through_the_balancer(balancer: Balancer, protocol: str):
    kernel = balancer.request("POST", "api/kernels", {})[2]["id"]
    result = run_node(
        "jupyterlab_restarts.js", protocol, balancer.http_url(""), balancer.token, kernel, "3", timeout=300
    )
    assert result["restarts"] == 3
    balancer.request("DELETE", f"api/kernels/{kernel}")


def test_jupyter_server_uses_the_balancer_as_its_gateway(balancer: Balancer):
    server = JupyterServer(balancer)
    try:
        status, _, model = server.request("POST", "api/kernels", {"name": "python3"})
        assert status == 201, model
        kernel = model["id"]
        client = ChannelsClient(server, kernel)
        try:
            assert stream_text(client.execute("print(6 * 7)", timeout=60)[1]) == "42\n"
        finally:
            client.close()
        assert server.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
        assert server.request("DELETE", f"api/kernels/{kernel}")[0] == 204
        assert balancer.request("GET", f"api/kernels/{kernel}")[0] == 404
    finally:
        server.stop()
