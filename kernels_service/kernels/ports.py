"""Loopback ports for local kernels over TCP, chosen below the machine's ephemeral range.

jupyter_client picks a kernel's ports by binding port 0, so they come from the kernel
ports' worst place: the ephemeral range (`net.ipv4.ip_local_port_range`), the one every
outgoing connection on the machine takes its source port from. The service connects to
a kernel's ports right after the launch, before the kernel has bound them, and ZeroMQ
retries every 100 ms; on the loopback such a retry can pick the very port it connects
to as its source port and connect to itself (TCP's simultaneous open). Then either the
kernel cannot bind that port and dies, or, over CurveZMQ, the socket's handshake with
itself fails and ZeroMQ gives that connection up for good: the kernel runs, and the
service never reaches it (up to 8 of 300 sockets connected early, by chance:
`benchmarks/early_connects.py`). A port below the ephemeral range is never anybody's
source port, so neither can happen.

`PortPicker` hands out free ports of its range at random, and none twice within
`hold` seconds (a kernel may take a while to bind what it was given).
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

from kernels_service.kernels.errors import ConfigError, KernelsError

EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
LINUX_EPHEMERAL_RANGE = (32768, 60999)
#: Ports below the ephemeral range the service takes from, at most; none under 1024
BAND = 12000
LOWEST = 1024
PICK_ATTEMPTS = 2000


def ephemeral_range(path: str = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The machine's ephemeral port range (Linux's default where it cannot be read)."""
    try:
        with open(path) as file:
            low, high = (int(field) for field in file.read().split())
        return low, high
    except (OSError, ValueError):
        return LINUX_EPHEMERAL_RANGE


def default_port_range(ephemeral: tuple[int, int]) -> tuple[int, int] | None:
    """The band of ports just below `ephemeral`; None if there is no room below it."""
    high = ephemeral[0] - 1
    low = max(LOWEST, high - BAND + 1)
    return (low, high) if high - low >= 100 else None


def parse_port_range(text: str) -> tuple[int, int]:
    """`LOW-HIGH` (inclusive) as two ports; ConfigError if it is not one."""
    try:
        low, high = (int(part) for part in text.split("-"))
    except ValueError:
        raise ConfigError(f"--kernel-port-range must be LOW-HIGH, not {text!r}") from None
    if not LOWEST <= low < high <= 65535:
        raise ConfigError(f"--kernel-port-range {text!r}: ports from {LOWEST} to 65535, LOW below HIGH")
    return low, high


def can_bind(ip: str, port: int) -> bool:
    """Whether a listening socket could take `ip:port` now (as ZeroMQ binds: reusing
    an address that only lingers in TIME_WAIT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((ip, port))
        except OSError:
            return False
    return True


class PortPicker:
    """Free ports of one range for the kernels of one service."""

    def __init__(
        self,
        port_range: tuple[int, int],
        hold: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        bindable: Callable[[str, int], bool] = can_bind,
    ):
        self.port_range = port_range
        self._hold = hold
        self._clock = clock
        self._bindable = bindable
        self._handed_out: dict[int, float] = {}  # port: when

    def pick(self, ip: str, count: int) -> list[int]:
        """`count` distinct ports free on `ip`, none handed out in the last `hold` s."""
        now = self._clock()
        self._handed_out = {port: when for port, when in self._handed_out.items() if now - when < self._hold}
        low, high = self.port_range
        picked: list[int] = []
        for _ in range(PICK_ATTEMPTS):
            if len(picked) == count:
                break
            port = random.randint(low, high)
            if port not in self._handed_out and port not in picked and self._bindable(ip, port):
                picked.append(port)
        else:
            if len(picked) < count:
                raise KernelsError(f"no free port for a kernel in {low}-{high}")
        for port in picked:
            self._handed_out[port] = now
        return picked
