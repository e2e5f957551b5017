"""The relay of one kernel: reads its iopub once, fans it out to its clients' sessions.

Reading iopub is `iopub.IopubReader`'s; readiness (whether the kernel can be relayed to
yet) is `readiness.ReadinessProbe`'s; the sessions (one ZeroMQ identity each) are
`session.RelaySession`. This class keeps the session table and fans iopub out to it. After a restart,
REST or automatic, the relay follows the kernel to new ports if it moved (remote
provisioners pick new ones) and probes it again; what clients send meanwhile is held
by their sessions until the probe says ready.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from kernels_service.kernels import KernelRecord, NoSuchKernel
from kernels_service.metrics import FROM_KERNEL, count_message
from kernels_service.protocol import KernelMessage, ProtocolError
from kernels_service.protocol.message import status_message
from kernels_service.protocol.wire import Signer
from kernels_service.relay.iopub import IopubReader
from kernels_service.relay.readiness import ReadinessProbe
from kernels_service.relay.session import RelaySession

log = logging.getLogger("kernels_service.relay")

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")


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
        self._readiness = ReadinessProbe(record.id, manager, self._signer)
        self._ports = ports_of(manager.get_connection_info())
        self._iopub = IopubReader(record.id, manager, self._signer, self._on_iopub)
        self._status_session = uuid.uuid4().hex  # the session of the relay's synthetic statuses
        self.closed = False
        self._shared: RelaySession | None = None

    @property
    def kernel_id(self) -> str:
        return self.record.id

    def start(self) -> None:
        """Start reading iopub and nudging the kernel until it answers."""
        self._iopub.start()
        self._readiness.start()

    async def wait_ready(self) -> None:
        """Return once the kernel answered kernel_info and its iopub reaches us."""
        await self._readiness.ready.wait()

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
        session = RelaySession(self.kernel_id, identity, self._signer, self._readiness.ready, self._activity)
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
        self._readiness.cancel()
        self._readiness.ready.clear()
        if automatic:
            self.broadcast_status("restarting")

    def kernel_restarted(self) -> None:
        """The new process is launched: follow it to new ports if it moved, then nudge it."""
        manager = self.record.manager
        ports = ports_of(manager.get_connection_info())
        if ports != self._ports:
            log.info("Kernel %s restarted on new ports; reconnecting", self.kernel_id)
            self._ports = ports
            self._iopub.reconnect()
            for session in self._sessions:
                session.reconnect(manager)
        self._readiness.start()

    def kernel_died(self) -> None:
        self._readiness.cancel()
        self.broadcast_status("dead")
        self._readiness.ready.set()  # nobody should wait for a kernel that will not come back

    async def close(self, reason: str) -> None:
        """Close every session (telling its listeners why) and the iopub socket."""
        self.closed = True
        for session in list(self._sessions):
            for listener in list(session.listeners):
                listener.relay_closed(reason)
            self.close_session(session)
        self._readiness.cancel()
        self._iopub.close()
        self._readiness.ready.set()  # whoever waits learns it is closed

    def _count_connections(self) -> None:
        self._reports.record_connections(self.record, sum(len(s.listeners) for s in self._sessions))

    def _activity(self) -> None:
        self._reports.record_activity(self.record)

    def _fan_out(self, message: KernelMessage) -> None:
        for session in list(self._sessions):
            session.deliver(message)

    def _on_iopub(self, message: KernelMessage) -> None:
        """Every iopub message goes to every session, but the readiness probe's own."""
        count_message(FROM_KERNEL, message)
        try:
            ours = self._note_status(message)
        except ProtocolError as exc:
            log.warning("Dropped an iopub message from kernel %s: %s", self.kernel_id, exc)
            return
        if not ours:
            self._fan_out(message)

    def _note_status(self, message: KernelMessage) -> bool:
        """Report activity and status; True for a status the readiness probe owns."""
        if b"status" not in message.parts[0] or message.msg_type != "status":
            self._activity()
            return False
        state = message.content().get("execution_state")
        if isinstance(state, str):
            self._reports.record_status(self.record, state)
        return self._readiness.owns(message)
