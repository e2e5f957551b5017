"""The relay's ZeroMQ sockets: creating them from a kernel's connection info, reading them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

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
    here and memory is bounded per client further down instead. With CurveZMQ keys in
    `info`, it authenticates and encrypts as jupyter_client's own sockets do.
    """
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.RCVHWM, 0)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SUBSCRIBE, b"")
    if info.get("curve_publickey") and info.get("curve_secretkey"):
        public, secret = _as_bytes(info["curve_publickey"]), _as_bytes(info["curve_secretkey"])
        socket.curve_secretkey, socket.curve_publickey, socket.curve_serverkey = secret, public, public
    socket.connect(channel_url(info, "iopub"))
    return socket


def _as_bytes(key: str | bytes) -> bytes:
    return key.encode("ascii") if isinstance(key, str) else key


async def handshake(socket: zmq.asyncio.Socket, monitor: zmq.asyncio.Socket) -> None:
    """Return once `socket` has finished a handshake with its peer (the peer knows its
    identity from then on), as `monitor`, attached before it connected, reports; then
    stop watching. Cancelled, it leaves the monitor to `stop_watching` by its owner."""
    while parse_monitor_message(await monitor.recv_multipart())["event"] != zmq.EVENT_HANDSHAKE_SUCCEEDED:
        pass
    stop_watching(socket, monitor)


def stop_watching(socket: zmq.Socket, monitor: zmq.Socket) -> None:
    """Detach `monitor` from `socket`, then close it: in this order, and before `socket`
    is closed. libzmq sends monitor events from its I/O thread with a blocking send, so
    a monitor closed while its socket may still report (a handshake that completes while
    a closed socket lingers) blocks that thread for good, and with it every socket of
    the context: the service then reaches no kernel it starts afterwards."""
    if monitor.closed:
        return
    if not socket.closed:
        socket.disable_monitor()
    monitor.close(linger=0)


#: Messages read at once from what is already queued, before the loop gets a turn again.
MAX_BURST = 64


async def read_messages(
    socket: zmq.asyncio.Socket,
    channel: str,
    signer: Signer,
    kernel_id: str,
    on_message: Callable[[KernelMessage], None],
) -> None:
    """Hand each signed message a kernel sends on `socket` to `on_message`, in order, until
    the socket closes or the task is cancelled; a message that fails its check is logged
    and dropped (it cannot be the kernel's: the key signs every real one).

    One awaited receive, then what is already queued (up to MAX_BURST messages) is read
    straight from the same socket without asyncio: a kernel's output comes in bursts, and
    zmq.asyncio's future and callback per message was a third of the relay's time in one.
    (iopub, the busy one, is read without asyncio: see iopub.IopubReader.)"""
    queued = zmq.Socket.shadow(socket.underlying)
    while True:
        try:
            burst = [await socket.recv_multipart()]
            while len(burst) < MAX_BURST:
                burst.append(queued.recv_multipart(zmq.NOBLOCK))
        except zmq.Again:
            pass
        except (asyncio.CancelledError, zmq.ZMQError):
            return
        for frames in burst:
            hand_on(frames, channel, signer, kernel_id, on_message)


def hand_on(
    frames: list[bytes], channel: str, signer: Signer, kernel_id: str, on_message: Callable[[KernelMessage], None]
) -> None:
    """Check one received message and hand it to `on_message`; log and drop it if it fails."""
    try:
        message = from_frames(channel, frames, signer)
    except ProtocolError as exc:
        log.warning("Dropped a %s message from kernel %s: %s", channel, kernel_id, exc)
        return
    on_message(message)
