"""Reading one kernel's iopub, once, for all its clients.

One SUB socket per kernel, with no receive high-water mark (see `sockets.connect_iopub`),
read from the event loop's reader callback on ZeroMQ's file descriptor, which hands each
signed message on, in order. No future or task per read: output comes at thousands of
messages a second, and zmq.asyncio's machinery per read was a large part of the relay's
cost; a flood is read in bursts (ReadPacer). After a restart on new ports, `reconnect`
replaces the socket; the relay decides what to do with each message.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

import zmq

from kernels_service.protocol import KernelMessage
from kernels_service.protocol.wire import Signer
from kernels_service.relay.sockets import MAX_BURST, connect_iopub, hand_on


class ReadPacer:
    """Reads a fast stream of output in bursts, not one message at a time.

    A kernel that floods iopub sends a message every few hundred microseconds, and a relay
    that wakes for each one spends its CPU on wake-ups: a poll, a callback, a system call
    per client, for every message; on a small machine that CPU is the kernel's. Past a
    sustained rate of BUSY_LEVEL / DECAY (1000) messages a second, the reader waits HOLD
    seconds before its next read and then takes everything that came meanwhile at once.
    Round trips stay far below that rate (a kernel answers a few hundred a second, each
    with three iopub messages), and a burst of a few messages does not reach the level,
    so they are never held; in a flood, a message waits at most HOLD seconds more.
    """

    DECAY = 0.020
    BUSY_LEVEL = 20.0
    HOLD = 0.002

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._level = 0.0  # messages read lately, decaying with time constant DECAY
        self._last = clock()

    def read(self, messages: int) -> None:
        """Count a burst of `messages` just read."""
        now = self._clock()
        self._level = self._level * math.exp((self._last - now) / self.DECAY) + messages
        self._last = now

    def hold(self) -> float:
        """Seconds to wait before the next read: HOLD in a flood, else 0."""
        level = self._level * math.exp((self._last - self._clock()) / self.DECAY)
        return self.HOLD if level >= self.BUSY_LEVEL else 0.0


class IopubReader:
    """Reads a kernel's iopub and calls `on_message` with each message, in order.

    ZeroMQ's descriptor is readable when the socket's state may have changed, not while
    messages wait: whoever is woken must ask the socket (`EVENTS`) and read until it has
    nothing, or it is not woken again. So every wake-up either drains the socket (up to
    MAX_BURST messages, the rest in the next turn of the loop) or, while a drain is
    already due (held by the pacer, or continuing), just acknowledges the wake-up.
    """

    def __init__(self, kernel_id: str, manager: Any, signer: Signer, on_message: Callable[[KernelMessage], None]):
        self.kernel_id = kernel_id
        self._manager = manager
        self._signer = signer
        self._on_message = on_message
        self._socket = connect_iopub(manager.context, manager.get_connection_info())
        self._reading: zmq.Socket | None = None  # the same socket, read without asyncio
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pacer = ReadPacer()
        self._drain_due: asyncio.Handle | None = None

    def start(self) -> None:
        """Read what is queued now, then whenever ZeroMQ signals the socket's descriptor."""
        self._reading = zmq.Socket.shadow(self._socket.underlying)
        self._fd = self._reading.getsockopt(zmq.FD)
        self._loop = loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._woken)
        self._drain_due = loop.call_soon(self._drain)

    def _woken(self) -> None:
        if self._reading is None or self._loop is None:
            return
        if self._drain_due is None:
            hold = self._pacer.hold()
            if not hold:
                self._drain()
                return
            self._drain_due = self._loop.call_later(hold, self._drain)
        try:
            self._reading.getsockopt(zmq.EVENTS)  # acknowledged; the drain due reads it all
        except zmq.ZMQError:  # closed under us
            return

    def _drain(self) -> None:
        self._drain_due = None
        reading, loop = self._reading, self._loop
        if reading is None or loop is None:
            return
        count = 0
        try:
            # a message handed on may close or replace the socket: never touch it after that
            while self._reading is reading and reading.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                if count == MAX_BURST:  # the loop's other work gets a turn first
                    self._drain_due = loop.call_soon(self._drain)
                    break
                hand_on(reading.recv_multipart(zmq.NOBLOCK), "iopub", self._signer, self.kernel_id, self._on_message)
                count += 1
        except zmq.ZMQError:  # closed under us (by a message's consequences, or a restart)
            return
        finally:
            self._pacer.read(count)

    def reconnect(self, manager: Any) -> None:
        """The kernel moved to new ports: a new socket from `manager`'s connection info (the
        kernel's manager now: another object after a takeover or a restart another replica
        made)."""
        self._manager = manager
        self.close()
        self._socket = connect_iopub(self._manager.context, self._manager.get_connection_info())
        self.start()

    def close(self) -> None:
        if self._drain_due is not None:
            self._drain_due.cancel()
            self._drain_due = None
        if self._reading is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)  # (the loop need not be running)
        self._reading = None
        self._socket.close(linger=0)
