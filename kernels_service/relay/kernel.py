"""The relay of one kernel: reads its iopub once, fans it out, and knows when it is ready."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Protocol

import zmq

from kernels_service.kernels import KernelRecord, NoSuchKernel
from kernels_service.protocol import KernelMessage, ProtocolError
from kernels_service.protocol.message import make_message, status_message
from kernels_service.protocol.wire import Signer, from_frames, to_frames
from kernels_service.relay.session import RelaySession
from kernels_service.relay.sockets import connect_iopub

log = logging.getLogger("kernels_service.relay")

NUDGE_INTERVAL = 0.25  # seconds between kernel_info requests while waiting for a kernel
READY_TIMEOUT = 60.0  # give up waiting for a kernel to answer after this long


class RelayListener(Protocol):
    """A client door onto the relay (a websocket connection, a socket.io namespace...)."""

    def deliver(self, message: KernelMessage) -> None:
        """Send one kernel message to the client; must not block."""

    def relay_closed(self, reason: str) -> None:
        """The kernel is gone: close the client with this reason."""


class KernelRelay:
    """iopub fan-out, per-client sessions, readiness and synthetic statuses for one kernel."""

    def __init__(self, record: KernelRecord):
        self.record = record
        manager = record.manager
        self._signer = Signer(manager.session.key, manager.session.signature_scheme)
        self._sessions: list[RelaySession] = []
        self._ready = asyncio.Event()
        self._iopub_seen = asyncio.Event()
        self._iopub = connect_iopub(manager.context, manager.get_connection_info())
        self._tasks: set[asyncio.Task[None]] = set()
        self._status_session = uuid.uuid4().hex
        self.closed = False
        self._shared: RelaySession | None = None

    @property
    def kernel_id(self) -> str:
        return self.record.id

    def start(self) -> None:
        """Start reading iopub and nudging the kernel until it answers."""
        self._spawn(self._read_iopub())
        self._spawn(self._nudge())

    async def wait_ready(self) -> None:
        """Return once the kernel answered kernel_info and its iopub reaches us."""
        await self._ready.wait()

    def open_session(self, listener: RelayListener) -> RelaySession:
        """A new session (own ZMQ identity) with one listener; a websocket connection's."""
        session = self._new_session("ws")
        self.attach(session, listener)
        return session

    def shared_session(self) -> RelaySession:
        """The one session all socket.io clients of this kernel share (kernel-relay's routing).

        The original client spreads one user's namespaces over two Engine.IO connections,
        so shell and stdin must share an identity whatever connection they are on.
        """
        if self._shared is None or self._shared not in self._sessions:
            self._shared = self._new_session("socketio")
        return self._shared

    def _new_session(self, kind: str) -> RelaySession:
        """A session with a fresh ZMQ identity, its sockets connected; NoSuchKernel once closed."""
        if self.closed:
            raise NoSuchKernel(self.kernel_id)
        session = RelaySession(self, f"{kind}-{uuid.uuid4().hex}".encode(), self._signer)
        session.open(self.record.manager)
        self._sessions.append(session)
        return session

    def attach(self, session: RelaySession, listener: RelayListener) -> None:
        session.listeners.append(listener)
        self._count_connections()

    def detach(self, session: RelaySession, listener: RelayListener) -> None:
        """Remove a listener; a session left with none is closed."""
        if listener in session.listeners:
            session.listeners.remove(listener)
        if not session.listeners:
            self.close_session(session)
        self._count_connections()

    def close_session(self, session: RelaySession) -> None:
        session.close()
        if session in self._sessions:
            self._sessions.remove(session)
        self._count_connections()

    def broadcast_status(self, execution_state: str) -> None:
        """Send a synthetic iopub status (restarting, dead) to every client."""
        self._fan_out(status_message(execution_state, self._status_session))

    def kernel_restarting(self) -> None:
        self._ready.clear()
        self.broadcast_status("restarting")
        self._spawn(self._nudge())

    def kernel_died(self) -> None:
        self.broadcast_status("dead")
        self._ready.set()  # nobody should wait for a kernel that will not come back

    async def close(self, reason: str) -> None:
        """Close every session (telling its listeners why) and the iopub socket."""
        self.closed = True
        for session in list(self._sessions):
            for listener in list(session.listeners):
                listener.relay_closed(reason)
            self.close_session(session)
        for task in list(self._tasks):
            task.cancel()
        self._iopub.close(linger=0)
        self._ready.set()

    def _count_connections(self) -> None:
        self.record.connections = sum(len(s.listeners) for s in self._sessions)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _fan_out(self, message: KernelMessage) -> None:
        for session in list(self._sessions):
            session.deliver(message)

    async def _read_iopub(self) -> None:
        while True:
            try:
                frames = await self._iopub.recv_multipart()
            except (asyncio.CancelledError, zmq.ZMQError):
                return
            try:
                message = from_frames("iopub", frames, self._signer)
                self._note_activity(message)
            except ProtocolError as exc:
                log.warning("Dropped an iopub message from kernel %s: %s", self.kernel_id, exc)
                continue
            self._iopub_seen.set()
            self._fan_out(message)

    def _note_activity(self, message: KernelMessage) -> None:
        self.record.touch()
        if b"status" in message.parts[0] and message.msg_type == "status":
            state = message.content().get("execution_state")
            if isinstance(state, str) and self.record.execution_state != "dead":
                self.record.execution_state = state

    async def _nudge(self) -> None:
        """Send kernel_info requests until one is answered and iopub has delivered.

        Like Jupyter Server's nudge: only then is the iopub subscription known to be
        live, so no output of a client's first request can be lost.
        """
        manager = self.record.manager
        shell = manager.connect_shell(identity=f"nudge-{uuid.uuid4().hex}".encode())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        try:
            self._iopub_seen.clear()
            while loop.time() < deadline:
                request = make_message("shell", "kernel_info_request", {}, self._status_session)
                await shell.send_multipart(to_frames(request, self._signer))
                if await shell.poll(NUDGE_INTERVAL * 1000) and self._iopub_seen.is_set():
                    break
                if await shell.poll(0):
                    await shell.recv_multipart()
            else:
                log.warning("Kernel %s did not answer kernel_info in %ss", self.kernel_id, READY_TIMEOUT)
        finally:
            shell.close(linger=0)
            self._ready.set()
