"""What serving a kernel from another replica costs, over a shared PostgreSQL store: the
`pass` round trip through the kernel's owner and through a replica that does not own it
(and relays it from the stored connection information), the lifecycle requests a
non-owner forwards to the owner, and how stale one replica's listing is of another's
kernel; against jupyter_client straight on a kernel (the floor) and a service with no
store, in one run.

    python benchmarks/bench_replicas.py [--rounds 5] [--round-trips 200] [--samples 20] [--quick]

A PostgreSQL server of its own (Debian's, made in a temporary directory as the tests make
it: tests/support/postgres.py), three replicas on it (`owner`, `other`, `lister`) and
one service without a store (`single`), all on free loopback ports, stopped by PID, their kernels
checked gone. Paths:
- `direct`: jupyter_client's AsyncKernelManager and AsyncKernelClient, CurveZMQ over
  loopback TCP as the services' kernels;
- `single`: the v1 websocket of a service without a store, on its own kernel;
- `owner`: the v1 websocket of the replica that owns the kernel;
- `other`: the v1 websocket of the other replica, on the same kernel.
Round trip: execute_request `pass` until its reply and `idle`; the paths take turns in a
rotated order each round. Lifecycle: `POST api/kernels/<id>/interrupt` and `GET
api/kernels/<id>` answered by the owner, and by the other replica (the interrupt
forwarded over HTTP to the owner; the GET read from the store). Staleness: from the
moment a client of the owner sees a kernel go `busy` to the moment a third replica
(`lister`, with no client of that kernel: the store is all it knows) lists it `busy`.
Figures are medians; ratios to direct, and other/owner. --quick: one round of 20 round
trips and 5 samples (a smoke run). Progress on stderr, figures on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_relay import DirectPath, WebsocketPath, execute_request, in_turn  # noqa: E402
from kernels_service.kernels.fleet import REFRESH  # noqa: E402
from kernels_service.kernels.transport import Transport  # noqa: E402
from kernels_service.testing.service import Service, descendants, identified, still_running  # noqa: E402
from tests.support.postgres import postgres_cluster  # noqa: E402

PATHS = ("direct", "single", "owner", "other")
QUIET = ("--initial-kernels=0", "--pool-size=0")


def progress(line: str) -> None:
    print(f"[bench_replicas] {line}", file=sys.stderr, flush=True)


def milliseconds(values: list[float]) -> float:
    return statistics.median(values) * 1000


def timed_request(service: Service, method: str, path: str, expected: int) -> float:
    started = time.perf_counter()
    status, _, body = service.request(method, path, {} if method == "POST" else None)
    seconds = time.perf_counter() - started
    assert status == expected, (method, path, status, body)
    return seconds


async def listed_as(replica: Service, kernel: str, state: str, timeout: float = 10) -> None:
    """Until `replica` lists the kernel in `state` (polled every 10 ms)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        listed = {k["id"]: k["execution_state"] for k in replica.request("GET", "api/kernels")[2]}
        if listed.get(kernel) == state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the replica never listed the kernel {state}")


async def staleness(owner_client: WebsocketPath, other: Service, kernel: str) -> float:
    """Seconds from the owner's client seeing `busy` to another replica listing it busy
    (one with no client of that kernel: it knows the state from the store alone)."""
    await listed_as(other, kernel, "idle")  # not a `busy` left from the last sample
    await asyncio.sleep(random.uniform(0, REFRESH))  # any phase of the owner's writes, not just after one
    request = execute_request("import time; time.sleep(3)", owner_client.session)
    await owner_client.send_shell(request)
    while True:
        channel, parent, msg_type, content = await owner_client.receive()
        if parent == request["header"]["msg_id"] and msg_type == "status" and content["execution_state"] == "busy":
            break
    seen = time.perf_counter()
    await listed_as(other, kernel, "busy")
    stale = time.perf_counter() - seen
    while True:  # the rest of that cell, so the next measure starts idle
        channel, parent, msg_type, content = await owner_client.receive()
        if channel == "shell" and parent == request["header"]["msg_id"]:
            break
    return stale


