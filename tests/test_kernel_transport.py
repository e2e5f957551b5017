"""Each kernel's transport (kernels/transport.py): the choice, what a peer without the
kernel's key gets, and the reason for the default: output that survives a service
starved of CPU for a moment."""

from __future__ import annotations

import functools
import json
import operator
import os
import signal
import time
from pathlib import Path

import pytest
import zmq
import zmq.utils.monitor

from kernels_service.kernels.transport import Transport, choose_transport, declares_curve
from kernels_service.relay.sockets import channel_url
from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import running_service
from tests.support.attacks import MY_ADDRESSES, run_in_kernel
from tests.support.kernelspecs import write_kernelspec
from tests.support.waiting import wait_until

CURVE = {"supported_encryption": ["curve"]}


@pytest.mark.parametrize(
    ("policy", "metadata", "curve", "expected"),
    [
        ("auto", CURVE, True, Transport("tcp", "required")),
        ("auto", {}, True, Transport("ipc", "disabled")),
        ("auto", CURVE, False, Transport("ipc", "disabled")),  # a libzmq without CurveZMQ
        ("curve", CURVE, True, Transport("tcp", "required")),
        ("curve", {}, True, Transport("tcp", "required")),  # jupyter_client refuses to start it
        ("ipc", CURVE, True, Transport("ipc", "disabled")),
        ("tcp", CURVE, True, Transport("tcp", "disabled")),
        ("tcp", {}, True, Transport("tcp", "disabled")),
    ],
)
def test_each_policy_and_kernelspec_gets_its_transport(policy, metadata, curve, expected):
    assert choose_transport(policy, metadata, curve) == expected


@pytest.mark.parametrize(
    ("metadata", "declared"),
    [
        ({"supported_encryption": ["curve"]}, True),
        ({"supported_encryption": "CURVE "}, True),
        ({"supported_encryption": ["tls", "curve"]}, True),
        ({"supported_encryption": []}, False),
        ({"supported_encryption": "none"}, False),
        ({"supported_encryption": {"curve": True}}, False),  # not a form the spec allows
        ({"supported_encryption": None}, False),
        ({}, False),
    ],
)
def test_a_kernelspec_declares_curve_only_in_the_forms_jupyter_client_reads(metadata, declared):
    assert declares_curve(metadata) is declared


def plain_kernelspec(root: Path) -> dict[str, str]:
    """A python kernelspec that does not declare CurveZMQ (as most non-Python kernels)."""
    write_kernelspec(root, "plain")
    return {"JUPYTER_PATH": str(root)}


def test_by_default_a_kernel_that_declares_curve_gets_it_and_one_that_does_not_gets_ipc(tmp_path):
    with running_service("--initial-kernels=0", "--pool-size=0", env=plain_kernelspec(tmp_path)) as service:
        found = {}
        for name in ("python3", "plain"):
            client = ChannelsClient(service, service.start_kernel(name=name))
            found[name] = run_in_kernel(client, MY_ADDRESSES)["transport"]
            client.close()
        assert found == {"python3": "tcp", "plain": "ipc"}


def test_with_curve_required_a_kernel_that_does_not_declare_it_is_a_503_and_leaves_nothing(tmp_path):
    options = ("--initial-kernels=0", "--pool-size=0", "--kernel-transport=curve")
    with running_service(*options, env=plain_kernelspec(tmp_path)) as service:
        status, _, body = service.request("POST", "api/kernels", {"name": "plain"})
        assert status == 503 and "could not be started" in body["message"], body
        said = lambda: "kernelspec does not declare" in service.output() and "supported_encryption" in service.output()  # noqa: E731
        wait_until(said, 30, "the reason in the log")
        assert service.request("GET", "api/kernels")[2] == []
        assert service.start_kernel(name="python3")  # the next client is served


#: What ends a CurveZMQ handshake, as a socket monitor reports it.
HANDSHAKE_ENDED = {
    zmq.EVENT_HANDSHAKE_SUCCEEDED: True,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: False,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: False,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: False,
    zmq.EVENT_DISCONNECTED: False,
}


