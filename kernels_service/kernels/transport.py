"""How the service and one local kernel talk: ZeroMQ's transport, and CurveZMQ or not.

A kernel publishes its output on a PUB socket that drops, silently, whatever a
subscriber cannot take once ZeroMQ's queue for it (1000 messages, not configurable in
ipykernel) and the socket buffers in between are full. The socket buffers are what
differ: a unix socket (ipc) holds about 200 kB, loopback TCP several MB. So when the
service is starved of CPU for a moment (a busy machine), a kernel flooding small lines
loses output over ipc after about 0.3 s, and none over TCP in 1 s
(`benchmarks/iopub_stall.py --line 2`). Plain loopback TCP, though, lets every user of
the machine subscribe to every kernel's output.

CurveZMQ gives both: TCP's buffers, and sockets that only a peer knowing the kernel's
server key (written in its connection file, 0600) can talk to, encrypted. jupyter_client
(`KernelManager.transport_encryption`) makes the keys, and ipykernel declares that it
takes them (`metadata.supported_encryption` in its kernelspec). Kernels that do not
declare it keep ipc, which keeps other users out by the directory's permissions.

| policy | a kernel that declares curve | one that does not |
|--------|------------------------------|-------------------|
| auto   | tcp + curve                  | ipc               |
| curve  | tcp + curve                  | cannot start      |
| ipc    | ipc                          | ipc               |
| tcp    | tcp (plain)                  | tcp (plain)       |

Kernels of other provisioners (containers) get what their provisioner sets up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zmq

POLICIES = ("auto", "curve", "ipc", "tcp")


@dataclass(frozen=True)
class Transport:
    """jupyter_client's `KernelManager.transport` and `.transport_encryption` for one kernel."""

    transport: str  # "tcp" or "ipc"
    encryption: str  # "disabled", "auto" or "required"


def declares_curve(metadata: Mapping[str, Any]) -> bool:
    """Whether a kernelspec's metadata says its kernel takes CurveZMQ keys."""
    declared = metadata.get("supported_encryption")
    if isinstance(declared, str):
        declared = [declared]
    return isinstance(declared, (list, tuple)) and any(str(item).strip().lower() == "curve" for item in declared)


def curve_available() -> bool:
    """Whether this machine's libzmq was built with CurveZMQ (libsodium)."""
    return bool(zmq.has("curve"))


def choose_transport(policy: str, metadata: Mapping[str, Any], curve: bool = True) -> Transport:
    """The transport of a kernel with this kernelspec `metadata` under `policy`
    (`curve`: whether libzmq has CurveZMQ). Under "curve", a kernel that does not
    declare it is asked for it anyway, and jupyter_client refuses to start it."""
    if policy == "curve":
        return Transport("tcp", "required")
    if policy == "tcp":
        return Transport("tcp", "disabled")
    if policy == "auto" and curve and declares_curve(metadata):
        return Transport("tcp", "required")
    return Transport("ipc", "disabled")
