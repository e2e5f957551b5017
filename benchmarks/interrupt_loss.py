"""How often ipykernel loses an interrupted cell's reply, measured without the service.

A kernel runs `time.sleep(20)`; once its `execute_input` arrives the kernel is
interrupted once, and the script waits for the cell's `status: idle` and then up to
3 s for its `execute_reply`. Each run is `ok` (reply within 5 s), `late` (the interrupt
took effect only when the sleep ended) or `lost` (idle, and no reply). The modes:
`signal` (jupyter_client's `interrupt_kernel`, as the service's REST interrupt does) and
`message` (an `interrupt_request` on the control channel: the kernel signals itself).

The client is jupyter_client's async client, straight to ZeroMQ: what is lost here is
the kernel's, not the relay's (docs/interrupts.md).

    python benchmarks/interrupt_loss.py --runs 40 --modes signal message
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from jupyter_client import AsyncKernelManager

CELL = "import time; time.sleep(20)"


async def one_run(manager: AsyncKernelManager, client: Any, mode: str) -> str:
    """Interrupt one sleeping cell; its outcome: ok, late or lost."""
    msg_id = client.execute(CELL)
    await next_iopub(client, msg_id, lambda m: m["msg_type"] == "execute_input")
    began = time.monotonic()
    if mode == "signal":
        await manager.interrupt_kernel()
    else:
        client.control_channel.send(client.session.msg("interrupt_request", {}))
    await next_iopub(client, msg_id, lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle")
    idle_after = time.monotonic() - began
    try:
        await asyncio.wait_for(shell_reply(client, msg_id), 3)
    except asyncio.TimeoutError:
        return "lost"
    return "late" if idle_after > 5 else "ok"


async def next_iopub(client: Any, msg_id: str, predicate: Any) -> None:
    while True:
        message = await client.get_iopub_msg(timeout=40)
        if message["parent_header"].get("msg_id") == msg_id and predicate(message):
            return


async def shell_reply(client: Any, msg_id: str) -> None:
    while (await client.get_shell_msg(timeout=40))["parent_header"].get("msg_id") != msg_id:
        pass


async def measure(mode: str, runs: int) -> dict[str, int]:
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel()
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=60)
        outcomes = {"ok": 0, "late": 0, "lost": 0}
        for _ in range(runs):
            outcomes[await one_run(manager, client, mode)] += 1
        return outcomes
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)
        assert not await manager.is_alive(), "the kernel outlived the benchmark"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--modes", nargs="+", choices=("signal", "message"), default=["signal", "message"])
    options = parser.parse_args()
    for mode in options.modes:
        outcomes = asyncio.run(measure(mode, options.runs))
        summary = ", ".join(f"{count} {kind}" for kind, count in outcomes.items())
        print(f"{mode:>7}: {options.runs} runs: {summary}", flush=True)


if __name__ == "__main__":
    main()
