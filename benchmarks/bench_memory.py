"""Service memory under socket.io load: RSS before, at the peak, and after.

    python benchmarks/bench_memory.py [--sessions 2000] [--clients 300] [--message-mb 60]

Three workloads, each against a fresh service on a free loopback port:

* sessions: N Engine.IO 4 websocket sessions join `/` with the token and stay open,
  then all close; once with the default session cap (1000: the rest get 503), once
  with all admitted, three rounds in a row (steady memory across rounds: no leak).
  The all-admitted run is repeated with `PYTHONMALLOC=pymalloc`, the operator's
  opt-out of the allocator the service picks (kernels_service/memory.py): it shows
  what the heap trim gives back.
* websocket clients: N raw kernel websocket clients on one kernel, each runs
  `print(1)` in turn (every client gets every client's output), then all close.
* large message: a kernel prints one N MB stream message; one, then three socket.io
  clients on `/iopub/<id>` receive it whole (clients that keep up share one encoded copy).

The service's RSS is sampled from /proc every 10 ms. "after" is read once the clients
are gone and the service has had a few seconds to settle; the target is after <= 2x
the baseline. Services are stopped by PID and checked to leave no kernel behind.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import uuid
from pathlib import Path

import websocket

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kernels_service.testing.channels import ChannelsClient  # noqa: E402
from kernels_service.testing.service import Service, running_service  # noqa: E402

MB = 1024 * 1024
STREAM = re.compile(r'"msg_type":\s*"stream"')


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


class PeakSampler:
    """Samples a process's RSS in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, rss(pid), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def open_session(service: Service) -> websocket.WebSocket:
    url = f"ws://127.0.0.1:{service.port}/socket.io/?EIO=4&transport=websocket"
    sock = websocket.create_connection(url, timeout=30)
    sock.recv()  # Engine.IO open
    sock.send(f'40{{"token":"{service.token}"}}')
    assert sock.recv().startswith("40{"), "the main namespace refused the token"
    return sock


def settle(service: Service, seconds: float) -> int:
    time.sleep(seconds)
    return rss(service.pid)


def open_sessions(service: Service, count: int) -> tuple[list[websocket.WebSocket], int]:
    """Try `count` sessions; return the open ones and how many were refused (the cap)."""
    socks, refused = [], 0
    for i in range(count):
        try:
            socks.append(open_session(service))
        except (websocket.WebSocketException, OSError):
            refused += 1
        if (i + 1) % 500 == 0:
            print(f"  {i + 1} sessions tried", flush=True)
    return socks, refused


def sessions_workload(count: int, cap: int | None, rounds: int, env: dict | None = None) -> dict:
    """`rounds` bursts of `count` sessions that join `/` and leave; `cap` None is the default."""
    options = ["--initial-kernels=0"] + ([f"--max-socketio-sessions={cap}"] if cap else [])
    with running_service(*options, env=env) as service:
        baseline = settle(service, 2)
        sampler = PeakSampler(service.pid)
        afters, refused = [], 0
        for _ in range(rounds):
            socks, refused = open_sessions(service, count)
            for sock in socks:
                sock.close()
            afters.append(settle(service, 5))
        return {"baseline": baseline, "peak": sampler.stop(), "after": afters[-1], "rounds": afters, "refused": refused}


def websocket_clients_workload(count: int) -> dict:
    """`count` kernel websocket clients of one kernel each run print(1), then all leave."""
    with running_service() as service:
        kernel_id = service.request("GET", "api/kernels")[2][0]["id"]
        ChannelsClient(service, kernel_id).execute("pass")[0]  # the kernel is ready
        baseline = settle(service, 2)
        sampler = PeakSampler(service.pid)
        clients = [ChannelsClient(service, kernel_id, protocol="v1" if i % 2 else "legacy") for i in range(count)]
        for client in clients:
            reply, outputs = client.execute("print(1)", timeout=120)
            assert reply["content"]["status"] == "ok" and outputs, "print(1) gave no output"
        for client in clients:
            client.close()
        peak = sampler.stop()
        return {"baseline": baseline, "peak": peak, "after": settle(service, 5)}


