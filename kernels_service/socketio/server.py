"""Moves bytes between tornado and the sans-IO sessions: polling requests, websockets, timers.

One `EngineServer` serves both generations on one path; the `EIO` query parameter of
each request picks the generation of that session. The handlers only parse HTTP and
hand packets over; every protocol decision is in `engine.py` and `connection.py`.
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

from kernels_service.socketio.connection import Handshake, Namespaces, SocketIOConnection
from kernels_service.socketio.eio_codec import NOOP, Packet, encode_ws
from kernels_service.socketio.engine import EngineConfig, EngineSession

log = logging.getLogger("kernels_service.socketio")

HIGH_WATER = 4 * 1024 * 1024  # bytes on their way to one websocket before more wait in the session
MAX_PENDING_MESSAGES = 1000  # client messages waiting for the Socket.IO layer (a namespace connect may wait)


class AccessRules(Protocol):
    """The origin policy the service applies at every door (see web.policy.AccessPolicy)."""

    def origin_allowed(self, request: HTTPServerRequest) -> bool: ...

    def cors_headers(self, request: HTTPServerRequest) -> dict[str, str]: ...

    def token_accepted(self, request: HTTPServerRequest) -> bool: ...


class Transport(Protocol):
    """A websocket as the server sees it (the tornado handler)."""

    def send_frame(self, frame: str | bytes) -> Any:
        """Write a frame; return a future done when it has left, or None if it cannot be sent."""

    def close_transport(self) -> None: ...


@dataclass(eq=False)
class LiveSession:
    """An Engine.IO session with its Socket.IO connection and the I/O attached to it."""

    engine: EngineSession
    connection: SocketIOConnection
    poll: asyncio.Future[list[Packet]] | None = None
    websocket: Transport | None = None
    probe: Transport | None = None
    timer: Any = None
    idle_since: float | None = field(default=None)
    in_flight: int = 0  # bytes written to the websocket and not yet flushed to the network
    drain: asyncio.Future[None] | None = None  # done when all output queued so far has left
    inbox: asyncio.Queue[str | bytes] = field(default_factory=asyncio.Queue)  # messages for the Socket.IO layer
    consumer: asyncio.Task[None] | None = None


class EngineServer:
    """Every live Engine.IO session of one service, both protocol generations."""

    def __init__(
        self,
        namespaces: Namespaces,
        access: AccessRules,
        config: EngineConfig | None = None,
        connect_timeout: float = 45.0,
        queue_limit: int = 128 * 1024 * 1024,
    ):
        self.namespaces = namespaces
        self.access = access
        self.config = config or EngineConfig()
        self.connect_timeout = connect_timeout
        self.queue_limit = queue_limit
        self.sessions: dict[str, LiveSession] = {}
        self.connection_class: Any = SocketIOConnection  # the conformance server's Engine.IO echo swaps it

    def open_session(self, version: int, transport: str, request: HTTPServerRequest, b64: bool) -> LiveSession:
        sid = secrets.token_urlsafe(15)
        engine = EngineSession(sid, version, self.config, time.monotonic(), transport, b64)
        handshake = Handshake(
            {k: v[-1].decode("utf-8", "replace") for k, v in request.query_arguments.items()},
            {k.lower(): v for k, v in request.headers.items()},
        )
        live = LiveSession(engine, self.connection_class(engine, self.namespaces, handshake))
        live.connection.on_output = lambda: self.flush(live)
        live.connection.drained = lambda: self.drained(live)
        self.sessions[sid] = live
        live.connection.opened()
        live.consumer = asyncio.ensure_future(self._consume(live))
        self._schedule(live)
        return live

    def receive(self, live: LiveSession, packets: list[Packet], over: str, ws: Transport | None = None) -> None:
        """Feed packets from the client to the session, then send what is due.

        Engine.IO packets (heartbeats, upgrade) take effect at once; messages go, in order,
        to the Socket.IO layer's own task, so a namespace connect that waits for its kernel
        never holds up the heartbeat.
        """
        for packet in packets:
            for reply in live.engine.receive(packet, time.monotonic(), over):
                if ws is not None:
                    ws.send_frame(encode_ws(reply, live.engine.version))
            if over == "websocket" and ws is live.probe and live.engine.transport == "websocket":
                live.websocket, live.probe = ws, None
            if live.engine.probed or live.engine.transport == "websocket":
                self.release_poll(live)
            for message in live.engine.take_messages():
                live.inbox.put_nowait(message)
        if live.inbox.qsize() > MAX_PENDING_MESSAGES:
            live.engine.close("too many messages waiting")
        self.flush(live)

    async def _consume(self, live: LiveSession) -> None:
        """Hand the client's messages to the Socket.IO layer, one at a time, in order."""
        while True:
            message = await live.inbox.get()
            await live.connection.receive(message)
            self.flush(live)

    def flush(self, live: LiveSession) -> None:
        """Send queued packets on the current transport; tidy up a closed session.

        A websocket gets packets while less than `HIGH_WATER` bytes are still on their
        way; the rest waits in the session. A client that lets more than `queue_limit`
        bytes pile up is disconnected with a reason: output is never dropped silently.
        """
        engine = live.engine
        if engine.outgoing_bytes() > self.queue_limit:
            log.warning("Closing Engine.IO session %s: client too slow", engine.sid)
            engine.take_outgoing()
            engine.close(f"client too slow: more than {self.queue_limit // (1024 * 1024)} MiB waiting")
        if engine.has_outgoing():
            if engine.transport == "websocket" and live.websocket is not None:
                if live.in_flight < HIGH_WATER or engine.closed:
                    self._write(live, live.websocket, engine.take_outgoing())
            elif live.poll is not None and not live.poll.done():
                live.poll.set_result(engine.take_outgoing())
                live.poll = None
        self._track_namespaces(live)
        self._check_drained(live)
        if engine.closed:
            self._end(live)

    def take_for_poll(self, live: LiveSession) -> list[Packet]:
        """The packets a poll request answers with now (NOOP while upgrading)."""
        packets = live.engine.take_outgoing() or [Packet(NOOP)]
        self._check_drained(live)
        return packets

    def drained(self, live: LiveSession) -> asyncio.Future[None]:
        """A future done once everything queued for the client so far has left the server.

        Over websocket: nothing waits in the session and less than `HIGH_WATER` is in
        flight; over polling: a poll has taken the queue. Per-socket outboxes use it to
        hold output back (merging stream output) while a client is slow.
        """
        if live.drain is None or live.drain.done():
            live.drain = asyncio.get_running_loop().create_future()
        return live.drain

    def _check_drained(self, live: LiveSession) -> None:
        if live.drain is None or live.drain.done():
            return
        if live.engine.closed or (not live.engine.has_outgoing() and live.in_flight < HIGH_WATER):
            live.drain.set_result(None)

    def _write(self, live: LiveSession, ws: Transport, packets: list[Packet]) -> None:
        for packet in packets:
            frame = encode_ws(packet, live.engine.version)
            sent = ws.send_frame(frame)
            if sent is not None:
                live.in_flight += len(frame)
                sent.add_done_callback(partial(self._sent, live, len(frame)))

    def _sent(self, live: LiveSession, size: int, _: Any = None) -> None:
        live.in_flight -= size
        if live.in_flight < HIGH_WATER and live.engine.sid in self.sessions:
            self.flush(live)

    def release_poll(self, live: LiveSession) -> None:
        """Answer a pending poll with NOOP: the client is moving to websocket."""
        if live.poll is not None and not live.poll.done():
            live.poll.set_result([Packet(NOOP)])
            live.poll = None

    def _track_namespaces(self, live: LiveSession) -> None:
        """A session in no namespace for `connect_timeout` is closed (as the reference server does)."""
        if live.connection.sockets:
            live.idle_since = None
        elif live.idle_since is None:
            live.idle_since = time.monotonic()
            self._schedule(live)

    def transport_closed(self, live: LiveSession, ws: Transport) -> None:
        if live.probe is ws:
            live.probe = None
        elif live.websocket is ws:
            live.engine.close("transport closed", notify=False)
            self.flush(live)

    def _end(self, live: LiveSession) -> None:
        if self.sessions.pop(live.engine.sid, None) is None:
            return
        log.debug("Engine.IO session %s closed: %s", live.engine.sid, live.engine.closed)
        if live.timer is not None:
            IOLoop.current().remove_timeout(live.timer)
        if live.consumer is not None:
            live.consumer.cancel()
        live.connection.closed()
        self._check_drained(live)
        if live.poll is not None and not live.poll.done():
            live.poll.set_result(live.engine.take_outgoing() or [Packet(NOOP)])
        for ws in (live.websocket, live.probe):
            if ws is not None:
                ws.close_transport()

    def _schedule(self, live: LiveSession) -> None:
        loop = IOLoop.current()
        if live.timer is not None:
            loop.remove_timeout(live.timer)
        deadline = live.engine.deadline()
        if live.idle_since is not None:
            deadline = min(deadline, live.idle_since + self.connect_timeout)
        live.timer = loop.call_later(max(0.0, deadline - time.monotonic()), self._tick, live)

    def _tick(self, live: LiveSession) -> None:
        live.timer = None
        now = time.monotonic()
        if live.idle_since is not None and now >= live.idle_since + self.connect_timeout:
            live.engine.close("no namespace joined in time")
        live.engine.tick(now)
        self.flush(live)
        if not live.engine.closed:
            self._schedule(live)

    def close_all(self) -> None:
        for live in list(self.sessions.values()):
            live.engine.close("server shutting down")
            self.flush(live)
