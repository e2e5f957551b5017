"""A relay session: one ZeroMQ identity with its own shell, control and stdin sockets.

ipykernel sends replies and `input_request`s to the identity that sent the request, so
every client that must get only its own replies (a websocket connection) has its own
session, and whatever must share stdin with a shell requester shares its session.

While the kernel restarts, a session holds what its clients send and sends it once the
relay has re-established iopub with the new kernel (`ready`): sent earlier, the output
of those requests could be published before our subscription is live, and lost. A new
session also holds them until its stdin socket has finished its handshake with the
kernel: a request that calls `input()` would otherwise have its `input_request` sent to
an identity the kernel does not know yet, and dropped (the kernel then waits forever).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import zmq
import zmq.asyncio

from kernels_service.metrics import FROM_KERNEL, TO_KERNEL, count_message
from kernels_service.protocol import CLIENT_CHANNELS, KernelMessage, ProtocolError
from kernels_service.protocol.wire import Signer, to_frames
from kernels_service.relay.replay import ReplayBuffer
from kernels_service.relay.sockets import handshake, read_messages, stop_watching

log = logging.getLogger("kernels_service.relay")

#: Messages a session holds for a restarting kernel; more is a client flooding a kernel that is not there.
MAX_HELD = 1000

#: The channels whose requests get a reply to the session's own identity, and how many
#: requests awaiting one a session notes (the oldest are forgotten past that).
REPLIED_CHANNELS = ("shell", "control")
MAX_AWAITED = 10000


class RelayListener(Protocol):
    """A client door onto the relay (a websocket connection, a socket.io namespace...):
    what a session hands the kernel's messages to."""

    channels: frozenset[str]  # the channels of the messages it takes

    def deliver(self, message: KernelMessage) -> None:
        """Send one kernel message to the client; must not block."""

    def relay_closed(self, reason: str) -> None:
        """The kernel is gone: close the client with this reason."""

    def moved(self, reason: str) -> None:
        """The replica drains: close the client with this reason, asking it to come back
        (to another replica), its session kept for the hand-over of what it misses."""


class KernelNotReading(Exception):
    """The kernel takes no more messages (its ZeroMQ queue is full, or too many wait for a
    restart): the client sending them is closed with this reason, "try again later"."""


