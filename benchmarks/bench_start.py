"""Kernel start, measured three ways in one run: jupyter_client directly, the service
launching a kernel, the service handing one out of its warm pool.

    python benchmarks/bench_start.py [--repeats 5]

Each figure is the time from the request to the kernel's first `kernel_info_reply` (for
the service: POST api/kernels, then a v1 websocket). The three take turns; medians.
Progress goes to stderr, the figures to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_relay import WebsocketPath  # noqa: E402
from kernels_service.testing.service import Service, descendants, identified, still_running  # noqa: E402


def progress(line: str) -> None:
    print(f"[bench_start] {line}", file=sys.stderr, flush=True)


async def direct_start() -> float:
    start = time.perf_counter()
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel()
    client = manager.client()
    client.start_channels()
    await client.wait_for_ready(timeout=60)
    elapsed = time.perf_counter() - start
    client.stop_channels()
    await manager.shutdown_kernel(now=True)
    return elapsed


async def service_start(service: Service, pooled: bool) -> float:
    """Pooled: once the pool is ready again (the wait is not timed); unpooled: the request
    asks for a variable no pooled kernel has, so the kernel is launched."""
    while pooled and service.request("GET", "api/status")[2]["pool"] < 1:
        await asyncio.sleep(0.05)
    body = {} if pooled else {"env": {"KERNEL_BENCH_UNPOOLED": "1"}}
    start = time.perf_counter()
    status, _, model = service.request("POST", "api/kernels", body)
    assert status == 201, model
    client = await WebsocketPath.connect(service, model["id"], "v1")
    await client.execute("pass", kernel_info=True)
    elapsed = time.perf_counter() - start
    client.close()
    service.request("DELETE", f"api/kernels/{model['id']}")
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    service = Service("--initial-kernels=0")
    times: dict[str, list[float]] = {"direct": [], "launched": [], "pooled": []}
    try:
        for repeat in range(args.repeats):
            progress(f"start {repeat + 1}/{args.repeats}: direct, launched, pooled")
            times["direct"].append(await direct_start())
            times["launched"].append(await service_start(service, pooled=False))
            times["pooled"].append(await service_start(service, pooled=True))
    finally:
        children = identified(descendants(service.pid))
        service.stop()
    direct = statistics.median(times["direct"])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:9} median {median * 1000:7.1f} ms  ({median / direct:.2f}x direct, {len(values)} starts)")
    leaked = still_running(children)
    if leaked:
        sys.exit(f"kernel processes outlived the service: {leaked}")


if __name__ == "__main__":
    asyncio.run(main())
