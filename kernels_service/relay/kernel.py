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
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Protocol

from kernels_service.kernels import KernelRecord, NoSuchKernel
from kernels_service.metrics import FROM_KERNEL, count_message
from kernels_service.protocol import KernelMessage, ProtocolError
from kernels_service.protocol.message import status_message
from kernels_service.protocol.wire import Signer
from kernels_service.relay.iopub import IopubReader
from kernels_service.relay.readiness import ReadinessProbe
from kernels_service.relay.replay import ReplayPolicy, dropped_notice, replies_lost_notice, restart_notice
from kernels_service.relay.session import RelayListener, RelaySession

log = logging.getLogger("kernels_service.relay")

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
SOCKETIO_KEY = "socketio"  # the key of the session socket.io clients share
MAX_MISSED_NOTICES = 1000  # keys whose session ended, remembered to tell them


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

    def __init__(self, record: KernelRecord, reports: KernelReports, replay: ReplayPolicy | None = None):
        self.record = record
        self._replay = replay or ReplayPolicy()
        self._keyed: dict[str, RelaySession] = {}  # sessions clients come back to, by key
        self._missed: OrderedDict[str, KernelMessage] = OrderedDict()  # notices for keys whose session ended
        self._told_of_restart: set[bytes] = set()  # sessions told that the service restarted
        self._reports = reports
        manager = record.manager
        self._signer = Signer(manager.session.key, manager.session.signature_scheme)
        self._sessions: list[RelaySession] = []
        self._readiness = ReadinessProbe(record.id, manager, self._signer)
        self._ports = ports_of(manager.get_connection_info())
        self._iopub = IopubReader(record.id, manager, self._signer, self._on_iopub)
        self._status_session = uuid.uuid4().hex  # the session of the relay's synthetic statuses
        self.closed = False
        self.handing_over = False  # the replica drains: its websocket sessions wait for another to take them

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

    def open_session(self, listener: RelayListener, key: str | None = None, handed: bool = False) -> RelaySession:
        """A websocket connection's session (own ZMQ identity), with `listener` attached.
        With a key (the client's `session_id`), a client that comes back with it within the
        replay window gets the same session, and first what it missed. `handed`: another
        replica handed over what the client missed (it is told of no restart)."""
        session = self._keyed_session(f"ws:{key}", "ws") if key else self._new_session("ws")
        if handed:
            self._told_of_restart.add(session.identity)
        self.attach(session, listener)
        return session

    def handover_keys(self) -> list[tuple[str, bool]]:
        """The keys (clients' `session_id`s) of the websocket sessions a drain hands over,
        each with whether it has a client now (the others wait for one to come back)."""
        return [
            (key[3:], bool(session.listeners))
            for key, session in self._keyed.items()
            if key.startswith("ws:") and session in self._sessions
        ]

    def hand_over(self, reason: str) -> None:
        """The replica drains: every client is closed with `reason`; a websocket client's
        session (one with a key) goes on keeping what it misses, message by message, for
        the replica it comes back to (`take_session`); the others end."""
        self.handing_over = True
        for session in list(self._sessions):
            if session.key is not None and session.key.startswith("ws:"):
                if session.replay is not None:
                    session.replay.stop_merging()
                for listener in list(session.listeners):
                    listener.moved(reason)  # detached when its connection closes: the session waits
            else:
                for listener in list(session.listeners):
                    listener.relay_closed(reason)
                self.close_session(session)

    def take_session(self, key: str) -> list[KernelMessage] | None:
        """What a handed-over websocket session kept for its client, every channel, in
        order (and, if replies to its requests are still owed, a notice that they will
        not come: they come to this session's identity only); the session ends. None if
        there is no such session, or it still has a client (its connection has not
        closed yet)."""
        session = self._keyed.get(f"ws:{key}")
        if session is None or session not in self._sessions or session.listeners:
            return None
        kept = session.replay.take(CHANNELS) if session.replay is not None else []
        if session.awaiting:
            kept.append(replies_lost_notice(len(session.awaiting)))
        self.close_session(session)
        return kept

    def handover_waits(self, key: str) -> bool:
        """Whether the session of this key should not be handed over yet: its client's
        connection here has not closed, or replies to its requests are still owed."""
        session = self._keyed.get(f"ws:{key}")
        return session is not None and (bool(session.listeners) or bool(session.awaiting))

    def shared_session(self) -> RelaySession:
        """The one session all socket.io clients of this kernel share (kernel-relay's routing).

        The original client spreads one user's namespaces over two Engine.IO connections,
        so shell and stdin must share an identity whatever connection they are on.
        """
        return self._keyed_session(SOCKETIO_KEY, "socketio")

    def _keyed_session(self, key: str, kind: str) -> RelaySession:
        session = self._keyed.get(key)
        if session is None or session not in self._sessions:
            session = self._keyed[key] = self._new_session(kind, key)
        return session

    def _new_session(self, kind: str, key: str | None = None) -> RelaySession:
        """A session with a fresh ZMQ identity, its sockets connected; NoSuchKernel once closed."""
        if self.closed:
            raise NoSuchKernel(self.kernel_id)
        identity = f"{kind}-{uuid.uuid4().hex}".encode()
        session = RelaySession(self.kernel_id, identity, self._signer, self._readiness.ready, self._activity, key)
        session.open(self.record.manager)
        self._sessions.append(session)
        return session

    def attach(self, session: RelaySession, listener: RelayListener) -> None:
        """Add a listener; it first gets what the session kept of its channels while no
        client was there, or a notice of what was lost if the session it had ended."""
        kept = session.replay is not None
        for message in session.attach(listener):
            listener.deliver(message)
        if not kept and session.key in self._missed and "iopub" in listener.channels:
            listener.deliver(self._missed.pop(session.key))
        if "iopub" in listener.channels and session.identity not in self._told_of_restart:
            notice = restart_notice(self.record, self._replay.window)
            if notice is not None:
                self._told_of_restart.add(session.identity)
                listener.deliver(notice)
        self._count_connections()

    def detach(self, session: RelaySession, listener: RelayListener, missed: Iterable[KernelMessage] = ()) -> None:
        """Remove a listener; a session left with none is closed, or, if its clients can come
        back to it (it has a key), kept for the replay window with what they miss, starting
        with `missed`: what was on its way to the listener but not sent."""
        if session.detach(listener):
            if session.key is not None and self._replay.window > 0 and not self.closed:
                merge = not self.handing_over  # handed over: the other replica tells duplicates by msg_id
                session.wait_for_return(self._replay.limit, self._replay.window, self._expire, missed, merge)
            else:
                self.close_session(session)
        self._count_connections()

    def _expire(self, session: RelaySession) -> None:
        """The replay window is over: a session nobody came back to ends, and whoever comes
        back with its key later is told what was lost."""
        replay = session.replay
        if session.listeners or replay is None:  # some socket.io namespaces came back
            session.end_replay()
            return
        lost = replay.kept_messages + replay.dropped_messages
        log.info(
            "Kernel %s: a client did not come back within %g s; the %d messages it missed are dropped",
            self.kernel_id, self._replay.window, lost,
        )  # fmt: skip
        if lost and session.key is not None:
            why = f"it did not come back within {self._replay.window:g} s"
            self._missed[session.key] = dropped_notice(lost, replay.kept_bytes + replay.dropped_bytes, why)
            while len(self._missed) > MAX_MISSED_NOTICES:
                self._missed.popitem(last=False)
        self.close_session(session)

    def close_session(self, session: RelaySession) -> None:
        session.close()
        if session in self._sessions:
            self._sessions.remove(session)
        if session.key is not None and self._keyed.get(session.key) is session:
            del self._keyed[session.key]
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
        """The new process is launched: follow it to its key if it has a new one (a
        container kernel's launcher makes one each launch) and to new ports if it moved,
        then nudge it."""
        for session in self._sessions:
            session.forget_requests()
        manager = self.record.manager
        self._signer.use_key(manager.session.key, manager.session.signature_scheme)
        self._readiness.follow(manager)
        ports = ports_of(manager.get_connection_info())
        if ports != self._ports:
            log.info("Kernel %s restarted on new ports; reconnecting", self.kernel_id)
            self._ports = ports
            self._iopub.reconnect(manager)
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
