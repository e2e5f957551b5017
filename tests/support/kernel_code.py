"""Code run in a kernel through the kernel websocket, as the tests' clients run it."""

from __future__ import annotations

from typing import Any

from kernels_service.testing.channels import ChannelsClient, stream_text


def run_code(service: Any, kernel: str, code: str, protocol: str = "v1") -> str:
    """`code` in the kernel over a fresh websocket of `service` (a Service, or anything
    addressed like one: a balancer, a container); its stream output. The cell must succeed."""
    client = ChannelsClient(service, kernel, protocol)
    try:
        reply, outputs = client.execute(code, timeout=60)
        assert reply["content"]["status"] == "ok", reply["content"]
        return stream_text(outputs)
    finally:
        client.close()
