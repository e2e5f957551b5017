"""What the tests assert about interrupts, over `kernels_service.testing.channels`."""

from __future__ import annotations

from typing import Any

from kernels_service.testing.channels import ChannelsClient
from tests.support.waiting import became_true

#: A cell that sleeps a minute in short naps: Python runs a signal's handler only in the main
#: thread and between bytecodes, so a SIGINT that Linux hands to another of the kernel's
#: threads would wait out one long `time.sleep`; here it stops the cell within one nap.
SLEEPING_CELL = "import time\nfor _ in range(1200):\n    time.sleep(0.05)"

#: What ipykernel logs (to its stderr, which the service copies into its own) when a SIGINT
#: lands outside the user's code and escapes its message handler: that request then has
#: no execute_reply, only its `idle` status (docs/interrupts.md).
KERNEL_LOST_THE_REPLY = "KeyboardInterrupt caught in kernel"


def interrupted_reply(interrupt: Any, client: ChannelsClient, kernel_log: Any, attempts: int = 5) -> dict:
    """The execute_reply of a sleeping cell stopped by one interrupt, as the client got it.

    `interrupt()` asks for the interrupt and returns the HTTP status; `kernel_log()` returns
    the service's output so far. Each attempt runs SLEEPING_CELL, interrupts it once its
    `execute_input` arrives and reads up to its `idle` status, then asks the kernel for
    `kernel_info` on the same shell connection: replies on one connection arrive in the
    order the kernel sent them, so once that reply is in, so is the cell's, if the kernel
    sent one. No reply means the relay lost or held it back (the assertion) unless the
    kernel logged that it lost it itself (a SIGINT between `execute_input` and the user's
    code, which ipykernel 7 does not survive); then the scenario is repeated on a fresh
    cell. No sleeps and no timing: each step waits for a message or a log line.
    """
    for _ in range(attempts):
        reply = _interrupt_one_cell(interrupt, client, kernel_log)
        if reply is not None:
            return reply
    raise AssertionError(f"the kernel lost the reply of {attempts} interrupted cells in a row (it logged each)")


def _interrupt_one_cell(interrupt: Any, client: ChannelsClient, kernel_log: Any) -> dict | None:
    """One attempt of `interrupted_reply`: the cell's reply, or None if the kernel logged its loss."""
    lost_before = kernel_log().count(KERNEL_LOST_THE_REPLY)
    cell = client.send("shell", "execute_request", {"code": SLEEPING_CELL, "silent": False})
    client.recv_until(lambda m: _of(m, cell) and m["header"]["msg_type"] == "execute_input")
    assert interrupt() == 204
    seen = client.recv_until(lambda m: _of(m, cell) and _is_idle(m))
    probe = client.send("shell", "kernel_info_request", {})
    seen += client.recv_until(lambda m: _of(m, probe) and m["channel"] == "shell")
    replies = [m for m in seen if _of(m, cell) and m["channel"] == "shell"]
    if replies:
        return replies[0]
    if became_true(lambda: kernel_log().count(KERNEL_LOST_THE_REPLY) > lost_before, timeout=30):
        return None
    raise AssertionError(
        "the cell went idle and a later reply arrived, but not the cell's execute_reply, and the kernel did "
        f"not log that it lost it: the relay lost it; saw {[m['header']['msg_type'] for m in seen]}"
    )


def _of(message: dict, msg_id: str) -> bool:
    return message["parent_header"].get("msg_id") == msg_id


def _is_idle(message: dict) -> bool:
    return message["header"]["msg_type"] == "status" and message["content"]["execution_state"] == "idle"
