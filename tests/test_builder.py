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
from kernels_service.testing.service import alive, descendants

TOKEN = "in-process-token"


async def run_a_kernel_in_process() -> tuple[list[int], str]:
    """Build, start, run code over the kernel websocket, stop; the kernels' pids and the output."""
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
        return sorted(descendants(os.getpid()) - others), output
    finally:
        await service.stop()


def test_a_service_built_in_process_runs_a_kernel_and_leaves_none_behind():
    kernels, output = asyncio.run(run_a_kernel_in_process())
    assert int(output) in kernels
    assert not [pid for pid in kernels if alive(pid)], "a kernel outlived the service built in-process"


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
