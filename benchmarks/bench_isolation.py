"""What keeping kernels apart costs: kernel start and the `pass` round trip, with each
kernel as a uid of its own, with each in a Landlock room of an unprivileged service, and
with every kernel as the service's uid, against jupyter_client straight on a kernel
(the floor), in one run.

    python benchmarks/bench_isolation.py [--rounds 5] [--round-trips 200] [--quick]

Run as root (or with CAP_SETUID and CAP_SETGID): the `own uid` service is started with
`--kernel-isolation=required`, and refuses to start otherwise. Every path runs the same
kernelspec, the system's Python with our ipykernel where any uid may read it
(tests/support/shared_python.py), so that only the isolation differs:
- `direct`: jupyter_client's AsyncKernelManager and AsyncKernelClient, no service;
- `shared uid`: the service with `--kernel-isolation=none`;
- `own uid`: the service with each kernel as a uid of its own;
- `landlock`: the service run as another uid with no capability (`setpriv`, the system's
  Python with the service's dependencies where any uid may read them:
  tests/support/unprivileged.py), each kernel confined to a Landlock room of its own
  (`--kernel-isolation=required`: it refuses to start on a Linux without ABI 6);
- `unprivileged`: the same unprivileged service, from the same copy, with
  `--kernel-isolation=none`: what `landlock` costs is its ratio to this one (the copy's
  imports and the other uid are not Landlock's).
Start: from the request (POST api/kernels; for direct, `start_kernel`) to the first
`kernel_info_reply`. Round trip: execute_request `pass` until its reply and `idle`,
over the v1 websocket (direct: ZeroMQ). The paths take turns in each round, in a
rotated order; figures are medians over every start and every round trip, ratios are to
direct. --quick: one round of 20 round trips (a smoke run). Progress on stderr, figures
on stdout; both services run on free loopback ports and are stopped by PID, and their
kernels are checked gone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_relay import DirectPath, WebsocketPath, in_turn  # noqa: E402
from kernels_service.kernels.transport import Transport  # noqa: E402
from kernels_service.testing.service import Service, descendants, identified, still_running  # noqa: E402
from tests.support.shared_python import write_shared_kernelspec  # noqa: E402
from tests.support.unprivileged import (  # noqa: E402
    SERVICE_UID,
    copy_of_the_service,
    owned_directory,
    public_directory,
    unprivileged_options,
)

PATHS = ("direct", "shared uid", "own uid", "unprivileged", "landlock")
ISOLATION = {"shared uid": "--kernel-isolation=none", "own uid": "--kernel-isolation=required"}


def progress(line: str) -> None:
    print(f"[bench_isolation] {line}", file=sys.stderr, flush=True)


async def direct_start() -> tuple[float, DirectPath]:
    started = time.perf_counter()
    path = await DirectPath.start()
    return time.perf_counter() - started, path


async def service_start(service: Service) -> tuple[float, WebsocketPath, str]:
    started = time.perf_counter()
    status, _, model = service.request("POST", "api/kernels", {})
    assert status == 201, model
    client = await WebsocketPath.connect(service, model["id"], "v1")
    await client.execute("pass", kernel_info=True)
    return time.perf_counter() - started, client, model["id"]


async def round_trips(path: DirectPath | WebsocketPath, count: int) -> list[float]:
    return [(await path.execute("pass")).seconds for _ in range(count)]


async def one_round(name: str, services: dict[str, Service], count: int) -> tuple[float, list[float]]:
    """One start of a kernel on this path, its round trips, and its end."""
    if name == "direct":
        seconds, path = await direct_start()
        try:
            return seconds, await round_trips(path, count)
        finally:
            await path.close()
    service = services[name]
    seconds, client, kernel_id = await service_start(service)
    try:
        return seconds, await round_trips(client, count)
    finally:
        client.close()
        service.request("DELETE", f"api/kernels/{kernel_id}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rounds, count = (1, 20) if args.quick else (args.rounds, args.round_trips)
    jupyter_path = public_directory("bench-isolation-")  # the unprivileged service reads it too
    write_shared_kernelspec(jupyter_path)
    os.environ["JUPYTER_PATH"] = str(jupyter_path)  # the direct path's kernelspec too
    DirectPath.transport = Transport("tcp", "required")  # as the services' kernels: CurveZMQ
    options = ("--initial-kernels=0", "--pool-size=0")
    services = {name: Service(*options, flag, env={"JUPYTER_PATH": str(jupyter_path)})
                for name, flag in ISOLATION.items()}  # fmt: skip
    home = owned_directory(SERVICE_UID, "bench-isolation-home-")
    code = copy_of_the_service(public_directory("bench-code-"))
    unprivileged = unprivileged_options(code, jupyter_path, home)
    services["landlock"] = Service(*options, "--kernel-isolation=required", **unprivileged)
    services["unprivileged"] = Service(*options, "--kernel-isolation=none", **unprivileged)
    starts: dict[str, list[float]] = {name: [] for name in PATHS}
    trips: dict[str, list[float]] = {name: [] for name in PATHS}
    try:
        for number in range(rounds):
            for name in in_turn(list(PATHS), number):
                progress(f"round {number + 1}/{rounds}: {name}")
                seconds, times = await one_round(name, services, count)
                starts[name].append(seconds)
                trips[name].extend(times)
    finally:
        children = identified(pid for service in services.values() for pid in descendants(service.pid))
        for service in services.values():
            service.stop()
        for directory in (jupyter_path, home, code):
            shutil.rmtree(directory, ignore_errors=True)
    report(starts, trips)
    leaked = still_running(children)
    if leaked:
        sys.exit(f"kernel processes outlived the services: {leaked}")


def report(starts: dict[str, list[float]], trips: dict[str, list[float]]) -> None:
    start_floor, trip_floor = statistics.median(starts["direct"]), statistics.median(trips["direct"])
    for name in PATHS:
        start, trip = statistics.median(starts[name]), statistics.median(trips[name])
        low, high = min(starts[name]), max(starts[name])
        print(
            f"{name:12} start median {start * 1000:7.1f} ms ({start / start_floor:.2f}x direct, "
            f"{len(starts[name])} starts, {low * 1000:.0f}-{high * 1000:.0f} ms)  pass round trip median "
            f"{trip * 1000:6.2f} ms ({trip / trip_floor:.2f}x direct, {len(trips[name])} round trips)"
        )
    for name, base in (("own uid", "shared uid"), ("landlock", "unprivileged")):
        start, trip = statistics.median(starts[name]), statistics.median(trips[name])
        base_start, base_trip = statistics.median(starts[base]), statistics.median(trips[base])
        print(f"{name} / {base}: start {start / base_start:.2f}x, pass round trip {trip / base_trip:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
