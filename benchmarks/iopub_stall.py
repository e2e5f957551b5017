"""Where iopub output can be lost: the kernel's PUB socket, while its reader is stalled.

    python benchmarks/iopub_stall.py [--messages 6000] [--line 10000] [--stalls 0,0.5,3]
                                     [--kernel-transport auto|curve|ipc|tcp]

A kernel floods its iopub with N stream messages of 10 kB (`--line`, one flush each). A client of
the service runs the flood over the kernel websocket while, in this process, a direct
ZeroMQ SUB on the kernel's iopub (no receive high-water mark, never stalled) reads the
same messages. Mid-flood, the service is stopped with SIGSTOP for a few seconds (the
extreme of a service starved of CPU), then continued.

It prints, for each stall, how many characters of the flood reached the service's client
and the direct SUB. `--line 2` floods small messages, where the socket buffers between
the kernel and its reader matter most (kernels/transport.py): over ipc they hold about
200 kB, over TCP (plain or CurveZMQ) several MB.

ipykernel's iopub socket keeps ZeroMQ's default send high-water mark (1000 messages per
subscriber, not configurable), and a PUB socket drops, silently, what a subscriber
cannot take: so what the kernel printed while its reader was stalled (past that mark and
the socket buffers) never reaches that reader. Jupyter Server, or any
jupyter_client subscriber, loses output the same way. The direct SUB, which kept reading,
gets everything, which shows where the loss is. The service reads its iopub with no
receive high-water mark, and drops nothing it has read.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels_service.relay.sockets import channel_url  # noqa: E402
from kernels_service.testing.channels import ChannelsClient, stream_text  # noqa: E402
from kernels_service.testing.service import Service, running_service  # noqa: E402


def flood_code(messages: int, line: int) -> str:
    write = f"sys.stdout.write(str(i % 10) * {line - 1} + '\\n'); sys.stdout.flush()"
    return f"import sys\nfor i in range({messages}):\n    {write}"


class DirectSubscriber:
    """A SUB on the kernel's iopub in a thread of this process: counts stream characters.
    It holds the kernel's CurveZMQ keys, if it has any, as jupyter_client's sockets do."""

    def __init__(self, info: dict):
        self._socket = zmq.Context.instance().socket(zmq.SUB)
        self._socket.setsockopt(zmq.RCVHWM, 0)
        self._socket.setsockopt(zmq.SUBSCRIBE, b"")
        if "curve_publickey" in info:
            self._socket.curve_secretkey = info["curve_secretkey"].encode()
            self._socket.curve_publickey = self._socket.curve_serverkey = info["curve_publickey"].encode()
        self._socket.connect(channel_url(info, "iopub"))
        self.chars: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            if not self._socket.poll(100):
                continue
            frames = self._socket.recv_multipart()
            start = frames.index(b"<IDS|MSG>")
            header, parent = json.loads(frames[start + 2]), json.loads(frames[start + 3])
            if header["msg_type"] == "stream":
                msg_id = parent.get("msg_id", "")
                self.chars[msg_id] = self.chars.get(msg_id, 0) + len(json.loads(frames[start + 5])["text"])

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._socket.close(linger=0)


def run_flood(service: Service, client: ChannelsClient, messages: int, line: int, stall: float) -> tuple[str, str]:
    """Run the flood; once 200 of its messages arrived, stop the service for `stall` s.
    Returns the request's msg_id and the text the client got."""
    msg_id = client.send("shell", "execute_request", {"code": flood_code(messages, line)})
    seen, stalled = [], stall <= 0
    while True:
        message = client.recv(120)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(message)
        if not stalled and len(seen) > 200:
            os.kill(service.pid, signal.SIGSTOP)
            time.sleep(stall)
            os.kill(service.pid, signal.SIGCONT)
            stalled = True
        if message["header"]["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return msg_id, stream_text(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--line", type=int, default=10_000, help="characters per message")
    parser.add_argument("--stalls", default="0,0.5,3", help="seconds the service is stopped, comma-separated")
    parser.add_argument("--kernel-transport", choices=["auto", "curve", "ipc", "tcp"], default="auto")
    args = parser.parse_args()
    runtime = tempfile.mkdtemp()
    options = [f"--kernel-transport={args.kernel_transport}"]
    with running_service(*options, env={"JUPYTER_RUNTIME_DIR": runtime}) as service:
        (kernel,) = service.request("GET", "api/kernels")[2]
        info = json.loads(Path(runtime, f"kernel-{kernel['id']}.json").read_text())
        direct = DirectSubscriber(info)
        client = ChannelsClient(service, kernel["id"], "v1")
        client.execute("pass")
        expected = args.messages * args.line
        print(f"flood: {args.messages} messages of {args.line} characters ({expected} characters)")
        print("stall (s) | service's client got | direct SUB got")
        for stall in (float(s) for s in args.stalls.split(",")):
            msg_id, text = run_flood(service, client, args.messages, args.line, stall)
            time.sleep(1)  # the direct SUB reads on in its thread
            print(f"{stall:9} | {len(text) / expected:19.1%} | {direct.chars.get(msg_id, 0) / expected:.1%}")
        client.close()
        direct.close()
        print("dropped by the service (its log):", "Dropped" in service.output())


if __name__ == "__main__":
    main()
