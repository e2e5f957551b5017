"""What losing or upgrading a replica costs a kernel's users (issue 28): the time from
`kill -9` of a kernel's owner until another replica answers for it, and the longest gap a
client running cells in a loop through the balancer sees while every replica is
restarted in turn; against the same loop with no restart and jupyter_client straight on
a kernel (the floor), in one run.

    python benchmarks/bench_takeover.py [--kills 10] [--lease-time 5] [--loop-seconds 10] [--quick]

A PostgreSQL server of its own (Debian's, in a temporary directory: tests/support/postgres.py),
three replicas on it and HAProxy before them with the project's configuration
(deploy/haproxy/haproxy.cfg), all on free loopback ports, stopped by PID, their kernels
checked gone. Figures:
- `kill -9 -> cell`: a kernel started on one replica, `x = 42`; the owner killed; until
  `print(x)` answers through another replica (it relays the kernel at once: no takeover
  needed to run code);
- `kill -9 -> owner`: until an interrupt through another replica answers 204: the kernel
  taken over (its lease ran out: bounded by --lease-time plus a refresh). The killed
  replica is started again (same name and port) before the next sample;
- `loop`: a client (tests/support/moving_client.py, which comes back with its session as
  JupyterLab's does) runs `n += 1` through the balancer: the gaps between consecutive
  replies, for --loop-seconds with no restart, then while each of the three replicas is
  stopped with SIGTERM (a drain) and started again, one at a time;
- `direct`: jupyter_client's AsyncKernelClient runs the same cell on its own kernel.
Medians and maxima; ratios to direct and to the lease time. --quick: 2 kills with a
2 s lease, 2 s loops (a smoke run). Progress on stderr, figures on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.bench_relay import DirectPath  # noqa: E402
from kernels_service.kernels.transport import Transport  # noqa: E402
from kernels_service.testing.channels import stream_text  # noqa: E402
from kernels_service.testing.service import Service, still_running  # noqa: E402
from tests.support.balancer import Balancer  # noqa: E402
from tests.support.kernel_code import run_code  # noqa: E402
from tests.support.moving_client import MovingClient  # noqa: E402
from tests.support.postgres import postgres_cluster  # noqa: E402
from tests.support.replicas import Replicas  # noqa: E402


def progress(line: str) -> None:
    print(f"[bench_takeover] {line}", file=sys.stderr, flush=True)


def until(condition, timeout: float, poll: float = 0.02) -> float:
    """Seconds until `condition()` holds (exceptions count as not yet)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            if condition():
                return time.perf_counter() - started
        except Exception:  # noqa: BLE001 - a replica that does not answer yet
            pass
        time.sleep(poll)
    raise AssertionError(f"not within {timeout} s")


def kill_samples(replicas: Replicas, services: list[Service], kills: int, lease: float) -> dict[str, list[float]]:
    """kill -9 of a kernel's owner, `kills` times (each replica in turn is the owner)."""
    figures: dict[str, list[float]] = {"kill_cell": [], "kill_owner": []}
    for sample in range(kills):
        index = sample % len(services)
        owner, other = services[index], services[(index + 1) % len(services)]
        kernel = owner.start_kernel()
        run_code(owner, kernel, "x = 42")
        kernels = replicas.kernel_processes()
        owner.process.kill()
        killed = time.perf_counter()
        owner.process.wait(30)
        until(lambda: run_code(other, kernel, "print(x)") == "42\n", 60)  # noqa: B023
        figures["kill_cell"].append(time.perf_counter() - killed)
        until(lambda: other.request("POST", f"api/kernels/{kernel}/interrupt")[0] == 204, lease + 30)  # noqa: B023
        figures["kill_owner"].append(time.perf_counter() - killed)
        cell, owned = figures["kill_cell"][-1], figures["kill_owner"][-1]
        progress(f"kill {sample + 1}/{kills}: cell {cell:.3f} s, owner {owned:.3f} s")
        assert other.request("DELETE", f"api/kernels/{kernel}")[0] == 204
        services[index] = replicas.start(f"--lease-time={lease}", name=f"replica-{index}", port=owner.port)
        assert not still_running(kernels), "a kernel outlived its DELETE"
    return figures


