"""The composition root builds a whole service from a plain config, in-process: what the
command line does, without it (tests and benchmarks can build the service the same way)."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

from kernels_service.builder import build
from kernels_service.config import ServiceConfig
from kernels_service.kernels.errors import ConfigError
from kernels_service.testing.service import descendants, identified, still_running

TOKEN = "in-process-token"


async def run_a_kernel_in_process() -> tuple[dict[int, int], str]:
    """Build, start, run code over the kernel websocket, stop; the kernels' processes (pid:
    start time) and the output."""
    others = descendants(os.getpid())  # processes of services other tests of this run keep
    service = build(ServiceConfig(port=0, token=TOKEN, initial_kernels=0, pool_size=0, base_path="jupyter"))
    await service.start()
    try:
        base = f"127.0.0.1:{service.port}/jupyter/"
        headers = {"Authorization": f"token {TOKEN}"}
        created = await AsyncHTTPClient().fetch(
            HTTPRequest(f"http://{base}api/kernels", "POST", headers=headers, body="{}")
        )
        kernel = json.loads(created.body)["id"]
        ws = await websocket_connect(HTTPRequest(f"ws://{base}api/kernels/{kernel}/channels", headers=headers))
        header = {"msg_id": "m1", "msg_type": "execute_request", "session": "s", "username": "", "version": "5.3"}
        content = {"code": "import os; print(os.getpid())", "silent": False}
        ws.write_message(json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                                     "channel": "shell"}))  # fmt: skip
        output = ""
        while True:
            message = json.loads(await asyncio.wait_for(ws.read_message(), 30))
            if message["header"]["msg_type"] == "stream":
                output += message["content"]["text"]
            if message["channel"] == "shell":
                break
        ws.close()
        return identified(descendants(os.getpid()) - others), output
    finally:
        await service.stop()


def test_a_service_built_in_process_runs_a_kernel_and_leaves_none_behind():
    kernels, output = asyncio.run(run_a_kernel_in_process())
    assert int(output) in kernels
    assert not still_running(kernels), "a kernel outlived the service built in-process"


@pytest.mark.parametrize("setting", [{"pool_size": -1}, {"cull_interval": 0}, {"cull_idle_timeout": -1}])
def test_settings_no_service_can_run_with_are_refused_before_anything_is_made(setting):
    with pytest.raises(ConfigError):
        build(ServiceConfig(port=0, token=TOKEN, **setting))


def test_two_services_built_in_one_process_do_not_collide():
    """Metrics are the process's: the service built last is the one its gauges read."""

    async def build_twice() -> int:
        first = build(ServiceConfig(port=0, token=TOKEN, initial_kernels=0, pool_size=0))
        second = build(ServiceConfig(port=0, token=TOKEN, initial_kernels=0, pool_size=0))
        await second.start()
        await second.stop()
        return len(first.services.registry.list()) + len(second.services.registry.list())

    assert asyncio.run(build_twice()) == 0


async def health_while_draining() -> tuple[list[tuple[int, bytes]], bool]:
    """The health check's answers on one kept-alive connection, as the service serves and
    as it drains; and whether the stop's first step (before it waits for anything) is to
    drain."""
    service = build(ServiceConfig(port=0, token=TOKEN, initial_kernels=0, pool_size=0))
    await service.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
    answers = []

    async def health() -> None:
        writer.write(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
        answers.append((int(head.split()[1]), await reader.readexactly(length)))

    try:
        await health()
        service.services.drain.draining = True  # what the stop's first step does
        await health()
        service.services.drain.draining = False
        stopping = asyncio.ensure_future(service.stop())
        await asyncio.sleep(0)
        drains_first = service.services.drain.draining
        await stopping
    finally:
        writer.close()
    return answers, drains_first


def test_the_health_check_answers_503_draining_from_the_first_step_of_a_stop():
    """A cluster's readiness probe or a balancer's check sees a stopping service as not
    ready at once (a kept-alive connection is still answered while it drains)."""
    answers, drains_first = asyncio.run(health_while_draining())
    assert answers == [(200, b'{"status": "ok"}'), (503, b'{"status": "draining"}')]
    assert drains_first