def handshake_succeeded(monitor: zmq.Socket, timeout: float = 20) -> bool:
    """Whether the monitored socket's first handshake succeeded (False: it failed, or the
    peer hung up on it); AssertionError if it did not end within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if monitor.poll(int(remaining * 1000)):
            event = zmq.utils.monitor.recv_monitor_message(monitor)["event"]
            if event in HANDSHAKE_ENDED:
                return HANDSHAKE_ENDED[event]
    raise AssertionError(f"the handshake did not end in {timeout} s")


def received_output(info: dict, keys: tuple[bytes, bytes, bytes] | None, client: ChannelsClient) -> int:
    """How many iopub messages a SUB with `keys` (secret, public, server's) gets while the
    kernel prints; None: no CurveZMQ at all. Its handshake's end is waited for (a socket
    monitor says when): one that failed gets nothing while the kernel prints for a second;
    one that succeeded is subscribed, and the kernel prints until a message comes."""
    socket = zmq.Context.instance().socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.linger = 0
    if keys is not None:
        socket.curve_secretkey, socket.curve_publickey, socket.curve_serverkey = keys
    monitor = socket.get_monitor_socket(functools.reduce(operator.or_, HANDSHAKE_ENDED))
    socket.connect(channel_url(info, "iopub"))
    try:
        subscribed = handshake_succeeded(monitor)
        count = 0
        for _ in range(20 if subscribed else 1):  # the subscription reaches the kernel's PUB after the handshake
            client.execute("print('secret output')")
            deadline = time.monotonic() + (1 if subscribed else 2)
            while time.monotonic() < deadline:
                if socket.poll(100):
                    socket.recv_multipart()
                    count += 1
            if count:
                break
        return count
    finally:
        socket.disable_monitor()
        monitor.close(linger=0)
        socket.close()


def test_only_a_subscriber_with_the_kernels_key_gets_its_output(tmp_path):
    """From where another user stands with a full ZeroMQ library: the kernel's port is
    open, but without its server key (in the connection file, 0600) nothing comes."""
    runtime = tmp_path / "runtime"
    with running_service("--initial-kernels=1", "--pool-size=0", env={"JUPYTER_RUNTIME_DIR": str(runtime)}) as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        info = json.loads((runtime / f"kernel-{kernel}.json").read_text())
        assert (runtime / f"kernel-{kernel}.json").stat().st_mode & 0o777 == 0o600
        client = ChannelsClient(service, kernel)
        public, secret = info["curve_publickey"].encode(), info["curve_secretkey"].encode()
        other_public, other_secret = zmq.curve_keypair()
        assert received_output(info, None, client) == 0
        assert received_output(info, (other_secret, other_public, other_public), client) == 0
        assert received_output(info, (other_secret, other_public, public), client) > 0  # knows the key
        assert received_output(info, (secret, public, public), client) > 0  # as jupyter_client does
        client.close()


#: Output in two parts: before the service is stopped, then while it is, as many
#: messages as a kernel's output socket queues for its reader whatever the transport
#: (ZeroMQ's high-water mark is 1000 messages): the kernel waits for the test's word
#: between them (a file), so that nothing depends on who runs faster.
STALLED_OUTPUT = r"""
import os, sys, time
def lines(first, count):
    for i in range(first, first + count):
        sys.stdout.write(f"{i %% 10}\n"); sys.stdout.flush()  # a message each
lines(0, %(before)d)
deadline = time.monotonic() + 60
while not os.path.exists(%(stopped)r) and time.monotonic() < deadline:
    time.sleep(0.01)
lines(%(before)d, %(during)d)
open(%(written)r, "w").close()
"""


@pytest.mark.timeout(300)
def test_output_written_while_the_service_is_stopped_reaches_the_client(tmp_path):
    """The service stopped (SIGSTOP, the extreme of a CPU-starved machine) while its kernel
    writes 900 messages: once it runs again, its client gets every one, in order. How
    much more than that each transport keeps depends on socket buffers and timing, which
    benchmarks/iopub_stall.py measures (and why TCP, not ipc, is the default)."""
    before, during = 200, 900
    stopped, written = tmp_path / "stopped", tmp_path / "written"
    code = STALLED_OUTPUT % {"before": before, "during": during, "stopped": str(stopped), "written": str(written)}
    with running_service("--initial-kernels=1", "--pool-size=0") as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel, "v1")
        client.execute("pass")
        msg_id = client.send("shell", "execute_request", {"code": code})
        seen: list[dict] = []
        while len(seen) < before:
            message = client.recv(60)
            if message["parent_header"].get("msg_id") == msg_id and message["header"]["msg_type"] == "stream":
                seen.append(message)
        os.kill(service.pid, signal.SIGSTOP)
        try:
            stopped.touch()
            wait_until(written.exists, 60, "the kernel writing while the service is stopped")
        finally:
            os.kill(service.pid, signal.SIGCONT)
        while True:
            message = client.recv(60)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            if message["header"]["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
            seen.append(message)
        client.close()
    assert stream_text(seen) == "".join(f"{i % 10}\n" for i in range(before + during))
