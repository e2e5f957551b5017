"""The relay against direct ZeroMQ, measured side by side in one run.

    python benchmarks/bench_relay.py [--rounds 3] [--quick] [--kernel-transport auto|curve|ipc|tcp]

Paths to a kernel, each with a kernel of its own:
- `direct`: jupyter_client's AsyncKernelClient straight on the kernel's ZeroMQ sockets,
  in this asyncio process: the fastest honest alternative, and the floor;
- `legacy`, `v1`: the service's kernel websocket (JSON text frames; the v1 binary protocol);
- `sio`: socket.io (Engine.IO 4 / Socket.IO 5) over websocket, the shell and iopub namespaces.
Every client here is asyncio on tornado's websocket client (v1 frames by Jupyter Server's
own codec, not the service's), and decodes every message's
header, parent header and content, as jupyter_client does.

Workloads, the paths taking turns within each round (in an order rotated each round),
so that the machine's noise falls on all of them alike; figures are the medians over
rounds, and each ratio the median of the path's per-round ratios to direct (the turns of
a workload in a round follow each other within a minute), whose spread is printed too:
- `pass` round trip: execute_request until both the reply and the `idle` status (median, p99);
- flood: 20000 lines of 100 bytes, each flushed (a message each): time to idle, lines received;
- print loop: `print(i)` for 100000 numbers (ipykernel batches them): time to idle;
- display: 100 `display_data` of 1 MB: MB/s, and the service's CPU seconds per MB relayed;
- fan-out: 1, 10 and 50 v1 clients on one kernel, each in a process of its own, all
  receiving a 20000-line flood: time until the last client has the last line;
- concurrency: 20 kernels, each with one client doing 200 round trips at once, against
  20 direct clients doing the same.
Then the issue's targets, each marked met or missed.

--kernel-transport (default auto, the service's default: CurveZMQ over loopback TCP for
ipykernel) is how kernels and whoever talks to them connect: the service's kernels and
the direct path's alike (kernels/transport.py chooses for both), so that the ratios
compare the relay with a direct client on the same transport.

--quick runs one smaller round of everything (< 30 s on a quiet 2-core machine; noisier
figures), for a smoke test. Progress goes to stderr, figures to stdout. The service runs
on a free loopback port and is stopped by PID; its kernels are checked gone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_server.services.kernels.connection.base import deserialize_msg_from_ws_v1, serialize_msg_to_ws_v1
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from kernels_service.kernels.transport import POLICIES, Transport, choose_transport, curve_available  # noqa: E402
from kernels_service.testing.service import Service, descendants, identified, still_running  # noqa: E402

V1 = "v1.kernel.websocket.jupyter.org"
MB = 1_000_000
#: Seconds a service path may wait for its next frame before the run fails.
READ_TIMEOUT = 120.0
SERVICE_PATHS = ("legacy", "v1", "sio")
PATHS = ("direct", *SERVICE_PATHS)


def progress(line: str) -> None:
    """A progress line on stderr, so that the figures on stdout stay clean."""
    print(f"[bench_relay] {line}", file=sys.stderr, flush=True)


# --- the code each workload runs -----------------------------------------------------------


def flood_code(lines: int) -> str:
    return f"import sys\nfor i in range({lines}):\n    sys.stdout.write('x' * 99 + '\\n'); sys.stdout.flush()"


def print_code(numbers: int) -> str:
    return f"for i in range({numbers}): print(i)"


def display_code(count: int) -> str:
    return (
        f"from IPython.display import display\nfor i in range({count}): display({{'text/plain': 'x' * {MB}}}, raw=True)"
    )


# --- clients -------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one execution brought back."""

    seconds: float = 0.0
    text: list[str] = field(default_factory=list)
    display_bytes: int = 0

    @property
    def lines(self) -> int:
        return sum(chunk.count("\n") for chunk in self.text)


def execute_request(code: str, session: str) -> dict[str, Any]:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "session": session,
        "username": "bench",
        "version": "5.3",
    }
    content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content}


def kernel_info_request(session: str) -> dict[str, Any]:
    request = execute_request("", session)
    request["header"]["msg_type"], request["content"] = "kernel_info_request", {}
    return request


def take(outcome: Outcome, msg_type: str, content: dict[str, Any]) -> bool:
    """Add an iopub message to the outcome; True once it is the `idle` status."""
    if msg_type == "stream":
        outcome.text.append(content["text"])
    elif msg_type == "display_data":
        outcome.display_bytes += len(content["data"].get("text/plain", ""))
    return msg_type == "status" and content["execution_state"] == "idle"


