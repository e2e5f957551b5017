"""Hunting the fan-out stall: bench_relay's fan-out, repeated under pressure.

    python benchmarks/fanout_stall.py [--runs 10] [--watchers 50] [--lines 20000]
        [--pressure none|busy|sigstop|both] [--kernel-transport auto|curve|ipc|tcp]

Once, a full bench_relay run saw 48 of its 50 fan-out watchers stop receiving a
20000-line flood while the client that ran it got everything. This runs that fan-out
(`bench_relay.measure_fanout`: watchers in processes of their own, v1 websockets) again
and again, with the service starved of CPU the ways a busy machine starves it:
- busy: one busy loop per core beside everything, for the whole run;
- sigstop: while each flood runs, the service stopped (SIGSTOP) for 20 to 200 ms at a
  time, then continued, at random moments (seeded: each run is the same);
- both.
Each run is one line: the seconds until the last watcher had the last line, or, for a
run where a watcher got nothing for `--watcher-timeout` seconds, how far each failed
watcher got. Then how many runs stalled. The service is on a free loopback port and is
stopped by PID; its kernels are checked gone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_relay import measure_fanout  # noqa: E402
from kernels_service.kernels.transport import POLICIES  # noqa: E402
from kernels_service.testing.service import Service, descendants, identified, still_running  # noqa: E402

BUSY_LOOP = "while True: pass"


@contextmanager
def busy_cores(count: int) -> Iterator[None]:
    """`count` processes spinning on the CPU, stopped on the way out."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


class Stopper(threading.Thread):
    """Stops the process `pid` (SIGSTOP) for 20-200 ms at a time, 50-300 ms apart, until
    told to end; it is always left running."""

    def __init__(self, pid: int, seed: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.random = random.Random(seed)
        self.done = threading.Event()
        self.stops = 0

    def run(self) -> None:
        while not self.done.wait(self.random.uniform(0.05, 0.3)):
            os.kill(self.pid, signal.SIGSTOP)
            time.sleep(self.random.uniform(0.02, 0.2))
            os.kill(self.pid, signal.SIGCONT)
            self.stops += 1

    def end(self) -> None:
        self.done.set()
        self.join()
        os.kill(self.pid, signal.SIGCONT)


IOPUB_READ = re.compile(r'^kernels_service_messages_total\{channel="iopub",direction="from_kernel"\} (\S+)$', re.M)


def iopub_read(service: Service) -> float:
    """iopub messages the service has read from its kernels (its metrics)."""
    status, _, body = service.request("GET", "metrics")
    text = body.decode() if isinstance(body, bytes) else str(body)
    found = IOPUB_READ.search(text)
    return float(found.group(1)) if status == 200 and found else float("nan")


async def one_run(service: Service, args: argparse.Namespace, number: int) -> tuple[bool, str]:
    """One fan-out under the chosen pressure: whether it stalled, and what to print."""
    before = iopub_read(service)
    stopper = Stopper(service.pid, seed=number) if args.pressure in ("sigstop", "both") else None
    if stopper is not None:
        stopper.start()
    try:
        seconds = await measure_fanout(service, args.watchers, args.lines, args.watcher_timeout)
        said = f"{seconds:.2f} s"
        stalled = False
    except AssertionError as failure:
        said = str(failure).splitlines()[0]
        stalled = True
    finally:
        if stopper is not None:
            stopper.end()
    if stopper is not None:
        said += f" ({stopper.stops} stops of the service)"
    said += f"; the service read {iopub_read(service) - before:.0f} iopub messages from the kernel"
    return stalled, said


async def run_all(args: argparse.Namespace) -> int:
    service = Service(
        "--initial-kernels=0",
        "--pool-size=0",
        f"--kernel-transport={args.kernel_transport}",
        "--KernelsService.websocket_ping_interval=0",
    )
    print(f"service pid {service.pid}; {args.watchers} watchers, {args.lines} lines, pressure {args.pressure}")
    stalls = 0
    try:
        with busy_cores((os.cpu_count() or 2) if args.pressure in ("busy", "both") else 0):
            for number in range(args.runs):
                stalled, said = await one_run(service, args, number)
                stalls += stalled
                print(f"run {number + 1}/{args.runs}: {'STALLED ' if stalled else ''}{said}", flush=True)
    finally:
        children = identified(descendants(service.pid))
        service.stop()
    leaked = still_running(children)
    print(f"{stalls} of {args.runs} runs stalled")
    if leaked:
        sys.exit(f"kernel processes outlived the service: {leaked}")
    return stalls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--pressure", choices=("none", "busy", "sigstop", "both"), default="both")
    parser.add_argument("--kernel-transport", choices=POLICIES, default="auto")
    parser.add_argument("--watcher-timeout", type=float, default=60, help="seconds of silence that fail a watcher")
    stalls = asyncio.run(run_all(parser.parse_args()))
    sys.exit(1 if stalls else 0)


if __name__ == "__main__":
    main()
