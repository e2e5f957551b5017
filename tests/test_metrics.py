"""`<base>metrics`: Prometheus text, read back with prometheus_client's own parser; with
kernels of the service's uid, of their own uids, and in Landlock rooms."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
import websocket

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import running_service
from tests.support.metrics import scrape, value
from tests.support.shared_python import write_shared_kernelspec
from tests.support.unprivileged import (
    SERVICE_UID,
    copy_of_the_service,
    owned_directory,
    public_directory,
    unprivileged_options,
)
from tests.support.waiting import wait_until


@pytest.fixture(params=["service's uid", "own uid", "landlock"])
def isolated(request, tmp_path) -> Iterator[tuple[tuple[str, ...], dict]]:
    """The service's options and arguments, with its kernels kept apart each way (the
    tests' Python, which only root may run, gives the service's uid)."""
    if request.param == "service's uid":
        yield (), {}
    elif request.param == "own uid":
        write_shared_kernelspec(tmp_path / "jupyter")
        yield ("--kernel-isolation=required",), {"env": {"JUPYTER_PATH": str(tmp_path / "jupyter")}}
    else:
        code, jupyter = copy_of_the_service(public_directory("code-")), public_directory("jupyter-")
        write_shared_kernelspec(jupyter)
        home = owned_directory(SERVICE_UID, "home-")
        yield ("--kernel-isolation=required",), unprivileged_options(code, jupyter, home)
        for directory in (code, jupyter, home):
            shutil.rmtree(directory)


def test_metrics_count_what_the_service_does(isolated):
    arguments, options = isolated
    with running_service(*arguments, **options) as service:
        assert service.request("GET", "metrics", token="wrong")[0] == 403

        def settled() -> bool:  # the pool is ready, and the initial kernel has spoken
            samples = scrape(service)
            return (
                value(samples, "kernels_service_pool_ready") == 1
                and value(samples, "kernels_service_kernels", state="idle") == 1
            )  # the initial kernel; pooled ones are not counted

        wait_until(settled)
        first = scrape(service)
        assert value(first, "kernels_service_connections", transport="websocket") == 0

        status, _, model = service.request("POST", "api/kernels", {})
        assert status == 201
        client = ChannelsClient(service, model["id"])
        _, outputs = client.execute("print('counted')")
        assert stream_text(outputs) == "counted\n"
        polling = service.request("GET", "/socket.io/?EIO=4&transport=polling", raw_path=True)
        assert polling[0] == 200

        now = scrape(service)
        assert value(now, "kernels_service_kernel_start_seconds_count", pooled="true") == 1
        assert value(now, "kernels_service_connections", transport="websocket") == 1
        assert value(now, "kernels_service_connections", transport="socketio") == 1
        assert value(now, "kernels_service_kernels", state="idle") == 2
        sent = value(now, "kernels_service_messages_total", direction="to_kernel", channel="shell")
        assert sent >= 1
        assert value(now, "kernels_service_messages_total", direction="from_kernel", channel="shell") >= sent
        assert value(now, "kernels_service_messages_total", direction="from_kernel", channel="iopub") >= 3
        assert value(now, "kernels_service_bytes_total", direction="to_kernel") > 100
        assert value(now, "kernels_service_bytes_total", direction="from_kernel") > 100
        posts = value(
            now,
            "http_request_duration_seconds_count",
            method="POST",
            handler="kernels_service.web.kernels.KernelsHandler",
            status_code="201",
        )
        assert posts == 1

        client.ws.send(json.dumps({"channel": "shell", "header": "not a header"}))
        assert client.ws.recv_frame().opcode == websocket.ABNF.OPCODE_CLOSE
        wait_until(lambda: value(scrape(service), "kernels_service_connections", transport="websocket") == 0)
        assert value(scrape(service), "kernels_service_clients_closed_total", reason="bad input") == 1
        wait_until(lambda: value(scrape(service), "kernels_service_pool_ready") == 1)


def test_metrics_without_the_token_only_when_asked():
    with running_service("--initial-kernels=0", "--pool-size=0", "--metrics-no-auth") as service:
        samples = scrape(service, token="")
        assert value(samples, "kernels_service_pool_ready") == 0
        assert service.request("GET", "api/kernels", token="")[0] == 401, "only the metrics are open"