class DirectPath:
    """jupyter_client's AsyncKernelClient on its own kernel."""

    name = "direct"

    def __init__(self, manager: AsyncKernelManager):
        self.manager = manager
        self.client = manager.client()

    transport = Transport("ipc", "disabled")  # set from --kernel-transport
    socket_dir = ""  # over ipc: a private directory of this run's, for the direct kernels' sockets

    @classmethod
    async def start(cls, attempts: int = 3) -> DirectPath:
        """A kernel and its client, ready. A kernel that dies while starting (rare: two
        processes picked the same free port) is replaced, and what it printed is shown."""
        for attempt in range(1, attempts + 1):
            manager = AsyncKernelManager(
                kernel_name="python3", transport=cls.transport.transport, transport_encryption=cls.transport.encryption
            )
            # over ipc, else jupyter_client's default prefix, `kernel-ipc` in the cwd, is shared
            if cls.transport.transport == "ipc":
                manager.ip = os.path.join(cls.socket_dir, uuid.uuid4().hex[:12])
            with tempfile.TemporaryFile() as stderr:
                await manager.start_kernel(stderr=stderr)
                path = cls(manager)
                path.client.start_channels()
                try:
                    await path.client.wait_for_ready(timeout=60)
                    return path
                except RuntimeError as error:
                    await path.close()
                    stderr.seek(0)
                    said = stderr.read().decode(errors="replace").strip().splitlines()[-3:]
                    progress(f"a direct kernel failed to start ({error}), attempt {attempt}/{attempts}: {said}")
        raise RuntimeError(f"no direct kernel started in {attempts} attempts")

    @classmethod
    async def start_many(cls, count: int) -> list[DirectPath]:
        """`count` kernels started at once; if any cannot start, the others are shut down."""
        results = await asyncio.gather(*(cls.start() for _ in range(count)), return_exceptions=True)
        started = [result for result in results if isinstance(result, DirectPath)]
        failed = [result for result in results if not isinstance(result, DirectPath)]
        if failed:
            await asyncio.gather(*(path.close() for path in started))
            raise failed[0]
        return started

    async def execute(self, code: str) -> Outcome:
        outcome, started = Outcome(), time.perf_counter()
        msg_id = self.client.execute(code, store_history=False)
        idle = False
        while not idle:
            msg = await self.client.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") == msg_id:
                idle = take(outcome, msg["msg_type"], msg["content"])
        while (await self.client.get_shell_msg(timeout=120))["parent_header"].get("msg_id") != msg_id:
            pass
        outcome.seconds = time.perf_counter() - started
        return outcome

    async def close(self) -> None:
        self.client.stop_channels()
        await self.manager.shutdown_kernel(now=True)


class ServicePath:
    """A websocket to the service; subclasses speak the protocols. `receive` yields
    (channel, parent msg_id, msg_type, content) for every message."""

    name = ""

    def __init__(self, connection: WebSocketClientConnection):
        self.connection = connection
        self.session = uuid.uuid4().hex

    async def send_shell(self, msg: dict[str, Any]) -> None:
        raise NotImplementedError

    async def receive(self) -> tuple[str, str, str, dict[str, Any]]:
        raise NotImplementedError

    async def execute(self, code: str, kernel_info: bool = False) -> Outcome:
        request = kernel_info_request(self.session) if kernel_info else execute_request(code, self.session)
        msg_id = request["header"]["msg_id"]
        outcome, started = Outcome(), time.perf_counter()
        await self.send_shell(request)
        idle, replied = kernel_info, False
        while not (idle and replied):
            channel, parent, msg_type, content = await self.receive()
            if parent != msg_id:
                continue
            if channel == "shell":
                replied = True
            elif channel == "iopub":
                idle = take(outcome, msg_type, content) or idle
        outcome.seconds = time.perf_counter() - started
        return outcome

    async def read(self) -> str | bytes:
        """The next frame; a service that sends nothing for READ_TIMEOUT seconds fails the
        run (a lost reply must end the benchmark with a message, not hang it)."""
        try:
            frame = await asyncio.wait_for(self.connection.read_message(), READ_TIMEOUT)
        except asyncio.TimeoutError:
            raise TimeoutError(f"{self.name}: nothing from the service in {READ_TIMEOUT:.0f} s") from None
        if frame is None:
            raise ConnectionError(f"{self.name}: the service closed the connection")
        return frame

    def close(self) -> None:
        self.connection.close()