def join(sock: websocket.WebSocket, service: Service, namespace: str) -> None:
    """Join a namespace; output of namespaces joined before may arrive first."""
    sock.send(f'40{namespace},{{"token":"{service.token}"}}')
    for _ in range(100):
        if sock.recv().startswith(f"40{namespace}"):
            return
    raise AssertionError(f"{namespace} was not joined")


def receive_stream(sock: websocket.WebSocket, sizes: list[int]) -> None:
    """Read until the stream message arrives; note its size."""
    while True:
        data = sock.recv()
        if data == "2":
            sock.send("3")
        elif data.startswith("42/iopub/") and STREAM.search(data[:2000]):
            sizes.append(len(data))
            return


def large_message_workload(size_mb: int, clients: int) -> dict:
    """One `size_mb` MB stream message to `clients` socket.io clients of one kernel."""
    with running_service() as service:
        kernel_id = service.request("GET", "api/kernels")[2][0]["id"]
        socks = [open_session(service) for _ in range(clients)]
        for sock in socks:
            join(sock, service, f"/iopub/{kernel_id}")
        join(socks[0], service, f"/shell/{kernel_id}")
        baseline = settle(service, 2)
        sampler = PeakSampler(service.pid)
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": "execute_request", "session": msg_id, "username": "", "version": "5.3"}
        code = f"print('x' * {size_mb * MB})"
        content = {"code": code, "silent": False, "store_history": False}
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        sizes: list[int] = []
        readers = [threading.Thread(target=receive_stream, args=(sock, sizes)) for sock in socks]
        for reader in readers:
            reader.start()
        socks[0].send(f"42/shell/{kernel_id}," + json.dumps(["msg", message]))
        for reader in readers:
            reader.join(300)
        peak = sampler.stop()
        for sock in socks:
            sock.close()
        assert len(sizes) == clients and min(sizes) > size_mb * MB, "the message did not reach every client whole"
        return {"baseline": baseline, "peak": peak, "after": settle(service, 5)}


def report(name: str, figures: dict) -> None:
    ratio = figures["after"] / figures["baseline"]
    verdict = "ok" if ratio <= 2 else "over 2x"
    print(
        f"{name:<44} baseline {figures['baseline'] / MB:6.1f} MB  peak {figures['peak'] / MB:6.1f} MB  "
        f"after {figures['after'] / MB:6.1f} MB  after/baseline {ratio:4.2f}x ({verdict})"
    )
    if len(figures.get("rounds", [])) > 1:
        rounds = ", ".join(f"{after / MB:.1f}" for after in figures["rounds"])
        print(f"{'':<44} after each round: {rounds} MB (no growth: no leak)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=300)
    parser.add_argument("--message-mb", type=int, default=60)
    args = parser.parse_args()
    print(f"{args.sessions} socket.io sessions, default session cap...", flush=True)
    capped = sessions_workload(args.sessions, None, rounds=1)
    print(f"{args.sessions} socket.io sessions, all admitted, 3 rounds...", flush=True)
    uncapped = sessions_workload(args.sessions, args.sessions + 10, rounds=3)
    print(f"{args.sessions} socket.io sessions, all admitted, PYTHONMALLOC=pymalloc...", flush=True)
    pymalloc = sessions_workload(args.sessions, args.sessions + 10, rounds=1, env={"PYTHONMALLOC": "pymalloc"})
    print(f"{args.clients} kernel websocket clients, print(1) each...", flush=True)
    clients = websocket_clients_workload(args.clients)
    print(f"one {args.message_mb} MB message through socket.io, to 1 and to 3 clients...", flush=True)
    message = large_message_workload(args.message_mb, 1)
    message3 = large_message_workload(args.message_mb, 3)
    print("target: after <= 2x baseline")
    report(f"{args.sessions} sessions, default cap ({capped['refused']} refused)", capped)
    report(f"{args.sessions} sessions, all admitted", uncapped)
    report(f"{args.sessions} sessions, all admitted, pymalloc", pymalloc)
    report(f"{args.clients} websocket clients, print(1) each", clients)
    report(f"{args.message_mb} MB message, 1 client", message)
    report(f"{args.message_mb} MB message, 3 clients", message3)


if __name__ == "__main__":
    main()