def loop_gaps(front: Balancer, kernel: str, seconds: float, during=None) -> list[float]:
    """Gaps between consecutive replies of a looping client through the balancer, for
    `seconds` (or, with `during`, while it runs in another thread, and 1 s after)."""
    client = MovingClient(front, kernel)
    gaps: list[float] = []
    stop = threading.Event()
    failures: list[BaseException] = []

    def loop() -> None:
        try:
            reply, _ = client.execute("n = 0")
            last, count = time.perf_counter(), 0
            while not stop.is_set():
                reply, outputs = client.execute("n += 1; print(n)")
                count += 1
                said = stream_text(outputs)
                assert reply["content"]["status"] == "ok" and said == f"{count}\n", (reply["content"], said, count)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            failures.append(error)

    runner = threading.Thread(target=loop)
    runner.start()
    try:
        if during is None:
            time.sleep(seconds)
        else:
            during()
            time.sleep(1)
    finally:
        stop.set()
        runner.join(120)
        client.close()
    if failures:
        raise failures[0]
    return gaps


def rolling_restart(replicas: Replicas, services: list[Service], lease: float):
    def restart_each() -> None:
        for index, service in enumerate(list(services)):
            time.sleep(1)
            assert service.stop(signal.SIGTERM) == 0
            services[index] = replicas.start(f"--lease-time={lease}", name=f"replica-{index}", port=service.port)
            progress(f"replica-{index} restarted")

    return restart_each


async def direct_round_trips(count: int) -> list[float]:
    DirectPath.transport = Transport("tcp", "required")  # as the services' kernels: CurveZMQ
    path = await DirectPath.start()
    try:
        await path.execute("n = 0")
        return [(await path.execute("n += 1; print(n)")).seconds for _ in range(count)]
    finally:
        await path.close()


def report(figures: dict[str, list[float]], lease: float) -> None:
    direct = statistics.median(figures["direct"])
    print(f"direct    loop cell median {direct * 1000:.2f} ms")
    for name, label in (("kill_cell", "kill -9 -> cell  "), ("kill_owner", "kill -9 -> owner ")):
        values = figures[name]
        print(
            f"{label} median {statistics.median(values):.3f} s, max {max(values):.3f} s "
            f"({statistics.median(values) / lease:.2f}x the lease time of {lease:g} s; n={len(values)})"
        )
    for name, label in (("steady", "loop, no restart  "), ("rolling", "loop, rolling     ")):
        values = figures[name]
        median = statistics.median(values)
        print(
            f"{label} gap median {median * 1000:.2f} ms ({median / direct:.2f}x direct), "
            f"longest {max(values) * 1000:.1f} ms ({max(values) / direct:.0f}x direct; n={len(values)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--lease-time", type=float, default=5.0)
    parser.add_argument("--loop-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as one JSON line")
    args = parser.parse_args()
    kills, lease, seconds = (2, 2.0, 2.0) if args.quick else (args.kills, args.lease_time, args.loop_seconds)
    figures: dict[str, list[float]] = {"direct": asyncio.run(direct_round_trips(50 if args.quick else 500))}
    with postgres_cluster() as cluster:
        replicas = Replicas(cluster, cluster.new_database())
        try:
            services = [replicas.start(f"--lease-time={lease}") for _ in range(3)]
            figures.update(kill_samples(replicas, services, kills, lease))
            front = Balancer(services)
            try:
                kernel = services[0].start_kernel()
                figures["steady"] = loop_gaps(front, kernel, seconds)
                progress(f"steady loop: {len(figures['steady'])} cells")
                figures["rolling"] = loop_gaps(front, kernel, seconds, rolling_restart(replicas, services, lease))
                progress(f"rolling loop: {len(figures['rolling'])} cells")
            finally:
                front.stop()
        finally:
            replicas.end()
    report(figures, lease)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