async def open_websocket(url: str, token: str, subprotocols: list[str] | None = None) -> WebSocketClientConnection:
    request = HTTPRequest(url, headers={"Authorization": f"token {token}"})
    connection = await websocket_connect(request, subprotocols=subprotocols, max_message_size=256 * MB)
    connection.stream.set_nodelay(True)
    return connection


class WebsocketPath(ServicePath):
    """The kernel websocket, legacy (JSON text) or v1 (binary parts)."""

    @classmethod
    async def connect(cls, service: Service, kernel_id: str, protocol: str) -> WebsocketPath:
        url = service.ws_url(f"api/kernels/{kernel_id}/channels")
        path = cls(await open_websocket(url, service.token, [V1] if protocol == "v1" else None))
        path.name = protocol
        return path

    async def send_shell(self, msg: dict[str, Any]) -> None:
        if self.name == "v1":
            parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata", "content")]
            await self.connection.write_message(serialize_msg_to_ws_v1(parts, "shell"), binary=True)
        else:
            await self.connection.write_message(json.dumps({**msg, "channel": "shell"}))

    async def receive(self) -> tuple[str, str, str, dict[str, Any]]:
        frame = await self.read()
        if self.name == "v1":
            channel, parts = deserialize_msg_from_ws_v1(frame)
            header, parent, content = json.loads(parts[0]), json.loads(parts[1]), json.loads(parts[3])
            return channel, parent.get("msg_id", ""), header["msg_type"], content
        msg = json.loads(frame)
        return msg["channel"], msg["parent_header"].get("msg_id", ""), msg["header"]["msg_type"], msg["content"]


class SocketIOPath(ServicePath):
    """socket.io over websocket, Engine.IO 4 / Socket.IO 5: the shell and iopub namespaces."""

    name = "sio"

    @classmethod
    async def connect(cls, service: Service, kernel_id: str) -> SocketIOPath:
        url = f"ws://127.0.0.1:{service.port}/socket.io/?EIO=4&transport=websocket"
        path = cls(await open_websocket(url, service.token))
        path.channels = {}
        await path.read()  # Engine.IO open
        for channel in ("shell", "iopub"):
            namespace = f"/{channel}/{kernel_id}"
            path.channels[namespace] = channel
            await path.connection.write_message(f"40{namespace}," + json.dumps({"token": service.token}))
            while not str(await path.read()).startswith(f"40{namespace},"):
                pass
        path.shell = f"/shell/{kernel_id}"
        return path

    async def send_shell(self, msg: dict[str, Any]) -> None:
        await self.connection.write_message(f"42{self.shell}," + json.dumps(["msg", msg]))

    async def receive(self) -> tuple[str, str, str, dict[str, Any]]:
        while True:
            packet = await self.read()
            if packet == "2":  # Engine.IO 4: the server pings, the client answers
                await self.connection.write_message("3")
                continue
            if not isinstance(packet, str) or not packet.startswith(("42/", "45")):
                continue
            attachments = 0
            if packet.startswith("45"):
                count, packet = packet[2:].split("-", 1)
                attachments, packet = int(count), "42" + packet
            namespace, payload = packet[2:].split(",", 1)
            for _ in range(attachments):
                await self.read()
            msg = json.loads(payload)[1]
            channel = self.channels.get(namespace, "")
            return channel, msg["parent_header"].get("msg_id", ""), msg["header"]["msg_type"], msg["content"]


# --- measuring -----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def p99(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.99) - 1)]


@dataclass
class Sizes:
    """How much each workload does (--quick makes them smaller)."""

    rounds: int
    round_trips: int
    flood_lines: int
    print_numbers: int
    displays: int
    fanouts: tuple[int, ...]
    concurrent_kernels: int
    concurrent_round_trips: int


FULL = Sizes(3, 300, 20000, 100000, 100, (1, 10, 50), 20, 200)
QUICK = Sizes(1, 30, 2000, 20000, 10, (1, 5), 4, 30)


#: Per path, per workload: the figure of each round (seconds; MB/s for "display_mb_s").
Rounds = dict[str, dict[str, list[float]]]


