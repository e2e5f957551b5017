"""Moves bytes between tornado and the sans-IO sessions: polls, websockets, timers, tasks.

One `EngineServer` serves both generations on one path; the `EIO` query parameter of
each request picks the generation of that session. Every protocol decision is made in
`engine.py` (Engine.IO) and `connection.py` (Socket.IO); this module only runs them:
it answers polls, writes websocket frames, fires timers, and runs each session's
Socket.IO task, which hands events to the namespace handlers one at a time, in order.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from tornado.httputil import HTTPServerRequest
from tornado.ioloop import IOLoop

from kernels_service.memory import HeapTrimmer
from kernels_service.metrics import count_closed, engineio_close_reason
from kernels_service.socketio.connection import (
    ConnectRequested,
    Disconnected,
    Event,
    EventReceived,
    SocketIOConnection,
)
from kernels_service.socketio.eio_codec import Packet, encode_ws
from kernels_service.socketio.engine import EngineConfig, EngineIOSession
from kernels_service.socketio.namespaces import ConnectRefused, Handshake, Namespaces, Socket

log = logging.getLogger("kernels_service.socketio")

HIGH_WATER = 4 * 1024 * 1024  # bytes on their way to one websocket before more wait in the session


class AccessRules(Protocol):
    """The origin policy the service applies at every door (see access.AccessPolicy)."""

    def origin_allowed(self, request: HTTPServerRequest) -> bool: ...

    def cors_headers(self, request: HTTPServerRequest) -> dict[str, str]: ...


class Transport(Protocol):
    """A websocket as the server sees it (the tornado handler)."""

    def send_frame(self, frame: str | bytes) -> Any:
        """Write a frame; return a future done when it has left, or None if it cannot be sent."""

    def send_frames(self, frames: list[str | bytes]) -> Any:
        """Write frames in one go; a future done when all have left, or None as above."""

    def close_transport(self) -> None: ...


@dataclass(eq=False, slots=True)
class SessionIO:
    """The I/O side of one Engine.IO session: transports, timer, and its Socket.IO task
    (which runs only while messages wait: an idle session holds no task)."""

    engine: EngineIOSession
    connection: SocketIOConnection
    handshake: Handshake
    sockets: dict[str, Socket] = field(default_factory=dict)
    poll: asyncio.Future[list[Packet] | None] | None = None
    websocket: Transport | None = None
    probe: Transport | None = None
    timer: Any = None
    in_flight: int = 0  # bytes written to the websocket (or about to be) and not yet flushed to the network
    unwritten: list[str | bytes] | None = None  # frames for the websocket at the end of this turn
    drain: asyncio.Future[None] | None = None  # done when all output queued so far has left
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class SessionLink:
    """What a session's sockets may ask of the server (`namespaces.ClientLink`): each
    packet they queue is flushed to the client's transport."""

    server: EngineServer
    session: SessionIO

    @property
    def handshake(self) -> Handshake:
        return self.session.handshake

    @property
    def session_id(self) -> str:
        return self.session.engine.sid

    @property
    def protocol(self) -> int:
        return self.session.connection.protocol

    def emit(self, namespace: str, event: str, args: tuple[Any, ...]) -> None:
        self.session.connection.emit(namespace, event, *args)
        self.server.flush(self.session)

    def send_encoded(self, messages: list[str | bytes]) -> None:
        self.session.connection.send_encoded(messages)
        self.server.flush(self.session)

    def ack(self, namespace: str, ack_id: int, args: list[Any]) -> None:
        self.session.connection.ack(namespace, ack_id, args)
        self.server.flush(self.session)

    def drained(self) -> asyncio.Future[None]:
        return self.server.drained(self.session)

    def disconnect(self, socket: Socket) -> None:
        self.server.disconnect(self.session, socket)

    def close_session(self, reason: str) -> None:
        self.server.close_session(self.session, reason)


