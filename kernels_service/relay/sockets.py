"""The relay's ZeroMQ sockets: creating them from a kernel's connection info, reading them."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from kernels_service.protocol import KernelMessage, ProtocolError
from kernels_service.protocol.wire import Signer, from_frames

log = logging.getLogger("kernels_service.relay")


def channel_url(info: dict[str, Any], channel: str) -> str:
    """The ZeroMQ URL of one kernel channel, as jupyter_client builds it."""
    port = info[f"{channel}_port"]
    if info.get("transport", "tcp") == "tcp":
        return f"tcp://{info['ip']}:{port}"
    return f"{info['transport']}://{info['ip']}-{port}"


def connect_iopub(context: zmq.asyncio.Context, info: dict[str, Any]) -> zmq.asyncio.Socket:
    """A SUB socket on the kernel's iopub with no receive high-water mark.

    A PUB socket silently drops everything for a subscriber past its HWM, the `idle`
    status too; the relay must never be that subscriber, so its queue is unbounded
    here and memory is bounded per client further down instead.
    """
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, 0)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    socket.connect(channel_url(info, "iopub"))
    return socket


#: Messages read at once from what is already queued, before the loop gets a turn again.
MAX_BURST = 64


class ReadPacer:
    """Reads a fast stream of output in bursts, not one message at a time.

    A kernel that floods iopub sends a message every few hundred microseconds, and a relay
    that wakes for each one spends its CPU on wake-ups: a poll, a future, a system call
    per client, for every message; on a small machine that CPU is the kernel's. Past a
    rate of about BUSY_LEVEL messages per DECAY seconds, the reader waits HOLD seconds
    before its next read and then takes everything that came meanwhile at once. A round
    trip's three or four iopub messages never reach that rate, so they are never held;
    in a flood, a message waits at most HOLD seconds more.
    """

    DECAY = 0.004
    BUSY_LEVEL = 8.0
    HOLD = 0.001

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


async def read_messages(
    socket: zmq.asyncio.Socket,
    channel: str,
    signer: Signer,
    kernel_id: str,
    on_message: Callable[[KernelMessage], None],
    pacer: ReadPacer | None = None,
) -> None:
    """Hand each signed message a kernel sends on `socket` to `on_message`, in order, until
    the socket closes or the task is cancelled; a message that fails its check is logged
    and dropped (it cannot be the kernel's: the key signs every real one).

    One awaited receive, then what is already queued (up to MAX_BURST messages) is read
    straight from the same socket without asyncio: a kernel's output comes in bursts, and
    zmq.asyncio's future and callback per message was a third of the relay's time in one.
    With a `pacer`, a flood is read in bursts (see ReadPacer)."""
    queued = zmq.Socket.shadow(socket.underlying)
    while True:
        try:
            if pacer is not None and (hold := pacer.hold()):
                await asyncio.sleep(hold)
            burst = [await socket.recv_multipart()]
            while len(burst) < MAX_BURST:
                burst.append(queued.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            pass
        except (asyncio.CancelledError, zmq.ZMQError):
            return
        if pacer is not None:
            pacer.read(len(burst))
        for frames in burst:
            try:
                message = from_frames(channel, frames, signer)
            except ProtocolError as exc:
                log.warning("Dropped a %s message from kernel %s: %s", channel, kernel_id, exc)
                continue
            on_message(message)
