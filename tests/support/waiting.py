"""Waiting for conditions, never for time: each wait ends when what it waits for is true.

A test that sleeps to let the server "get there first" relies on which process runs
faster, and fails on a busy machine; these wait for the thing itself, within a deadline.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path


def became_true(condition: Callable[[], object], timeout: float = 30) -> bool:
    """Whether `condition()` became true within `timeout` seconds (checked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_until(condition: Callable[[], object], timeout: float = 30, what: str = "the condition") -> None:
    """Return once `condition()` is true (checked every 50 ms); AssertionError after `timeout` s."""
    assert became_true(condition, timeout), f"{what} did not come true in {timeout} s"


def wait_until_read(sock: socket.socket, timeout: float = 30) -> None:
    """Return once the server has read all that `sock` sent it: the server's end of the
    loopback connection has nothing left in its receive queue (Linux, /proc/net/tcp). A
    request then is in the server's hands, as far as any client can know."""
    wait_until(lambda: unread_by_server(sock) == 0, timeout, "the server reading the request")


def unread_by_server(sock: socket.socket) -> int | None:
    """Bytes `sock` sent that the server has not read yet (None if its end is not found)."""
    client_host, client_port = sock.getsockname()[:2]
    server_host, server_port = sock.getpeername()[:2]
    server_end = f"{hex_address(server_host)}:{server_port:04X}"
    client_end = f"{hex_address(client_host)}:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == server_end and fields[2] == client_end:
            return int(fields[4].split(":")[1], 16)
    return None


def hex_address(host: str) -> str:
    """An IPv4 address as /proc/net/tcp writes it (the bytes in host order, in hex)."""
    return "".join(f"{int(part):02X}" for part in reversed(host.split(".")))


async def until_true(condition: Callable[[], object], timeout: float = 10, what: str = "the condition") -> None:
    """In a coroutine: return once `condition()` is true (checked every 10 ms, the event
    loop running meanwhile); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not come true in {timeout} s"
        await asyncio.sleep(0.01)