class EngineServer:
    """Every live Engine.IO session of one service, both protocol generations."""

    def __init__(
        self,
        namespaces: Namespaces,
        access: AccessRules,
        config: EngineConfig | None = None,
        connect_timeout: float = 45.0,
        queue_limit: int = 128 * 1024 * 1024,
        max_sessions: int = 1000,
        engine_only: bool = False,
        heap: HeapTrimmer | None = None,
    ):
        self.namespaces = namespaces
        self.access = access
        self.config = config or EngineConfig()
        self.connect_timeout = connect_timeout
        self.queue_limit = queue_limit
        self.max_sessions = max_sessions
        self.engine_only = engine_only  # the conformance server's Engine.IO echo: no Socket.IO layer
        self.sessions: dict[str, SessionIO] = {}
        self.heap = heap or HeapTrimmer()  # told when a session ends: gives a burst's memory back

    def open_session(self, version: int, transport: str, request: HTTPServerRequest, b64: bool) -> SessionIO | None:
        """A new session, or None when `max_sessions` are open already."""
        if len(self.sessions) >= self.max_sessions:
            log.warning("Refusing an Engine.IO session: %d sessions are open", len(self.sessions))
            return None
        now = time.monotonic()
        engine = EngineIOSession(secrets.token_urlsafe(15), version, self.config, now, transport, b64)
        connect_timeout = float("inf") if self.engine_only else self.connect_timeout
        session = SessionIO(engine, SocketIOConnection(engine, now, connect_timeout), handshake_of(request))
        self.sessions[engine.sid] = session
        if not self.engine_only:
            self._start_task(session, session.connection.opened())
        self._schedule(session)
        return session

    def _start_task(self, session: SessionIO, events: list[Event]) -> None:
        """Run the session's task, unless it runs already (it takes every waiting message)."""
        if session.task is None and not session.engine.closed:
            session.task = asyncio.ensure_future(self._run(session, events))
            session.task.add_done_callback(partial(self._task_done, session))

    # --- from the client ------------------------------------------------------------------

    def receive(self, session: SessionIO, packet: Packet, over: str, ws: Transport | None = None) -> None:
        """Feed one packet from the client to its session (call `flush` after a batch).

        Engine.IO packets (heartbeats, upgrade) take effect at once; messages wait in the
        engine's bounded inbox for the session's task, so a namespace connect that waits
        for its kernel never holds up the heartbeat.
        """
        for reply in session.engine.receive(packet, time.monotonic(), over):
            if ws is not None:
                ws.send_frame(encode_ws(reply, session.engine.version))
        if ws is not None and ws is session.probe and session.engine.transport == "websocket":
            session.websocket, session.probe = ws, None
        if session.engine.has_messages():
            self._start_task(session, [])

    async def poll(self, session: SessionIO) -> list[Packet] | None:
        """The packets that answer a polling GET, once there are some; None means 400."""
        if not session.engine.poll_requested():
            self.flush(session)
            return None
        if session.engine.has_outgoing() or session.engine.closed:
            return self._answer_poll(session)
        session.poll = asyncio.get_running_loop().create_future()
        return await session.poll

    def poll_abandoned(self, session: SessionIO) -> None:
        """The client closed the connection of its waiting poll."""
        if session.poll is not None and not session.poll.done():
            session.poll.set_result(None)
            session.poll = None
            session.engine.poll_abandoned()
            self.flush(session)

    def transport_closed(self, session: SessionIO, ws: Transport) -> None:
        if ws is session.probe:
            session.probe = None
            session.engine.websocket_closed(was_probe=True)
        elif ws is session.websocket:
            session.engine.websocket_closed(was_probe=False)
        self.flush(session)

    # --- the session's task: Socket.IO events, in order --------------------------------------

    async def _run(self, session: SessionIO, events: list[Event]) -> None:
        """Hand the waiting messages to the Socket.IO layer (or echo them), one at a time,
        in order; end when none is left."""
        engine, connection = session.engine, session.connection
        try:
            for event in events:
                await self._handle(session, event)
            while not engine.closed and (message := engine.next_message()) is not None:
                if self.engine_only:
                    engine.send(message)
                else:
                    for event in connection.receive(message, time.monotonic()):
                        await self._handle(session, event)
                self.flush(session)
        finally:
            session.task = None
        self.flush(session)

    async def _handle(self, session: SessionIO, event: Event) -> None:
        if isinstance(event, ConnectRequested):
            await self._connect(session, event.namespace, event.auth)
        elif isinstance(event, EventReceived):
            socket = session.sockets[event.namespace]
            socket.handler.on_event(socket, event.name, event.args, event.ack_id)
        elif isinstance(event, Disconnected):
            self._forget(session, event.namespace)

    async def _connect(self, session: SessionIO, namespace: str, auth: dict[str, Any]) -> None:
        handler = self.namespaces.resolve(namespace)
        if handler is None:
            return session.connection.refuse(namespace, "Invalid namespace")
        socket = Socket(SessionLink(self, session), namespace, handler)
        try:
            await handler.on_connect(socket, auth)
        except ConnectRefused as refusal:
            return session.connection.refuse(namespace, str(refusal))
        sid = session.connection.accept(namespace)
        if sid is None:
            return None
        socket.sid = sid
        session.sockets[namespace] = socket
        handler.on_connected(socket, auth)
        return None

    def _forget(self, session: SessionIO, namespace: str) -> None:
        socket = session.sockets.pop(namespace, None)
        if socket is not None:
            socket.handler.on_disconnect(socket)

    def _task_done(self, session: SessionIO, task: asyncio.Task[None]) -> None:
        """A session task that failed is a bug of ours: log it and close that session."""
        if not task.cancelled() and task.exception() is not None:
            log.error("Socket.IO task of session %s failed", session.engine.sid, exc_info=task.exception())
            self.close_session(session, "internal error")

    # --- what namespace handlers call (through their Socket) -------------------------------

    def disconnect(self, session: SessionIO, socket: Socket) -> None:
        """Server-side disconnect of one socket."""
        if session.sockets.get(socket.namespace) is socket:
            session.connection.disconnect(socket.namespace, time.monotonic())
            self._forget(session, socket.namespace)
            self.flush(session)

    def close_session(self, session: SessionIO, reason: str) -> None:
        session.engine.close(reason)
        self.flush(session)

    # --- to the client ----------------------------------------------------------------------

    def flush(self, session: SessionIO) -> None:
        """Send queued packets on the current transport; tidy up a closed session.

        A websocket gets packets while less than `HIGH_WATER` bytes are still on their
        way; the rest waits in the session. A client that lets more than `queue_limit`
        bytes pile up is disconnected with a reason: output is never dropped silently.
        """
        engine = session.engine
        if engine.outgoing_bytes() > self.queue_limit:
            engine.take_outgoing()
            engine.close(f"client too slow: more than {self.queue_limit // (1024 * 1024)} MiB waiting")
        if engine.has_outgoing() or engine.closed:
            if engine.transport == "websocket" and session.websocket is not None:
                if session.in_flight < HIGH_WATER or engine.closed:
                    self._write(session, engine.take_outgoing())
            elif session.poll is not None and not session.poll.done():
                session.poll.set_result(self._answer_poll(session))
                session.poll = None
        self._check_drained(session)
        if engine.closed:
            self._end(session)

    def _answer_poll(self, session: SessionIO) -> list[Packet]:
        packets = session.engine.poll_answered()
        self._check_drained(session)
        return packets

    def drained(self, session: SessionIO) -> asyncio.Future[None]:
        """A future done once everything queued for the client so far has left the server.

        Over websocket: nothing waits in the session and less than `HIGH_WATER` is in
        flight; over polling: a poll has taken the queue. Per-socket outboxes use it to
        hold output back (merging stream output) while a client is slow.
        """
        if session.drain is None or session.drain.done():
            session.drain = asyncio.get_running_loop().create_future()
        self._check_drained(session)
        return session.drain

    def _check_drained(self, session: SessionIO) -> None:
        if session.drain is None or session.drain.done():
            return
        if session.engine.closed or (not session.engine.has_outgoing() and session.in_flight < HIGH_WATER):
            session.drain.set_result(None)

    def _write(self, session: SessionIO, packets: list[Packet]) -> None:
        """Queue the packets' frames for the session's websocket. Whatever is queued in one
        turn of the event loop (a burst of kernel output, fanned out) goes out at its end in
        one write with one callback, not a write, a task and a callback per frame."""
        frames = [encode_ws(packet, session.engine.version) for packet in packets]
        session.in_flight += sum(map(len, frames))
        if session.unwritten is None:
            session.unwritten = frames
            asyncio.get_running_loop().call_soon(self._write_queued, session)
        else:
            session.unwritten += frames

    def _write_queued(self, session: SessionIO) -> None:
        frames, session.unwritten = session.unwritten, None
        if frames is None:  # written already, before a close
            return
        size = sum(map(len, frames))
        sent = None if session.websocket is None else session.websocket.send_frames(frames)
        if sent is None:  # the websocket is closing: nothing is on its way (its close moves or ends the session)
            session.in_flight -= size
        else:
            sent.add_done_callback(partial(self._sent, session, size))

    def _sent(self, session: SessionIO, size: int, _: Any = None) -> None:
        session.in_flight -= size
        if session.in_flight < HIGH_WATER and session.engine.sid in self.sessions:
            self.flush(session)

    def _end(self, session: SessionIO) -> None:
        if self.sessions.pop(session.engine.sid, None) is None:
            return
        log.info("Engine.IO session %s closed: %s", session.engine.sid, session.engine.closed.reason)
        reason = engineio_close_reason(session.engine.closed.reason)
        if reason is not None:
            count_closed(reason)
        if session.timer is not None:
            IOLoop.current().remove_timeout(session.timer)
        if session.task is not None:
            session.task.cancel()
        for event in session.connection.session_closed(time.monotonic()):
            self._forget(session, event.namespace)
        self._check_drained(session)
        if session.poll is not None and not session.poll.done():
            session.poll.set_result(session.engine.poll_answered())
        self._write_queued(session)  # the last frames (the close packet among them) before the close
        for ws in (session.websocket, session.probe):
            if ws is not None:
                ws.close_transport()
        self.heap.released()

    # --- timers -------------------------------------------------------------------------------

    def _schedule(self, session: SessionIO) -> None:
        loop = IOLoop.current()
        if session.timer is not None:
            loop.remove_timeout(session.timer)
        deadline = min(session.engine.deadline(), session.connection.deadline() or float("inf"))
        session.timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._tick, session)

    def _tick(self, session: SessionIO) -> None:
        session.timer = None
        now = time.monotonic()
        session.connection.tick(now)
        session.engine.tick(now)
        self.flush(session)
        if not session.engine.closed:
            self._schedule(session)

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            self.close_session(session, "server shutting down")


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
