"""The relay of one kernel: reads its iopub once, fans it out, and knows when it is ready.

"Ready" means the kernel answered a kernel_info request *and* the iopub status of one of
those requests reached us: only then is our iopub subscription known to be live, so no
output of a client's request can be published before we listen (a ZeroMQ SUB drops
what was published before its subscription took effect). The relay makes sure of it at
start and after every restart, REST or automatic; a restart may also move the kernel to
new ports (remote provisioners pick new ones), so the sockets follow the manager's
connection info. What clients send meanwhile is held by their sessions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any, Protocol

import zmq

from kernels_service.kernels import KernelRecord, NoSuchKernel
from kernels_service.protocol import KernelMessage, ProtocolError
from kernels_service.protocol.message import decode_json_part, make_message, status_message
from kernels_service.protocol.wire import Signer, from_frames, to_frames
from kernels_service.relay.session import RelaySession
from kernels_service.relay.sockets import connect_iopub

log = logging.getLogger("kernels_service.relay")

RESEND_AFTER = 2.0  # seconds without a kernel_info reply before the nudge asks again
IOPUB_GRACE = 0.5  # seconds to wait for a replied request's iopub status before asking again
CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
READY_TIMEOUT = 60.0  # give up waiting for a kernel to answer after this long


class RelayListener(Protocol):
    """A client door onto the relay (a websocket connection, a socket.io namespace...)."""

    def deliver(self, message: KernelMessage) -> None:
        """Send one kernel message to the client; must not block."""

    def relay_closed(self, reason: str) -> None:
        """The kernel is gone: close the client with this reason."""


class KernelReports(Protocol):
    """Where the relay reports what it sees of a kernel (the registry, its record's one writer)."""

    def record_activity(self, record: KernelRecord) -> None: ...

    def record_status(self, record: KernelRecord, execution_state: str) -> None: ...

    def record_connections(self, record: KernelRecord, connections: int) -> None: ...


def ports_of(info: dict[str, Any]) -> tuple[Any, ...]:
    """What of a kernel's connection info the relay's sockets depend on."""
    return (info.get("transport"), info.get("ip"), *(info.get(f"{channel}_port") for channel in CHANNELS))


class KernelRelay:
    """iopub fan-out, per-client sessions, readiness and synthetic statuses for one kernel."""

    def __init__(self, record: KernelRecord, reports: KernelReports):
        self.record = record
        self._reports = reports
        manager = record.manager
        self._signer = Signer(manager.session.key, manager.session.signature_scheme)
        self._sessions: list[RelaySession] = []
        self._ready = asyncio.Event()
        self._iopub_seen = asyncio.Event()
        self._nudge_ids: set[str] = set()  # kernel_info requests of the running nudge
        self._ports = ports_of(manager.get_connection_info())
        self._iopub = connect_iopub(manager.context, manager.get_connection_info())
        self._iopub_reader: asyncio.Task[None] | None = None
        self._nudging: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._status_session = uuid.uuid4().hex
        self.closed = False
        self._shared: RelaySession | None = None

    @property
    def kernel_id(self) -> str:
        return self.record.id

    def start(self) -> None:
        """Start reading iopub and nudging the kernel until it answers."""
        self._iopub_reader = self._spawn(self._read_iopub())
        self._start_nudge()

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
        identity = f"{kind}-{uuid.uuid4().hex}".encode()
        session = RelaySession(self.kernel_id, identity, self._signer, self._ready, self._activity)
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

    def kernel_restarting(self, automatic: bool) -> None:
        """Hold clients' messages until the new kernel is ready. Tell clients of an
        automatic restart (the kernel died) with a `restarting` status, as Jupyter Server
        does; a client that asked for a restart knows (JupyterLab reconnects on that
        status: sent for its own restart, it would reconnect twice and lose a reply)."""
        self._ready.clear()
        if self._nudging is not None:
            self._nudging.cancel()
        if automatic:
            self.broadcast_status("restarting")

    def kernel_restarted(self) -> None:
        """The new process is launched: follow it to new ports if it moved, then nudge it."""
        manager = self.record.manager
        ports = ports_of(manager.get_connection_info())
        if ports != self._ports:
            log.info("Kernel %s restarted on new ports; reconnecting", self.kernel_id)
            self._ports = ports
            self._reconnect_iopub()
            for session in self._sessions:
                session.reconnect(manager)
        self._start_nudge()

    def kernel_died(self) -> None:
        if self._nudging is not None:
            self._nudging.cancel()
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
        self._reports.record_connections(self.record, sum(len(s.listeners) for s in self._sessions))

    def _activity(self) -> None:
        self._reports.record_activity(self.record)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _reconnect_iopub(self) -> None:
        if self._iopub_reader is not None:
            self._iopub_reader.cancel()
        self._iopub.close(linger=0)
        manager = self.record.manager
        self._iopub = connect_iopub(manager.context, manager.get_connection_info())
        self._iopub_reader = self._spawn(self._read_iopub())

    def _start_nudge(self) -> None:
        if self._nudging is not None:
            self._nudging.cancel()
        self._nudging = self._spawn(self._nudge())

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
                ours = self._note_status(message)
            except ProtocolError as exc:
                log.warning("Dropped an iopub message from kernel %s: %s", self.kernel_id, exc)
                continue
            if not ours:
                self._fan_out(message)

    def _note_status(self, message: KernelMessage) -> bool:
        """Report activity and status. True for the status of the relay's own kernel_info
        requests: the nudge's business, not the clients' (as in Jupyter Server)."""
        if b"status" not in message.parts[0] or message.msg_type != "status":
            self._activity()
            return False
        state = message.content().get("execution_state")
        if isinstance(state, str):
            self._reports.record_status(self.record, state)
        parent = decode_json_part(message.parts[1], "parent_header")
        if parent.get("session") != self._status_session:
            return False
        if parent.get("msg_id") in self._nudge_ids:
            self._iopub_seen.set()
        return True

    async def _nudge(self) -> None:
        """Ask kernel_info until a request is answered and its iopub status has reached us
        (Jupyter Server's nudge); then the relay is ready. One request at a time: a kernel
        still starting gets one, not a pile. Cancelled by a restart, which starts a new
        nudge once the new process is there."""
        manager = self.record.manager
        shell = manager.connect_shell(identity=f"nudge-{uuid.uuid4().hex}".encode())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        self._iopub_seen.clear()
        self._nudge_ids.clear()
        try:
            while loop.time() < deadline:
                request = make_message("shell", "kernel_info_request", {}, self._status_session)
                self._nudge_ids.add(request.header["msg_id"])
                await shell.send_multipart(to_frames(request, self._signer))
                if not await shell.poll(RESEND_AFTER * 1000):
                    continue  # not answered yet (a slow start): ask once more
                while await shell.poll(0):
                    await shell.recv_multipart()
                try:
                    await asyncio.wait_for(self._iopub_seen.wait(), IOPUB_GRACE)
                    break
                except asyncio.TimeoutError:
                    continue  # answered, but its status was published before we listened
            else:
                log.warning("Kernel %s did not answer kernel_info in %ss", self.kernel_id, READY_TIMEOUT)
            log.debug(
                "Kernel %s ready after %.2fs and %d kernel_info requests",
                self.kernel_id,
                READY_TIMEOUT - (deadline - loop.time()),
                len(self._nudge_ids),
            )
            self._ready.set()
        finally:
            self._nudge_ids.clear()
            shell.close(linger=0)
