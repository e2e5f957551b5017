"""The ways a local kernel can be kept from other users, measured side by side: why ipc.

    python benchmarks/kernel_transports.py [--rounds 3] [--quick]

jupyter_client's AsyncKernelClient straight on a kernel of its own (no service), over:
- `tcp`: loopback ports, as jupyter_client does by default: any user of the machine can
  connect (the baseline, and what `--kernel-transport=tcp` gives);
- `tcp+curve`: loopback ports with CurveZMQ (jupyter_client 8.9+, ipykernel 7): the
  traffic is encrypted and a peer must hold the key, which is in the connection file;
- `ipc`: unix sockets in a private (0700) directory: other users cannot connect at all
  (the service's default).
Workloads, the transports taking turns within each round: the `pass` round trip
(execute_request until its reply and `idle`; median of 300) and 100 `display_data` of
1 MB (MB/s). Figures are medians over rounds; ratios are to tcp in the same round.
--quick: one round of 30 round trips and 10 displays (a smoke run, noisy figures).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
import uuid
from typing import Any

from jupyter_client.manager import AsyncKernelManager

TRANSPORTS = ("tcp", "tcp+curve", "ipc")
ROUND_TRIPS = 300
DISPLAYS = 100
MB = 1_000_000


async def start(transport: str, socket_dir: str) -> tuple[AsyncKernelManager, Any]:
    """A kernel over `transport`, and its client, ready."""
    options: dict[str, Any] = {"kernel_name": "python3", "transport": transport.split("+")[0]}
    if transport.endswith("+curve"):
        options["transport_encryption"] = "required"
    manager = AsyncKernelManager(**options)
    if transport == "ipc":
        manager.ip = os.path.join(socket_dir, uuid.uuid4().hex[:12])
    await manager.start_kernel()
    client = manager.client()
    client.start_channels()
    await client.wait_for_ready(timeout=60)
    return manager, client


async def run_until_idle(client: Any, code: str) -> int:
    """Execute `code`; the bytes of display data received until its `idle`."""
    msg_id = client.execute(code)
    received, replied = 0, False
    while True:
        message = await client.get_iopub_msg(timeout=120)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        if message["msg_type"] == "display_data":
            received += len(message["content"]["data"]["text/plain"])
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            break
    while not replied:
        reply = await client.get_shell_msg(timeout=120)
        replied = reply["parent_header"].get("msg_id") == msg_id
    return received


async def round_trip(client: Any, count: int) -> float:
    """Median seconds of a `pass` round trip, over `count`."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await run_until_idle(client, "pass")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def display_rate(client: Any, count: int) -> float:
    """MB/s of `count` display_data of 1 MB each, every byte counted."""
    code = (
        "from IPython.display import display\n"
        f"for _ in range({count}):\n    display({{'text/plain': 'x' * {MB}}}, raw=True)"
    )
    started = time.perf_counter()
    received = await run_until_idle(client, code)
    seconds = time.perf_counter() - started
    assert received == count * MB, received
    return received / MB / seconds


def spread(ratios: list[float]) -> str:
    return f"{ratios[0]:.2f}-{ratios[-1]:.2f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one small round: a smoke run")
    args = parser.parse_args()
    rounds, round_trips, displays = (1, 30, 10) if args.quick else (max(1, args.rounds), ROUND_TRIPS, DISPLAYS)
    socket_dir = tempfile.mkdtemp(prefix="transports-")
    kernels = {}
    try:
        for transport in TRANSPORTS:
            kernels[transport] = await start(transport, socket_dir)
        figures: dict[str, dict[str, list[float]]] = {t: {"rtt": [], "rate": []} for t in TRANSPORTS}
        for number in range(rounds):
            order = TRANSPORTS[number % 3 :] + TRANSPORTS[: number % 3]
            for transport in order:
                client = kernels[transport][1]
                figures[transport]["rtt"].append(await round_trip(client, round_trips))
                figures[transport]["rate"].append(await display_rate(client, displays))
        print(f"medians of {rounds} round(s); ratios to tcp, the median of each round's")
        print(f"{'transport':<12}{'pass round trip (ms)':>24}{f'display {displays} x 1 MB (MB/s)':>30}")
        for transport in TRANSPORTS:
            rtt = figures[transport]["rtt"]
            rate = figures[transport]["rate"]
            rtt_ratios = sorted(a / b for a, b in zip(rtt, figures["tcp"]["rtt"], strict=True))
            rate_ratios = sorted(b / a for a, b in zip(rate, figures["tcp"]["rate"], strict=True))
            print(
                f"{transport:<12}{statistics.median(rtt) * 1000:>16.2f}  {statistics.median(rtt_ratios):.2f}x"
                f"{statistics.median(rate):>22.1f}  {statistics.median(rate_ratios):.2f}x"
                f"   (rounds' ratios: {spread(rtt_ratios)}; {spread(rate_ratios)})"
            )
    finally:
        for manager, client in kernels.values():
            client.stop_channels()
            await manager.shutdown_kernel(now=True)
        shutil.rmtree(socket_dir, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
