"""Code run in a kernel through python-socketio's client, on kernel-relay's namespaces."""

from __future__ import annotations

import asyncio

import socketio

from kernels_service.testing.service import Service


async def run_over_socketio(service: Service, kernel: str, code: str) -> str:
    """`code` in the kernel through python-socketio's client (kernel-relay's namespaces)."""
    client = socketio.AsyncClient(reconnection=False)
    shell, iopub = f"/shell/{kernel}", f"/iopub/{kernel}"
    texts, done = [], asyncio.Event()

    @client.on("msg", namespace=iopub)
    def on_iopub(msg):
        if msg["parent_header"].get("msg_id") == "kept-1":
            if msg["header"]["msg_type"] == "stream":
                texts.append(msg["content"]["text"])
            if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                done.set()

    url = f"http://127.0.0.1:{service.port}"
    await client.connect(url, namespaces=[shell, iopub], auth={"token": service.token}, wait_timeout=60)
    header = {"msg_id": "kept-1", "msg_type": "execute_request", "session": "py", "username": "py", "version": "5.3"}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    await client.emit("msg", {"header": header, "parent_header": {}, "metadata": {}, "content": content}, shell)
    await asyncio.wait_for(done.wait(), 60)
    await client.disconnect()
    return "".join(texts)