def in_turn(names: list[str], round_number: int) -> list[str]:
    """The paths in the order they take their turns in a round: rotated each round, so that
    no path always follows the same one (and inherits what it left the machine doing)."""
    shift = round_number % len(names)
    return names[shift:] + names[:shift]


async def measure_paths(paths: dict[str, Any], service: Service, sizes: Sizes) -> tuple[Rounds, dict[str, float]]:
    """Round trips, flood, print loop and display on every path, taking turns; each
    round's figures, and the service's CPU seconds per MB displayed on each path."""
    rounds: Rounds = {name: {} for name in paths}
    service_cpu: dict[str, float] = dict.fromkeys(paths, 0.0)
    displayed: dict[str, int] = dict.fromkeys(paths, 0)
    for round_number in range(sizes.rounds):
        order = in_turn(list(paths), round_number)
        progress(f"round {round_number + 1}/{sizes.rounds}: {sizes.round_trips} round trips per path, taking turns")
        round_trips: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(sizes.round_trips):
            for name in order:
                round_trips[name].append((await paths[name].execute("pass")).seconds)
        for name in paths:
            rounds[name].setdefault("rt_median", []).append(statistics.median(round_trips[name]))
            rounds[name].setdefault("rt_p99", []).append(p99(round_trips[name]))
        workloads = {
            "flood": (flood_code(sizes.flood_lines), sizes.flood_lines),
            "print": (print_code(sizes.print_numbers), sizes.print_numbers),
            "display_mb_s": (display_code(sizes.displays), 0),
        }
        for workload, (code, lines) in workloads.items():
            progress(f"round {round_number + 1}/{sizes.rounds}: {workload.split('_')[0]} on each path")
            for name in order:
                before = cpu_seconds(service.pid)
                outcome = await paths[name].execute(code)
                if lines and outcome.lines != lines:
                    raise AssertionError(f"{name} {workload}: {outcome.lines} of {lines} lines arrived")
                figure = outcome.seconds
                if workload == "display_mb_s":
                    if outcome.display_bytes != sizes.displays * MB:
                        raise AssertionError(f"{name}: {outcome.display_bytes} of {sizes.displays * MB} bytes arrived")
                    service_cpu[name] += cpu_seconds(service.pid) - before
                    displayed[name] += outcome.display_bytes
                    figure = sizes.displays / outcome.seconds
                rounds[name].setdefault(workload, []).append(figure)
    cpu_per_mb = {name: service_cpu[name] / (displayed[name] / MB) for name in paths}
    return rounds, cpu_per_mb


def round_ratios(rounds: Rounds, name: str, key: str) -> list[float]:
    """A path's figure over direct's in each round (for MB/s, direct's over the path's):
    above 1 is slower. Each round's paths ran minutes apart at most, on the same machine."""
    pairs = zip(rounds[name][key], rounds["direct"][key], strict=True)
    if key == "display_mb_s":
        return [direct / value for value, direct in pairs]
    return [value / direct for value, direct in pairs]


def ratio(rounds: Rounds, name: str, key: str) -> float:
    """The median of the per-round ratios: what the table and the targets show."""
    return statistics.median(round_ratios(rounds, name, key))


