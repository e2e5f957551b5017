"""Moves bytes between tornado and the sans-IO sessions: sessions, transports, timers.

One `EngineServer` serves both generations on one path; the `EIO` query parameter of
each request picks the generation of that session. Every protocol decision is made in
the sans-IO layer: which request is taken (`admission`), what a session does
(`engine`: Engine.IO; `connection`: Socket.IO). This module only runs them: it keeps
the session table, feeds packets and transport events to the engine and acts on the
events it returns (`ProbeAnswered`, `Upgraded`, `Closed`), writes websocket frames,
and fires timers. Waiting polls are `polling.LongPolls`'; the Socket.IO events and the
namespace handlers are `dispatch.SocketIODispatch`'s.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Protocol

from tornado.httputil import HTTPServerRequest
from tornado.ioloop import IOLoop

from kernels_service.memory import HeapTrimmer
from kernels_service.metrics import count_closed, engineio_close_reason
from kernels_service.protocol.ws_frames import WireFrame, wire_frame
from kernels_service.socketio import admission
from kernels_service.socketio.connection import SocketIOConnection, new_socket_id
from kernels_service.socketio.dispatch import SocketIODispatch
from kernels_service.socketio.eio_codec import Packet, encode_ws, is_binary
from kernels_service.socketio.engine import (
    OVER_PROBE,
    OVER_WEBSOCKET,
    Closed,
    EngineConfig,
    EngineEvent,
    EngineIOSession,
    ProbeAnswered,
    Upgraded,
)
from kernels_service.socketio.namespaces import Handshake, Namespaces
from kernels_service.socketio.polling import LongPolls
from kernels_service.socketio.session_io import SessionIO, Transport

log = logging.getLogger("kernels_service.socketio")


class AccessRules(Protocol):
    """The origin policy the service applies at every door (see access.AccessPolicy)."""

    def origin_allowed(self, request: HTTPServerRequest) -> bool: ...

    def cors_headers(self, request: HTTPServerRequest) -> dict[str, str]: ...


def new_session_id() -> str:
    """A random Engine.IO session id, as the reference server makes them."""
    return secrets.token_urlsafe(15)


class EngineServer:
    """Every live Engine.IO session of one service, both protocol generations.

    `new_sid` and `new_socket_id` make the ids of sessions and sockets (tests pin them);
    `engine_only`: the conformance server's Engine.IO echo, no Socket.IO layer."""

    def __init__(
        self,
        namespaces: Namespaces,
        access: AccessRules,
        config: EngineConfig | None = None,
        connect_timeout: float = 45.0,
        max_sessions: int = 1000,
        engine_only: bool = False,
        heap: HeapTrimmer | None = None,
        new_sid: Callable[[], str] = new_session_id,
        new_socket_id: Callable[[], str] = new_socket_id,
    ):
        self.access = access
        self.config = config or EngineConfig()
        self.connect_timeout = float("inf") if engine_only else connect_timeout
        self.max_sessions = max_sessions
        self.sessions: dict[str, SessionIO] = {}
        self.heap = heap or HeapTrimmer()  # told when a session ends: gives a burst's memory back
        self.polls = LongPolls()
        self.dispatch = SocketIODispatch(namespaces, self, engine_only)
        self._new_sid = new_sid
        self._new_socket_id = new_socket_id

    # --- requests and sessions -------------------------------------------------------------

    def admit(self, request: admission.EngineRequest) -> admission.Decision:
        """What to do with a request (`admission.admit` over this server's sessions)."""
        return admission.admit(request, self._engine_of, len(self.sessions), self.max_sessions)

    def _engine_of(self, sid: str) -> EngineIOSession | None:
        session = self.sessions.get(sid)
        return None if session is None else session.engine

    def session_of(self, engine: EngineIOSession) -> SessionIO:
        """The I/O side of a session `admit` named."""
        return self.sessions[engine.sid]

    def open_session(self, opening: admission.OpenSession, request: HTTPServerRequest, b64: bool) -> SessionIO:
        now = time.monotonic()
        engine = EngineIOSession(self._new_sid(), opening.version, self.config, now, opening.transport, b64)
        connection = SocketIOConnection(opening.version, now, self.connect_timeout, self._new_socket_id)
        session = SessionIO(engine, connection, handshake_of(request))
        self.sessions[engine.sid] = session
        self.dispatch.session_opened(session)
        self._schedule(session)
        return session

    def close_session(self, session: SessionIO, reason: str) -> None:
        session.engine.close(reason)
        self.flush(session)

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            self.close_session(session, "server shutting down")

    # --- transports ----------------------------------------------------------------------

    def websocket_opened(self, session: SessionIO, ws: Transport) -> None:
        """A session opened on a websocket: that is its transport."""
        session.websocket = ws
        self.flush(session)

    def probe_opened(self, session: SessionIO, ws: Transport) -> bool:
        """A websocket for a polling session opened; False: refuse it (the session has one)."""
        if not session.engine.probe_opened():
            return False
        session.probe = ws
        return True

    def transport_closed(self, session: SessionIO, ws: Transport) -> None:
        if ws is session.probe:
            session.probe = None
            self._act(session, session.engine.transport_closed(OVER_PROBE))
        elif ws is session.websocket:
            self._act(session, session.engine.transport_closed(OVER_WEBSOCKET))
        self.flush(session)

    # --- from the client -----------------------------------------------------------------

    def receive_from(self, session: SessionIO, packets: list[Packet], ws: Transport | None = None) -> None:
        """Feed packets from the client to its session, then send what is due: over
        polling (`ws` None), the probing websocket or the session's websocket."""
        over = "polling" if ws is None else OVER_PROBE if ws is session.probe else OVER_WEBSOCKET
        if ws is not None and over == OVER_WEBSOCKET and ws is not session.websocket:
            return  # a websocket the session refused
        now = time.monotonic()
        for packet in packets:
            self._act(session, session.engine.receive(packet, now, over))
            if session.engine.closed:
                break
        self.dispatch.messages_waiting(session)
        self.flush(session)

    def payload_too_large(self, session: SessionIO, size: int) -> None:
        """A body of `size` bytes, past the limit, came for this session: the engine's rule
        closes the session."""
        session.engine.payload_allowed(size)
        self.flush(session)

    def _act(self, session: SessionIO, events: list[EngineEvent]) -> None:
        """Do what the engine's events say (a `Closed` is seen by `flush`)."""
        for event in events:
            if isinstance(event, ProbeAnswered) and session.probe is not None:
                self._write(session.probe, event.packets, session.engine.version)
            elif isinstance(event, Upgraded):
                session.websocket, session.probe = session.probe, None

    async def poll(self, session: SessionIO) -> list[Packet] | None:
        """The packets that answer a polling GET, once there are some; None means 400."""
        packets = await self.polls.wait(session)
        self.flush(session)  # a refused poll may have closed the session; an answered one drains it
        return packets

    def poll_abandoned(self, session: SessionIO) -> None:
        """The client closed the connection of its waiting poll."""
        self._act(session, self.polls.abandoned(session))
        self.flush(session)

    # --- to the client -------------------------------------------------------------------

    def flush(self, session: SessionIO) -> None:
        """Send queued packets on the session's transport; tidy up a closed session.

        A websocket gets packets while its writer has less than its high-water mark on
        the way; the rest waits in the session (which closes a client that lets too much
        pile up: the engine's rule)."""
        engine = session.engine
        if engine.has_outgoing() or engine.closed:
            ws = session.websocket
            if ws is not None:
                if ws.writer.below_high_water or engine.closed:
                    self._write(ws, engine.take_outgoing(), engine.version)
            else:
                self.polls.answer(session)
        self._check_drained(session)
        if engine.closed:
            self._end(session, engine.closed)

    def written(self, session: SessionIO) -> None:
        """A batch of frames left for the session's websocket: send what waits, if it may."""
        ws = session.websocket
        if ws is not None and ws.writer.below_high_water and session.sid in self.sessions:
            self.flush(session)

    def drained(self, session: SessionIO) -> asyncio.Future[None]:
        """A future done once everything queued for the client so far has left the server.

        Over websocket: nothing waits in the session and its writer is below its
        high-water mark; over polling: a poll has taken the queue. Per-socket outboxes use
        it to hold output back (merging stream output) while a client is slow.
        """
        if session.drain is None or session.drain.done():
            session.drain = asyncio.get_running_loop().create_future()
        self._check_drained(session)
        return session.drain

    def _check_drained(self, session: SessionIO) -> None:
        if session.drain is None or session.drain.done():
            return
        ws = session.websocket
        below_high_water = ws is None or ws.writer.below_high_water
        if session.engine.closed or (not session.engine.has_outgoing() and below_high_water):
            session.drain.set_result(None)

    @staticmethod
    def _write(ws: Transport, packets: list[Packet], version: int) -> None:
        """Queue the packets' frames on a websocket's writer: whatever is queued in one turn
        of the event loop (a burst of kernel output, fanned out) goes out at its end in one
        write with one callback, not a write, a task and a callback per frame."""
        for packet in packets:
            ws.writer.write(websocket_frame(encode_ws(packet, version)))

    def _end(self, session: SessionIO, closed: Closed) -> None:
        if self.sessions.pop(session.sid, None) is None:
            return
        log.info("Engine.IO session %s closed: %s", session.sid, closed.reason)
        reason = engineio_close_reason(closed.reason)
        if reason is not None:
            count_closed(reason)
        if session.timer is not None:
            IOLoop.current().remove_timeout(session.timer)
        self.dispatch.session_ended(session)
        self._check_drained(session)
        self.polls.answer(session)
        for ws in (session.websocket, session.probe):
            if ws is not None:
                ws.writer.flush_now()  # the last frames (the close packet among them) before the close
                ws.close_transport()
        self.heap.released()

    # --- timers ----------------------------------------------------------------------------

    def _schedule(self, session: SessionIO) -> None:
        loop = IOLoop.current()
        if session.timer is not None:
            loop.remove_timeout(session.timer)
        deadline = min(session.engine.deadline(), session.connection.deadline() or float("inf"))
        session.timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._tick, session)

    def _tick(self, session: SessionIO) -> None:
        session.timer = None
        now = time.monotonic()
        self.dispatch.tick(session, now)
        session.engine.tick(now)
        self.flush(session)
        if not session.engine.closed:
            self._schedule(session)


def websocket_frame(frame: str | bytes) -> WireFrame:
    """The websocket frame of one encoded Engine.IO packet (text, or binary for bytes)."""
    return wire_frame([frame.encode() if isinstance(frame, str) else frame], is_binary(frame))


#: Query parameters of the Engine.IO transport itself, not of the client.
ENGINEIO_PARAMETERS = frozenset({"EIO", "transport", "sid", "t", "b64", "j"})


def handshake_of(request: HTTPServerRequest) -> Handshake:
    """What the client itself sent with a session's first request: its query parameters
    (the token, say) and the header namespace handlers use (Authorization). Nothing else
    is kept, so an idle session stays small."""
    query = {
        name: values[-1].decode("utf-8", "replace")
        for name, values in request.query_arguments.items()
        if name not in ENGINEIO_PARAMETERS
    }
    headers = {"authorization": request.headers["Authorization"]} if "Authorization" in request.headers else {}
    return Handshake(query, headers)