class RelaySession:
    """Shell/control/stdin DEALER sockets under one identity, and the listeners they feed."""

    def __init__(
        self,
        kernel_id: str,
        identity: bytes,
        signer: Signer,
        ready: asyncio.Event,
        on_activity: Callable[[], None],
        key: str | None = None,
    ):
        """`ready`: set while the kernel can take messages; `on_activity`: called for each
        message either way (the kernel's last_activity); `key`: clients that come back with
        it get this session (None: nobody comes back to it).

        Its fields are written by its own methods only; the relay reads them."""
        self.kernel_id = kernel_id
        self.identity = identity
        self.key = key
        self.listeners: list[RelayListener] = []  # attach / detach
        self._signer = signer
        self._ready = ready
        self._on_activity = on_activity
        self._sockets: dict[str, zmq.asyncio.Socket] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._held: list[KernelMessage] = []
        self._releasing: asyncio.Task[None] | None = None
        self._stdin_up: asyncio.Task[None] | None = None  # the stdin socket's handshake
        self._stdin_monitor: zmq.asyncio.Socket | None = None  # what reports it
        self.replay: ReplayBuffer | None = None  # while no client is there to take everything
        self.expiry: asyncio.TimerHandle | None = None  # when a session kept for its clients ends
        self.awaiting: dict[str, None] = {}  # msg_ids of requests sent whose reply has not come (oldest first)

    def open(self, manager: Any) -> None:
        """Connect the DEALER sockets (from the manager's current ports) and read them."""
        for channel in CLIENT_CHANNELS:
            if channel == "stdin":
                socket, self._stdin_monitor = manager.connect_stdin_watched(self.identity)
                self._stdin_up = asyncio.ensure_future(handshake(socket, self._stdin_monitor))
            else:
                socket = getattr(manager, f"connect_{channel}")(identity=self.identity)
            self._sockets[channel] = socket
            reading = read_messages(socket, channel, self._signer, self.kernel_id, self._received)
            self._readers.append(asyncio.ensure_future(reading))

    def reconnect(self, manager: Any) -> None:
        """The kernel has new ports: the same identity, new sockets."""
        self._close_sockets()
        self.open(manager)

    def send(self, message: KernelMessage) -> None:
        """Sign a client's message with the kernel's key and send it on its channel (or
        hold it while the kernel restarts); ProtocolError for a channel clients cannot use."""
        if message.channel not in CLIENT_CHANNELS:
            raise ProtocolError(f"clients cannot send on channel {message.channel!r}")
        self._on_activity()
        self._await_reply(message)
        if self._can_send() and not self._held:
            self._send_now(message)
            return
        if len(self._held) >= MAX_HELD:
            raise KernelNotReading(f"more than {MAX_HELD} messages sent while the kernel restarts")
        self._held.append(message)
        if self._releasing is None:
            self._releasing = asyncio.ensure_future(self._release_when_ready())

    def _send_now(self, message: KernelMessage) -> None:
        """Send without waiting: a kernel that stops reading fills its ZeroMQ queue
        (SNDHWM messages), and then the client is told, rather than futures piling up."""
        socket = self._sockets.get(message.channel)
        if socket is None:  # the session is closed
            return
        sent = socket.send_multipart(to_frames(message, self._signer), flags=zmq.NOBLOCK, copy=False)
        count_message(TO_KERNEL, message)
        if sent.done() and sent.exception() is not None:
            raise KernelNotReading(f"the kernel is not reading its {message.channel} messages")

    def _can_send(self) -> bool:
        """The kernel is relayable and this session's stdin is connected."""
        stdin_up = self._stdin_up is not None and self._stdin_up.done() and not self._stdin_up.cancelled()
        return self._ready.is_set() and stdin_up

    async def _release_when_ready(self) -> None:
        try:
            while not self._can_send():
                await self._ready.wait()
                if self._stdin_up is not None:
                    await asyncio.wait([self._stdin_up])  # done, or cancelled by a reconnect
            held, self._held = self._held, []
            for message in held:
                self._send_now(message)
        except KernelNotReading as error:
            log.warning("Dropped messages held for kernel %s: %s", self.kernel_id, error)
        finally:
            self._releasing = None

    def _await_reply(self, message: KernelMessage) -> None:
        """Note a shell or control request (its reply comes to this session's identity
        only: a drain hands the session over once it came, relay/handover.py)."""
        try:
            expects_reply = message.channel in REPLIED_CHANNELS and message.msg_type.endswith("_request")
            msg_id = message.header.get("msg_id") if expects_reply else None
        except ProtocolError:
            return  # the kernel will not answer what it cannot read either
        if isinstance(msg_id, str):
            self.awaiting[msg_id] = None
            if len(self.awaiting) > MAX_AWAITED:
                del self.awaiting[next(iter(self.awaiting))]

    def forget_requests(self) -> None:
        """The kernel restarted: the replies its old process owed will not come."""
        self.awaiting.clear()

    def _received(self, message: KernelMessage) -> None:
        count_message(FROM_KERNEL, message)
        self._on_activity()
        if self.awaiting and message.channel in REPLIED_CHANNELS:
            try:
                self.awaiting.pop(message.parent_msg_id(), None)
            except ProtocolError:
                pass  # a reply whose parent header cannot be read answers nothing noted
        self.deliver(message)

    def deliver(self, message: KernelMessage) -> None:
        """Hand a kernel message to every listener of this session that takes its channel;
        with none, keep it for the clients' return if the session waits for them."""
        taken = False
        for listener in list(self.listeners):
            if message.channel in listener.channels:
                listener.deliver(message)
                taken = True
        if not taken and self.replay is not None:
            self.replay.keep(message)

    def attach(self, listener: RelayListener) -> list[KernelMessage]:
        """Add a listener; return what its channels missed while no client was there (the
        replay ends once everything kept has been taken)."""
        self.listeners.append(listener)
        if self.replay is None:
            return []
        missed = self.replay.take(listener.channels)
        if not self.replay:
            self.end_replay()
        return missed

    def detach(self, listener: RelayListener) -> bool:
        """Remove a listener; True when none is left."""
        if listener in self.listeners:
            self.listeners.remove(listener)
        return not self.listeners

    def wait_for_return(
        self,
        limit: int,
        window: float,
        on_expired: Callable[[RelaySession], None],
        missed: Iterable[KernelMessage] = (),
        merge: bool = True,
    ) -> None:
        """No client is left: keep what they miss (`missed` first), up to `limit` bytes,
        for `window` seconds; then `on_expired(self)`. `merge=False`: each message kept as
        it came (a session handed over to another replica)."""
        if self.replay is None:
            self.replay = ReplayBuffer(limit, merge)
        if self.expiry is None:
            self.expiry = asyncio.get_running_loop().call_later(window, self._expired, on_expired)
        for message in missed:
            self.replay.keep(message)

    def _expired(self, on_expired: Callable[[RelaySession], None]) -> None:
        self.expiry = None
        on_expired(self)

    def end_replay(self) -> None:
        self.replay = None
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None

    def close(self) -> None:
        self.end_replay()
        if self._releasing is not None:
            self._releasing.cancel()
        self._held.clear()
        self._close_sockets()

    def _close_sockets(self) -> None:
        if self._stdin_up is not None:
            self._stdin_up.cancel()
        if self._stdin_monitor is not None:  # before its socket closes (sockets.stop_watching)
            stop_watching(self._sockets["stdin"], self._stdin_monitor)
            self._stdin_monitor = None
        for reader in self._readers:
            reader.cancel()
        for socket in self._sockets.values():
            socket.close(linger=0)
        self._readers.clear()
        self._sockets.clear()