async def measure_fanout(service: Service, clients: int, lines: int, watcher_timeout: float = 300) -> float:
    """`clients` v1 watchers in processes of their own, plus the client that runs the
    flood; seconds from the request until the last watcher has the last line. A watcher
    that gets nothing for `watcher_timeout` seconds fails it (AssertionError)."""
    kernel_id = service.start_kernel()
    driver = await WebsocketPath.connect(service, kernel_id, "v1")
    await driver.execute("pass")
    url = service.ws_url(f"api/kernels/{kernel_id}/channels")
    watcher = str(ROOT / "benchmarks" / "fanout_watcher.py")
    processes = [
        subprocess.Popen(
            [sys.executable, watcher, url, service.token, str(lines), str(watcher_timeout)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready", "a fan-out watcher did not connect"
        started = time.monotonic()
        driven = await driver.execute(flood_code(lines))
        finished, failed = [], []
        for process in processes:
            out, _ = await asyncio.get_running_loop().run_in_executor(None, process.communicate, None)
            if process.returncode == 0:
                finished.append(float(out.split()[-1]))
            else:
                failed.append(out.strip().splitlines()[-1] if out.strip() else f"exit {process.returncode}")
        if failed:
            log = "\n".join(line for line in service.output().splitlines()[-80:] if "access_log" not in line)
            raise AssertionError(
                f"{len(failed)} of {clients} fan-out watchers failed: {failed[:5]}; the client that ran the flood "
                f"got {driven.lines} of {lines} lines\n{log}"
            )
        return max(finished) - started
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        driver.close()
        service.request("DELETE", f"api/kernels/{kernel_id}")


async def measure_concurrency(service: Service, kernels: int, round_trips: int) -> dict[str, list[float]]:
    """`kernels` kernels, each with one client doing `round_trips` round trips, all at once:
    through the service (v1) and directly; every round trip's time."""

    async def client_loop(path: Any) -> list[float]:
        return [(await path.execute("pass")).seconds for _ in range(round_trips)]

    progress(f"concurrency: starting {kernels} direct kernels and {kernels} service kernels")
    direct = await DirectPath.start_many(kernels)
    kernel_ids = [service.start_kernel() for _ in range(kernels)]
    relayed = [await WebsocketPath.connect(service, kernel_id, "v1") for kernel_id in kernel_ids]
    try:
        for path in [*direct, *relayed]:
            await path.execute("pass")
        times = {}
        progress(f"concurrency: {kernels} clients x {round_trips} round trips at once, direct then service")
        times["direct"] = [t for ts in await asyncio.gather(*(client_loop(p) for p in direct)) for t in ts]
        times["v1"] = [t for ts in await asyncio.gather(*(client_loop(p) for p in relayed)) for t in ts]
        return times
    finally:
        for path in relayed:
            path.close()
        for kernel_id in kernel_ids:
            service.request("DELETE", f"api/kernels/{kernel_id}")
        await asyncio.gather(*(path.close() for path in direct))


# --- the report ----------------------------------------------------------------------------


ROWS = (
    ("pass round trip, median (ms)", "rt_median", 1000),
    ("pass round trip, p99 (ms)", "rt_p99", 1000),
    ("flood {flood_lines} lines, to idle (s)", "flood", 1),
    ("print {print_numbers} numbers, to idle (s)", "print", 1),
    ("display {displays} x 1 MB (MB/s)", "display_mb_s", 1),
)


def report_paths(rounds: Rounds, cpu_per_mb: dict[str, float], sizes: Sizes) -> None:
    print(
        f"figures: medians of {sizes.rounds} round(s); ratio: the median of the per-round ratios path / direct"
        " (for MB/s: direct / path, so >1 is always slower)"
    )
    print(f"{'workload':34}" + "".join(f"{name:>20}" for name in PATHS))
    for label, key, scale in ROWS:
        ratios = {name: ratio(rounds, name, key) for name in SERVICE_PATHS} | {"direct": 1.0}
        cells = [f"{statistics.median(rounds[name][key]) * scale:12.2f} {ratios[name]:5.2f}x" for name in PATHS]
        print(f"{label.format(**sizes.__dict__):34}" + "".join(f"{cell:>20}" for cell in cells))
    print(
        f"{'service CPU per MB displayed (s)':34}{'':>20}"
        + "".join(f"{cpu_per_mb[name]:>20.4f}" for name in SERVICE_PATHS)
    )
    print(f"ratios in each round ({sizes.rounds}), lowest to highest:")
    width = max(20, 5 * sizes.rounds + 3)  # room for every round's ratio
    print(f"  {'':32}" + "".join(f"{name:>{width}}" for name in SERVICE_PATHS))
    for label, key, _ in ROWS:
        cells = [" ".join(f"{r:.2f}" for r in sorted(round_ratios(rounds, name, key))) for name in SERVICE_PATHS]
        print(f"  {label.format(**sizes.__dict__):32}" + "".join(f"{cell:>{width}}" for cell in cells), flush=True)


def report_fanout(fanout: dict[int, float]) -> None:
    one = fanout[min(fanout)]
    each = [f"{n} client(s) {seconds:.2f}s ({seconds / one:.2f}x one)" for n, seconds in sorted(fanout.items())]
    print("fan-out, v1, flood to the last line of the last client: " + ", ".join(each), flush=True)


def report_concurrency(concurrency: dict[str, list[float]], sizes: Sizes) -> None:
    d, v = concurrency["direct"], concurrency["v1"]
    print(
        f"concurrency, {sizes.concurrent_kernels} kernels x {sizes.concurrent_round_trips} round trips at once: "
        f"direct median {statistics.median(d) * 1000:.2f}ms p99 {p99(d) * 1000:.2f}ms, "
        f"v1 median {statistics.median(v) * 1000:.2f}ms p99 {p99(v) * 1000:.2f}ms, "
        f"ratio {statistics.median(v) / statistics.median(d):.2f}x",
        flush=True,
    )


def report_targets(rounds: Rounds, fanout: dict[int, float], concurrency: dict[str, list[float]]) -> None:
    one = fanout[min(fanout)]
    concurrent = statistics.median(concurrency["v1"]) / statistics.median(concurrency["direct"])
    targets = [
        ("round trip <= 1.1x direct, v1", ratio(rounds, "v1", "rt_median"), 1.1),
        ("round trip <= 1.1x direct, legacy", ratio(rounds, "legacy", "rt_median"), 1.1),
        ("1 MB outputs >= 0.9x direct MB/s, v1 (as direct/v1 <= 1.11)", ratio(rounds, "v1", "display_mb_s"), 1 / 0.9),
        ("flood <= 1.15x direct time, v1", ratio(rounds, "v1", "flood"), 1.15),
        ("flood <= 1.15x direct time, legacy", ratio(rounds, "legacy", "flood"), 1.15),
        ("concurrent kernels <= 1.2x direct", concurrent, 1.2),
    ]
    for n, limit in ((10, 1.3), (50, 2.0)):
        if n in fanout:
            targets.append((f"fan-out {n} clients <= {limit}x one client", fanout[n] / one, limit))
    print("targets (ratios to direct in this run):")
    for label, value, limit in targets:
        print(f"  {'met   ' if value <= limit else 'MISSED'} {value:5.2f}x  {label}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=FULL.rounds)
    parser.add_argument("--quick", action="store_true", help="one smaller round of everything (< 30 s)")
    parser.add_argument("--kernel-transport", choices=POLICIES, default="auto")
    args = parser.parse_args()
    python3 = KernelSpecManager().get_kernel_spec("python3")
    DirectPath.transport = choose_transport(args.kernel_transport, python3.metadata, curve_available())
    DirectPath.socket_dir = tempfile.mkdtemp(prefix="bench-direct-")
    chosen = DirectPath.transport
    print(f"kernel transport: {args.kernel_transport}: {chosen.transport}, encryption {chosen.encryption} (both paths)")
    sizes = QUICK if args.quick else Sizes(**{**FULL.__dict__, "rounds": max(1, args.rounds)})
    # Clients wait their turn without reading for a while; heartbeats are not what is measured.
    service = Service(
        "--initial-kernels=0",
        "--pool-size=0",
        f"--kernel-transport={args.kernel_transport}",
        "--KernelsService.ping_interval=600",
        "--KernelsService.ping_timeout=600",
        "--KernelsService.websocket_ping_interval=0",
    )
    progress(f"service at {service.http_url()} (pid {service.pid}); starting one kernel per path")
    paths: dict[str, Any] = {}
    try:
        paths["direct"] = await DirectPath.start()
        for name in ("legacy", "v1"):
            paths[name] = await WebsocketPath.connect(service, service.start_kernel(), name)
        paths["sio"] = await SocketIOPath.connect(service, service.start_kernel())
        for path in paths.values():
            await path.execute("pass")
        rounds, cpu_per_mb = await measure_paths(paths, service, sizes)
        report_paths(rounds, cpu_per_mb, sizes)  # each part as soon as it is measured
        fanout = {}
        for clients in sizes.fanouts:
            progress(f"fan-out: {clients} watcher process(es) on one kernel, {sizes.flood_lines}-line flood")
            fanout[clients] = await measure_fanout(service, clients, sizes.flood_lines)
        report_fanout(fanout)
        concurrency = await measure_concurrency(service, sizes.concurrent_kernels, sizes.concurrent_round_trips)
        report_concurrency(concurrency, sizes)
        report_targets(rounds, fanout, concurrency)
    finally:
        if "direct" in paths:
            await paths.pop("direct").close()
        for path in paths.values():
            path.close()
        children = identified(descendants(service.pid))
        service.stop()
        shutil.rmtree(DirectPath.socket_dir, ignore_errors=True)
    leaked = still_running(children)
    if leaked:
        sys.exit(f"kernel processes outlived the service: {leaked}")


if __name__ == "__main__":
    asyncio.run(main())
