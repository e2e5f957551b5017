"""Creating the relay's ZeroMQ sockets from a kernel's connection info."""

from __future__ import annotations

from typing import Any

import zmq
import zmq.asyncio


def channel_url(info: dict[str, Any], channel: str) -> str:
    """The ZeroMQ URL of one kernel channel, as jupyter_client builds it."""
    port = info[f"{channel}_port"]
    if info.get("transport", "tcp") == "tcp":
        return f"tcp://{info['ip']}:{port}"
    return f"{info['transport']}://{info['ip']}-{port}"


def connect_iopub(context: zmq.asyncio.Context, info: dict[str, Any]) -> zmq.asyncio.Socket:
    """A SUB socket on the kernel's iopub with no receive high-water mark.

    A PUB socket silently drops everything for a subscriber past its HWM, the `idle`
    status too; the relay must never be that subscriber, so its queue is unbounded
    here and memory is bounded per client further down instead.
    """
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, 0)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(channel_url(info, "iopub"))
    return socket
