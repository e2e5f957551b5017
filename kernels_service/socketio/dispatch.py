"""The Socket.IO dispatch: each session's task hands the messages waiting in its engine to
the Socket.IO connection, and what happened to the namespace handlers, one at a time,
in order; what handlers do through their `Socket` comes back here (`SessionLink`).

The task runs only while messages wait (an idle session holds no task), so a namespace
connect that waits for its kernel never holds up the heartbeat, which the server runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from kernels_service.socketio.connection import (
    ConnectRequested,
    Disconnected,
    Event,
    EventReceived,
    Messages,
    SessionEnds,
)
from kernels_service.socketio.namespaces import ConnectRefused, Handshake, Namespaces, Socket
from kernels_service.socketio.session_io import SessionIO

log = logging.getLogger("kernels_service.socketio")


class SessionOutput(Protocol):
    """What the dispatch asks of the server: send what a session queued, end a session,
    and know when a session's output has left."""

    def flush(self, session: SessionIO) -> None: ...

    def close_session(self, session: SessionIO, reason: str) -> None: ...

    def drained(self, session: SessionIO) -> asyncio.Future[None]: ...


class SocketIODispatch:
    """Socket.IO events of every session, to and from the namespace handlers.

    `engine_only`: the conformance server's Engine.IO echo, with no Socket.IO layer: every
    message is sent back as it came."""

    def __init__(
        self,
        namespaces: Namespaces,
        output: SessionOutput,
        engine_only: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.namespaces = namespaces
        self.output = output
        self.engine_only = engine_only
        self.clock = clock

    def session_opened(self, session: SessionIO) -> None:
        if not self.engine_only:
            self._start(session, session.connection.opened())

    def messages_waiting(self, session: SessionIO) -> None:
        """Messages came in: run the session's task unless it runs already."""
        if session.engine.has_messages():
            self._start(session, [])

    def _start(self, session: SessionIO, events: list[Event]) -> None:
        if session.task is None and not session.engine.closed:
            session.task = asyncio.ensure_future(self._run(session, events))
            session.task.add_done_callback(partial(self._task_done, session))

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
                    for event in connection.receive(message, self.clock()):
                        await self._handle(session, event)
                self.output.flush(session)
        finally:
            session.task = None
        self.output.flush(session)

    async def _handle(self, session: SessionIO, event: Event) -> None:
        if isinstance(event, ConnectRequested):
            await self._connect(session, event.namespace, event.auth)
        elif isinstance(event, EventReceived):
            socket = session.sockets[event.namespace]
            socket.handler.on_event(socket, event.name, event.args, event.ack_id)
        elif isinstance(event, Disconnected):
            self._forget(session, event.namespace)
        elif isinstance(event, SessionEnds):
            self.output.close_session(session, event.reason)

    async def _connect(self, session: SessionIO, namespace: str, auth: dict[str, Any]) -> None:
        """Ask the namespace's handler; accept or refuse the connect as it says."""
        connection = session.connection
        handler = self.namespaces.resolve(namespace)
        if handler is None:
            session.engine.send_all(connection.refuse(namespace, "Invalid namespace"))
            return
        socket = Socket(SessionLink(self, session), namespace, handler)
        try:
            await handler.on_connect(socket, auth)
        except ConnectRefused as refusal:
            session.engine.send_all(connection.refuse(namespace, str(refusal)))
            return
        sid, messages = connection.accept(namespace)
        session.engine.send_all(messages)
        if sid is None:  # the session ended while the handler decided
            return
        socket.sid = sid
        session.sockets[namespace] = socket
        handler.on_connected(socket, auth)

    def _forget(self, session: SessionIO, namespace: str) -> None:
        socket = session.sockets.pop(namespace, None)
        if socket is not None:
            socket.handler.on_disconnect(socket)

    def _task_done(self, session: SessionIO, task: asyncio.Task[None]) -> None:
        """A session task that failed is a bug of ours: log it and close that session."""
        if not task.cancelled() and task.exception() is not None:
            log.error("Socket.IO task of session %s failed", session.sid, exc_info=task.exception())
            self.output.close_session(session, "internal error")

    def disconnect(self, session: SessionIO, socket: Socket) -> None:
        """Server-side disconnect of one socket."""
        if session.sockets.get(socket.namespace) is socket:
            session.engine.send_all(session.connection.disconnect(socket.namespace, self.clock()))
            self._forget(session, socket.namespace)
            self.output.flush(session)

    def tick(self, session: SessionIO, now: float) -> None:
        """The connect timeout: a session that joined nothing in time ends."""
        for event in session.connection.tick(now):
            if isinstance(event, SessionEnds):
                session.engine.close(event.reason)

    def session_ended(self, session: SessionIO) -> None:
        """The session is over: stop its task, and every namespace it joined is left."""
        if session.task is not None:
            session.task.cancel()
        for event in session.connection.session_closed(self.clock()):
            self._forget(session, event.namespace)


@dataclass(frozen=True, slots=True)
class SessionLink:
    """What a session's sockets may ask (`namespaces.ClientLink`): each packet they queue
    goes out at once."""

    dispatch: SocketIODispatch
    session: SessionIO

    @property
    def handshake(self) -> Handshake:
        return self.session.handshake

    @property
    def session_id(self) -> str:
        return self.session.sid

    @property
    def protocol(self) -> int:
        return self.session.connection.protocol

    def emit(self, namespace: str, event: str, args: tuple[Any, ...]) -> None:
        self._send(self.session.connection.emit(namespace, event, *args))

    def send_encoded(self, messages: Messages) -> None:
        self._send(messages if not self.session.connection.ended else [])

    def ack(self, namespace: str, ack_id: int, args: list[Any]) -> None:
        self._send(self.session.connection.ack(namespace, ack_id, args))

    def _send(self, messages: Messages) -> None:
        self.session.engine.send_all(messages)
        self.dispatch.output.flush(self.session)

    def drained(self) -> asyncio.Future[None]:
        return self.dispatch.output.drained(self.session)

    def disconnect(self, socket: Socket) -> None:
        self.dispatch.disconnect(self.session, socket)

    def close_session(self, reason: str) -> None:
        self.dispatch.output.close_session(self.session, reason)
