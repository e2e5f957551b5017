"""Kernel channels over socket.io with real clients of every generation."""

from __future__ import annotations

import asyncio

import pytest
import socketio

from kernels_service.testing.channels import ChannelsClient, stream_text
from tests.support.node import run_node

CLIENT_GENERATIONS = ["1", "2", "4"]
TRANSPORTS = ["default", "websocket", "polling"]


@pytest.mark.parametrize("transports", TRANSPORTS)
@pytest.mark.parametrize("generation", CLIENT_GENERATIONS)
def test_npm_client_flow(service, generation, transports):
    outcome = run_node("kernel_flow.js", generation, transports, service.http_url(), service.token)
    assert outcome["spawned"] and outcome["shutdown"]
    assert outcome["hello"] == "héllo wörld ✓ 🚀\n"
    assert outcome["input"] == "ünïcode name? \n"
    assert outcome["bigLength"] == 1_000_001 and outcome["bigReply"] == "ok"
    assert outcome["comm"] == {"data": {"echo": {"n": 3}}, "buffers": [[0, 1, 2, 255]]}
    assert outcome["transport"] == ("polling" if transports == "polling" else "websocket")


def jupyter_message(msg_type: str, content: dict, msg_id: str) -> dict:
    header = {"msg_id": msg_id, "msg_type": msg_type, "session": "py", "username": "py", "version": "5.3"}
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content}


async def python_client_flow(service, kernel_id: str, transports: list[str]) -> dict:
    """python-socketio's AsyncClient on /shell, /stdin, /iopub of one kernel (one connection)."""
    client = socketio.AsyncClient(reconnection=False)
    base = service.base.rstrip("/")
    namespaces = [f"{base}/shell/{kernel_id}", f"{base}/stdin/{kernel_id}", f"/iopub/{kernel_id}"]
    outputs, replies, done = [], [], asyncio.Event()

    @client.on("msg", namespace=namespaces[2])
    def on_iopub(msg):
        if msg["parent_header"].get("msg_id") == "py-1":
            outputs.append(msg)
            if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                done.set()

    @client.on("msg", namespace=namespaces[0])
    def on_shell(msg):
        replies.append(msg)

    @client.on("msg", namespace=namespaces[1])
    async def on_stdin(msg):
        reply = jupyter_message("input_reply", {"value": "from python ✓"}, "py-2")
        await client.emit("msg", reply, namespace=namespaces[1])

    await client.connect(
        f"http://127.0.0.1:{service.port}",
        namespaces=namespaces,
        transports=transports,
        socketio_path=f"{base}/socket.io",
        auth={"token": service.token},
        wait_timeout=60,  # a namespace connect waits for the new kernel: 1 s (the default) is a race
    )
    # a big output, then a flood of flushed lines: frames of a burst are written together.
    # 800 messages: under the 1000 a kernel's output socket queues for a reader that gets no
    # CPU (past them it drops, before the service: 114 of 3000 lines, once, beside two busy loops)
    code = "import sys\nprint(input('? ')); print('x' * 200000)\nfor i in range(800): print(i, flush=True)"
    await client.emit(
        "msg", jupyter_message("execute_request", {"code": code, "allow_stdin": True}, "py-1"), namespace=namespaces[0]
    )
    await asyncio.wait_for(done.wait(), 30)
    for _ in range(1500):  # the reply may come after the idle status (another channel); an upgrade may be under way
        if any(r["parent_header"].get("msg_id") == "py-1" for r in replies) and client.transport() == transports[-1]:
            break
        await asyncio.sleep(0.02)
    transport = client.transport()
    await client.disconnect()
    return {"text": stream_text(outputs), "replies": replies, "transport": transport}


@pytest.mark.parametrize("transports", [["polling", "websocket"], ["websocket"], ["polling"]])
def test_python_socketio_client_flow(service, transports):
    kernel = service.request("GET", "spawn/python3")[2]["id"]
    result = asyncio.run(python_client_flow(service, kernel, transports))
    assert service.request("GET", f"shutdown/{kernel}")[2]["kernelId"] == kernel
    assert result["text"] == "from python ✓\n" + "x" * 200000 + "\n" + "".join(f"{i}\n" for i in range(800))
    assert result["replies"][-1]["content"]["status"] == "ok"
    assert result["transport"] == transports[-1]


def test_raw_websocket_and_socketio_on_one_kernel(service, kernel):
    """Both doors share the kernel's iopub; the websocket client keeps its own replies."""
    watcher = ChannelsClient(service, kernel, "v1")
    try:
        watcher.execute("pass")
        result = asyncio.run(python_client_flow(service, kernel, ["websocket"]))
        assert result["text"].startswith("from python ✓\n")
        seen = watcher.recv_until(
            lambda m: (
                m["header"]["msg_type"] == "status"
                and m["content"]["execution_state"] == "idle"
                and m["parent_header"].get("msg_id") == "py-1"
            )
        )
        assert stream_text([m for m in seen if m["parent_header"].get("msg_id") == "py-1"]) == result["text"]
        assert all(m["channel"] == "iopub" for m in seen), "the websocket client got socket.io's replies"
        _, outputs = watcher.execute("print('mine')")
        assert stream_text(outputs) == "mine\n"
    finally:
        watcher.close()
