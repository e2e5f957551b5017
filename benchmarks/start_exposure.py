"""How long a starting service's environment can be read by another process of its uid.

    python benchmarks/start_exposure.py [--runs 20] [--serve]

Until the service makes itself undumpable (`hardening.make_undumpable`, the first act of
`launch.main`), any process of its uid, a kernel of another service among them, may read
its `/proc/<pid>/environ`, where the token and the operator's secrets may be. This starts
the service `--runs` times (`--show-config`, or with `--serve` a real start with no
kernel, stopped once it listens) from a watcher with no capabilities (as a non-root uid
is; setpriv drops them, the script must run as root to do so), which reads the service's
environment in a tight loop from the moment `Popen` returns, and prints, as medians, how
long after that the secret could still be read, and how many reads succeeded. The
service re-executes itself once at start (`memory.run_under_system_malloc`), so there
are two such windows, counted together.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

SECRET = "start-exposure-secret-0123456789"
WITHOUT_PRIVILEGES = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def watch_one_start(serve: bool) -> dict:
    """(In the watcher.) Start the service once; how long its secret stayed readable."""
    port = free_port()
    options = ["--initial-kernels=0", "--pool-size=0", f"--port={port}"] if serve else ["--show-config"]
    env = {**os.environ, "DB_PASSWORD": SECRET}
    env.pop("PYTHONMALLOC", None)  # so that the service re-executes itself, as it does by default
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "kernels_service", *options], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    popen_returned = time.perf_counter() - started
    last_read, reads = 0.0, 0
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{process.pid}/environ", "rb") as file:
                if SECRET.encode() in file.read():
                    last_read, reads = time.perf_counter() - started, reads + 1
        except OSError:
            if serve and listening(port):
                break
    process.terminate()
    process.wait(30)
    return {"popen": popen_returned, "readable_until": last_read, "reads": reads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--serve", action="store_true", help="a real start (stopped once it listens)")
    parser.add_argument("--watcher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.watcher:
        print(json.dumps([watch_one_start(args.serve) for _ in range(args.runs)]))
        return
    command = [*WITHOUT_PRIVILEGES, sys.executable, __file__, "--watcher", f"--runs={args.runs}"]
    result = subprocess.run(command + (["--serve"] if args.serve else []), capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        sys.exit(f"the watcher failed:\n{result.stderr}")
    runs = json.loads(result.stdout)
    ms = [1000 * run["readable_until"] for run in runs]
    print(f"{len(runs)} starts ({'serving' if args.serve else '--show-config'}), watched by a process of the same uid:")
    print(f"  Popen returned after (median)        {statistics.median(1000 * r['popen'] for r in runs):7.1f} ms")
    print(f"  secret readable until (median, max)  {statistics.median(ms):7.1f} ms, {max(ms):.1f} ms")
    print(f"  reads that found it (median)         {statistics.median(r['reads'] for r in runs):7.0f}")


if __name__ == "__main__":
    main()