async def measure(services: dict[str, Service], rounds: int, count: int, samples: int) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {name: [] for name in PATHS}
    owner, other, single = services["owner"], services["other"], services["single"]
    kernel = owner.start_kernel()
    own_kernel = single.start_kernel()
    direct = await DirectPath.start()
    paths = {
        "direct": direct,
        "single": await WebsocketPath.connect(single, own_kernel, "v1"),
        "owner": await WebsocketPath.connect(owner, kernel, "v1"),
        "other": await WebsocketPath.connect(other, kernel, "v1"),
    }
    try:
        for name in ("single", "owner", "other"):
            await paths[name].execute("pass", kernel_info=True)
        for number in range(rounds):
            progress(f"round {number + 1}/{rounds}: {count} round trips per path, taking turns")
            order = in_turn(list(PATHS), number)
            for _ in range(count):
                for name in order:
                    figures[name].append((await paths[name].execute("pass")).seconds)
        progress(f"{samples} interrupts and GETs on each replica, {max(2, samples // 4)} staleness samples")
        for name in ("owner", "other"):
            service = services[name]
            figures[f"interrupt {name}"] = [
                timed_request(service, "POST", f"api/kernels/{kernel}/interrupt", 204) for _ in range(samples)
            ]
            figures[f"get {name}"] = [
                timed_request(service, "GET", f"api/kernels/{kernel}", 200) for _ in range(samples)
            ]
        lister, times = services["lister"], max(2, samples // 4)
        figures["staleness"] = [await staleness(paths["owner"], lister, kernel) for _ in range(times)]
    finally:
        for name in ("single", "owner", "other"):
            paths[name].close()
        await direct.close()
        owner.request("DELETE", f"api/kernels/{kernel}")
        single.request("DELETE", f"api/kernels/{own_kernel}")
    return figures


def report(figures: dict[str, list[float]]) -> None:
    direct = milliseconds(figures["direct"])
    for name in PATHS:
        value = milliseconds(figures[name])
        print(f"{name:<7} pass round trip median {value:8.2f} ms  ({value / direct:.2f}x direct)")
    owner, other = milliseconds(figures["owner"]), milliseconds(figures["other"])
    print(f"other / owner: round trip {other / owner:.2f}x")
    for what in ("interrupt", "get"):
        mine, forwarded = milliseconds(figures[f"{what} owner"]), milliseconds(figures[f"{what} other"])
        print(
            f"{what:<9} median owner {mine:7.2f} ms  other {forwarded:7.2f} ms  (other / owner {forwarded / mine:.2f}x)"
        )
    stale = figures["staleness"]
    print(f"staleness median {milliseconds(stale):7.1f} ms  (max {max(stale) * 1000:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as one JSON line")
    args = parser.parse_args()
    rounds, count, samples = (1, 20, 5) if args.quick else (args.rounds, args.round_trips, args.samples)
    DirectPath.transport = Transport("tcp", "required")  # as the services' kernels: CurveZMQ
    with postgres_cluster() as cluster:
        store = ("--keep-kernels", f"--kernel-store={cluster.url()}")
        services: dict[str, Service] = {}
        try:
            services["single"] = Service(*QUIET)
            services["owner"] = Service(*QUIET, *store, "--replica-name=owner", env=cluster.environment())
            services["other"] = Service(*QUIET, *store, "--replica-name=other", env=cluster.environment())
            services["lister"] = Service(*QUIET, *store, "--replica-name=lister", env=cluster.environment())
            figures = asyncio.run(measure(services, rounds, count, samples))
        finally:
            children = identified(pid for service in services.values() for pid in descendants(service.pid))
            for service in services.values():
                service.stop()
    report(figures)
    if args.json:
        print(json.dumps(figures))
    leaked = still_running(children)
    if leaked:
        sys.exit(f"kernel processes outlived the services: {leaked}")


if __name__ == "__main__":
    main()
