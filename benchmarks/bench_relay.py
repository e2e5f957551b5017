"""Relay performance, measured three ways in one run: direct ZeroMQ, legacy websocket, v1 websocket.

    python benchmarks/bench_relay.py [--round-trips 300] [--repeats 3] [--quick]

Needs the test extras (`pip install -e ".[test]"`) and a checkout (it starts the service
as the tests do). --quick (30 round trips, one streaming run of a fifth of the prints and a twentieth of the
flushed writes, two starts each) runs in
under 30 s, for a first look; its figures are noisier. Progress goes to stderr, the
figures to stdout; README.md, "Benchmarks", explains each column.

Figures: execute round trip of `pass` (median, p99), iopub streaming (messages/s and
MB/s until idle, with a check that no output was lost), kernel start (request to
kernel_info_reply; launched, and taken from the warm pool). Ratios are against direct
ZeroMQ (jupyter_client), the floor; the socket.io paths (websocket transport, Engine.IO
4 and 3) also against the v1 websocket. The paths take turns (one round trip each, then
the next round; one streaming run each, then the next), so the machine's noise falls on
all of them alike. Servers run on free loopback ports and are stopped by PID; kernels
are checked gone.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import websocket
from jupyter_client.manager import KernelManager
from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1, serialize_msg_to_ws_v1

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.support.service import Service, alive, descendants  # noqa: E402

V1 = "v1.kernel.websocket.jupyter.org"


def print_loop(lines: int) -> tuple[str, str]:
    """Code printing `lines` numbers (ipykernel batches them into few messages), and its output."""
    return f"for i in range({lines}): print(i)", "".join(f"{i}\n" for i in range(lines))


def flushed_writes(lines: int) -> tuple[str, str]:
    """Code writing `lines` lines of 100 bytes, each flushed (one message each), and its output."""
    code = f"import sys\nfor i in range({lines}):\n    sys.stdout.write('x' * 99 + '\\n'); sys.stdout.flush()"
    return code, ("x" * 99 + "\n") * lines


class DirectClient:
    """jupyter_client's blocking client straight on the kernel's ZeroMQ sockets."""

    def __init__(self, manager: KernelManager):
        self.client = manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str) -> tuple[int, str]:
        """Execute; return (iopub messages, stream text) once reply and idle have arrived."""
        msg_id = self.client.execute(code)
        count, text, idle, replied = 0, [], False, False
        while not idle:
            msg = self.client.get_iopub_msg(timeout=60)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            count += 1
            if msg["msg_type"] == "stream":
                text.append(msg["content"]["text"])
            idle = msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle"
        while not replied:
            replied = self.client.get_shell_msg(timeout=60)["parent_header"].get("msg_id") == msg_id
        return count, "".join(text)

    def close(self) -> None:
        self.client.stop_channels()


class MessageClient:
    """Runs code and counts the iopub messages of that request; subclasses move the bytes."""

    def send_execute(self, code: str) -> str:
        raise NotImplementedError

    def recv(self) -> dict:
        raise NotImplementedError

    def run(self, code: str) -> tuple[int, str]:
        msg_id = self.send_execute(code)
        count, text, idle, replied = 0, [], False, False
        while not (idle and replied):
            msg = self.recv()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["channel"] == "shell":
                replied = True
                continue
            count += 1
            msg_type = msg["header"]["msg_type"]
            if msg_type == "stream":
                text.append(msg["content"]["text"])
            idle = idle or (msg_type == "status" and msg["content"]["execution_state"] == "idle")
        return count, "".join(text)


def request(msg_type: str, content: dict, session: str) -> tuple[str, dict]:
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": msg_type, "session": session, "username": "bench", "version": "5.3"}
    return msg_id, {"header": header, "parent_header": {}, "metadata": {}, "content": content}


def execute_request(code: str, session: str) -> tuple[str, dict]:
    return request("execute_request", {"code": code, "silent": False, "store_history": False}, session)


class WebsocketClient(MessageClient):
    """A websocket-client connection in the legacy or v1 protocol."""

    def __init__(self, service: Service, kernel_id: str, protocol: str):
        self.v1 = protocol == "v1"
        self.session = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            service.ws_url(f"api/kernels/{kernel_id}/channels"),
            header=[f"Authorization: token {service.token}"],
            subprotocols=[V1] if self.v1 else None,
            timeout=60,
        )
        self.ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send_execute(self, code: str) -> str:
        msg_id, msg = execute_request(code, self.session)
        self._send_shell(msg)
        return msg_id

    def kernel_info(self) -> None:
        """Ask for kernel_info and wait for the reply (a client's first exchange)."""
        msg_id, msg = request("kernel_info_request", {}, self.session)
        self._send_shell(msg)
        while not (reply := self.recv())["channel"] == "shell" or reply["parent_header"].get("msg_id") != msg_id:
            pass

    def _send_shell(self, msg: dict) -> None:
        if self.v1:
            parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
            self.ws.send_binary(serialize_msg_to_ws_v1(parts, "shell"))
        else:
            self.ws.send(json.dumps({**msg, "channel": "shell"}))

    def recv(self) -> dict:
        data = self.ws.recv()
        if self.v1:
            channel, parts = deserialize_msg_from_ws_v1(data)
            return {"channel": channel, "header": json.loads(parts[0]), "parent_header": json.loads(parts[1]),
                    "content": json.loads(parts[3])}  # fmt: skip
        return json.loads(data)

    def close(self) -> None:
        self.ws.close()


class SocketIOClient(MessageClient):
    """A minimal socket.io client over websocket only: Engine.IO 3 or 4, shell and iopub namespaces."""

    def __init__(self, service: Service, kernel_id: str, eio: int):
        self.eio, self.session = eio, uuid.uuid4().hex
        url = f"ws://127.0.0.1:{service.port}/socket.io/?EIO={eio}&transport=websocket&token={service.token}"
        self.ws = websocket.create_connection(url, timeout=60)
        self.ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ws.recv()  # Engine.IO open
        if eio == 3:
            assert self.ws.recv() == "40"
        self.namespaces = {f"/shell/{kernel_id}": "shell", f"/iopub/{kernel_id}": "iopub"}
        for namespace in self.namespaces:
            self.ws.send(f"40{namespace}" + ("," if eio == 4 else ""))
            while not self.ws.recv().startswith(f"40{namespace}"):
                pass
        self.shell = next(iter(self.namespaces))
        self.last_ping = time.monotonic()

    def send_execute(self, code: str) -> str:
        msg_id, msg = execute_request(code, self.session)
        self.ws.send(f"42{self.shell}," + json.dumps(["msg", msg]))
        return msg_id

    def recv(self) -> dict:
        while True:
            if self.eio == 3 and time.monotonic() - self.last_ping > 60:  # Engine.IO 3 clients ping
                self.ws.send("2")
                self.last_ping = time.monotonic()
            data = self.ws.recv()
            if data == "2":
                self.ws.send("3")
            elif data.startswith("42/"):
                namespace, _, event = data[2:].partition(",")
                return {**json.loads(event)[1], "channel": self.namespaces[namespace]}

    def close(self) -> None:
        self.ws.close()


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


def progress(line: str) -> None:
    """A progress line on stderr, so that the figures on stdout stay clean."""
    print(f"[bench_relay] {line}", file=sys.stderr, flush=True)


def timed_run(client, code: str) -> tuple[float, int, str]:
    start = time.perf_counter()
    count, text = client.run(code)
    return time.perf_counter() - start, count, text


def measure_interleaved(clients: dict, args) -> dict:
    """Every figure for every path, the paths taking turns, so noise falls on all alike."""
    times: dict[str, list[float]] = {path: [] for path in clients}
    for client in clients.values():
        client.run("pass")
    progress(f"round trips: {args.round_trips} per path, taking turns ({', '.join(clients)})")
    for done in range(args.round_trips):
        for path, client in clients.items():
            times[path].append(timed_run(client, "pass")[0])
        if (done + 1) % 100 == 0:
            progress(f"  {done + 1}/{args.round_trips}")
    workloads = {"print_loop": print_loop(args.print_lines), "flushed": flushed_writes(args.flushed_lines)}
    runs: dict[str, dict[str, list]] = {path: {name: [] for name in workloads} for path in clients}
    for repeat in range(args.repeats):
        progress(
            f"streaming run {repeat + 1}/{args.repeats}: {args.print_lines} prints, "
            f"then {args.flushed_lines} flushed writes, per path"
        )
        for name, (code, _) in workloads.items():
            for path, client in clients.items():
                runs[path][name].append(timed_run(client, code))
    return {
        path: {
            "rt_median_ms": statistics.median(times[path]) * 1000,
            "rt_p99_ms": p99(times[path]) * 1000,
            **{name: streaming_figures(runs[path][name], expected) for name, (_, expected) in workloads.items()},
        }
        for path in clients
    }


def streaming_figures(runs: list[tuple[float, int, str]], expected: str) -> dict:
    return {
        "msgs_per_s": statistics.median(count / elapsed for elapsed, count, _ in runs),
        "mb_per_s": statistics.median(len(text.encode()) / elapsed / 1e6 for elapsed, _, text in runs),
        "runs_with_loss": sum(text != expected for _, _, text in runs),
    }


def direct_start_times(repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        manager = KernelManager(kernel_name="python3")
        manager.start_kernel(stderr=subprocess.DEVNULL)
        client = DirectClient(manager)
        times.append(time.perf_counter() - start)
        client.close()
        manager.shutdown_kernel(now=True)
    return times


def service_start_times(service: Service, repeats: int, pooled: bool) -> list[float]:
    """POST /api/kernels -> the first kernel_info_reply over a v1 websocket. Pooled: each
    start once the pool is ready again (the wait is not timed); unpooled: the request asks
    for a variable, which no pooled kernel has, so the kernel is launched."""
    times = []
    body = {} if pooled else {"env": {"KERNEL_BENCH_UNPOOLED": "1"}}
    for _ in range(repeats):
        while pooled and service.request("GET", "api/status")[2]["pool"] < 1:
            time.sleep(0.05)
        start = time.perf_counter()
        status, _, model = service.request("POST", "api/kernels", body)
        assert status == 201, model
        client = WebsocketClient(service, model["id"], "v1")
        client.kernel_info()
        times.append(time.perf_counter() - start)
        client.close()
        service.request("DELETE", f"api/kernels/{model['id']}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--print-lines", type=int, default=100000, help="lines the print loop prints")
    parser.add_argument("--flushed-lines", type=int, default=20000, help="lines written and flushed one by one")
    parser.add_argument(
        "--quick", action="store_true", help="30 round trips, one smaller streaming run, 2 starts (< 30 s)"
    )
    args = parser.parse_args()
    if args.quick:
        args.round_trips, args.repeats, args.print_lines, args.flushed_lines = 30, 1, 20000, 1000
    start_repeats = 2 if args.quick else max(args.repeats, 5)

    progress("starting a kernel for direct ZeroMQ and the service, with one kernel per path")
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(stderr=subprocess.DEVNULL)
    # Clients wait their turn for a minute or more without reading; heartbeats (Engine.IO's
    # and tornado's websocket pings) would drop them, and heartbeats are not what is measured.
    service = Service(
        "--initial-kernels=0",
        "--KernelsService.ping_interval=600",
        "--KernelsService.ping_timeout=600",
        "--KernelsService.websocket_ping_interval=0",
    )
    clients: dict = {}
    try:
        clients["direct"] = DirectClient(manager)
        for path in ("legacy", "v1", "sio-eio4", "sio-eio3"):
            kernel_id = service.start_kernel()
            if path.startswith("sio"):
                clients[path] = SocketIOClient(service, kernel_id, int(path[-1]))
            else:
                clients[path] = WebsocketClient(service, kernel_id, path)
        results = measure_interleaved(clients, args)
        for client in clients.values():
            client.close()
        start_pooled, start_launched = [], []
        progress(f"kernel starts: {start_repeats} from the warm pool and {start_repeats} launched, taking turns")
        for _ in range(start_repeats):  # taking turns, like the paths above
            start_pooled += service_start_times(service, 1, pooled=True)
            start_launched += service_start_times(service, 1, pooled=False)
    finally:
        manager.shutdown_kernel(now=True)
        children = descendants(service.pid)
        service.stop()
    progress(f"kernel starts through jupyter_client directly: {start_repeats if args.quick else args.repeats}")
    start_direct = direct_start_times(start_repeats if args.quick else args.repeats)
    report(results, statistics.median(start_direct), statistics.median(start_launched))
    print(
        f"kernel start from the warm pool (POST -> kernel_info_reply over v1): median "
        f"{statistics.median(start_pooled) * 1000:.1f}ms, against {statistics.median(start_launched) * 1000:.0f}ms "
        f"launched in the same run ({len(start_pooled)} each)"
    )
    leaked = [pid for pid in children if alive(pid)]
    if leaked:
        sys.exit(f"kernel processes outlived the service: {leaked}")


def report(results: dict, start_direct: float, start_service: float) -> None:
    """One line per path: round trip and both streaming figures, each with its ratio to direct."""
    base = results["direct"]
    print("path     rt median   rt p99  ratio |  print msg/s   MB/s  ratio lost |  flush msg/s   MB/s  ratio lost")
    print("(ratios: round trip time, and MB/s, each against direct ZeroMQ)")
    for path, r in results.items():
        rt_ratio = r["rt_median_ms"] / base["rt_median_ms"]
        cells = [f"{path:8} {r['rt_median_ms']:7.2f}ms {r['rt_p99_ms']:6.2f}ms {rt_ratio:5.2f}x"]
        for name in ("print_loop", "flushed"):
            # the bytes are fixed, so the MB/s ratio is the time ratio (message counts vary:
            # ipykernel batches output differently as timing varies)
            figures, ratio = r[name], r[name]["mb_per_s"] / base[name]["mb_per_s"]
            cells.append(
                f"{figures['msgs_per_s']:12.0f} {figures['mb_per_s']:6.2f} {ratio:5.2f}x {figures['runs_with_loss']:4}"
            )
        print(" | ".join(cells))
    for path in ("sio-eio4", "sio-eio3"):
        r, v1 = results[path], results["v1"]
        print(
            f"{path} vs v1 websocket: round trip {r['rt_median_ms'] / v1['rt_median_ms']:.2f}x, "
            f"print throughput {r['print_loop']['mb_per_s'] / v1['print_loop']['mb_per_s']:.2f}x, "
            f"flush throughput {r['flushed']['mb_per_s'] / v1['flushed']['mb_per_s']:.2f}x"
        )
    print(
        f"kernel start (median): direct {start_direct:.2f}s, service (POST -> reply over v1) {start_service:.2f}s, "
        f"ratio {start_service / start_direct:.2f}x"
    )


if __name__ == "__main__":
    main()
