"""The tornado handler of the Engine.IO path: polling GET/POST, websocket, CORS preflight.

It checks the request (EIO, transport, sid, method, origin, size), answers errors with
Engine.IO's JSON error bodies (400, 403, 413, 503), and otherwise moves bytes: it decodes
what arrives, hands packets to the EngineServer and writes what the server gives back.
A polling body larger than `max_payload` is refused before it is read or decoded.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tornado import web, websocket
from tornado.iostream import StreamClosedError

from kernels_service.protocol.ws_frames import wire_frame, writes_of
from kernels_service.socketio.eio_codec import decode_ws, encode_payload, is_binary, iter_payload
from kernels_service.socketio.errors import SocketIOProtocolError
from kernels_service.socketio.server import EngineServer, SessionIO

log = logging.getLogger("kernels_service.socketio")

#: Engine.IO's error codes, as its reference server sends them.
UNKNOWN_TRANSPORT, UNKNOWN_SID, BAD_METHOD, BAD_REQUEST, FORBIDDEN, BAD_VERSION = range(6)
MESSAGES = ["Transport unknown", "Session ID unknown", "Bad handshake method", "Bad request", "Forbidden",
            "Unsupported protocol version"]  # fmt: skip


@web.stream_request_body
class EngineIOHandler(websocket.WebSocketHandler):
    """`/socket.io/`: one handler for both transports and both protocol generations."""

    def initialize(self, server: EngineServer) -> None:
        self.server = server
        self.session: SessionIO | None = None
        self.version = 4
        self._body = bytearray()
        self._refuse_after_open = False

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        """Websocket messages past maxPayload are refused by tornado (close 1009)."""
        return self.server.config.max_payload

    @property
    def ping_interval(self) -> float | None:
        """No websocket-level pings: Engine.IO has its own heartbeat, in both generations."""
        return None

    # --- request checks ----------------------------------------------------------------

    def prepare(self) -> None:
        """Refuse an oversized polling body from its Content-Length, before reading it."""
        if self.request.method != "POST":
            return
        limit = self.server.config.max_payload
        length = self.request.headers.get("Content-Length", "0")
        size = int(length) if length.isascii() and length.isdigit() else limit + 1
        if size > limit:
            session = self.server.sessions.get(self.get_query_argument("sid", ""))
            if session is not None and not session.engine.payload_allowed(size):  # the engine's rule closes it
                self.server.flush(session)
            self._fail(BAD_REQUEST, 413, "Payload too large")
            return
        self.request.connection.set_max_body_size(limit)  # a chunked body past it drops the connection

    def data_received(self, chunk: bytes) -> None:
        self._body += chunk

    def _check(self, transport_needed: str | None = None) -> str | None:
        """The transport of a valid request; otherwise answer 400/403 and return None."""
        version, transport = self.get_query_argument("EIO", ""), self.get_query_argument("transport", "")
        if version not in ("3", "4"):
            return self._fail(BAD_VERSION)
        self.version = int(version)
        if transport not in ("polling", "websocket") or (transport_needed and transport != transport_needed):
            return self._fail(UNKNOWN_TRANSPORT)
        if not self.server.access.origin_allowed(self.request):
            return self._fail(FORBIDDEN, 403)
        sid = self.get_query_argument("sid", None)
        if sid is not None:
            self.session = self.server.sessions.get(sid)
            if self.session is None or self.session.engine.version != self.version:
                return self._fail(UNKNOWN_SID)
        return transport

    def _fail(self, code: int, status: int = 400, message: str | None = None) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self._cors()
        self.finish(json.dumps({"code": code, "message": message or MESSAGES[code]}))
        return None

    def _cors(self) -> None:
        for name, value in self.server.access.cors_headers(self.request).items():
            self.set_header(name, value)

    def put(self, *args: str) -> None:
        self._fail(BAD_METHOD)

    def options(self, *args: str) -> None:
        self._cors()
        self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
        self.set_status(204)
        self.finish()

    # --- polling -------------------------------------------------------------------------

    async def get(self, *args: str) -> None:
        transport = self._check()
        if transport is None:
            return
        if transport == "websocket":
            if self.request.headers.get("Upgrade", "").lower() != "websocket":
                return self._fail(BAD_REQUEST)
            if self.session is not None and (self.session.engine.transport != "polling" or self.session.probe):
                self._refuse_after_open = True  # as the reference does: accept, then close at once
            await super().get(*args)
            return
        if self.session is None:
            b64 = self.get_query_argument("b64", "") in ("1", "true")
            session = self.server.open_session(self.version, "polling", self.request, b64)
            if session is None:
                return self._fail(BAD_REQUEST, 503, "Too many sessions")
            return self._respond(session, session.engine.take_outgoing())
        packets = await self.server.poll(self.session)
        if packets is None:
            return self._fail(BAD_REQUEST)
        if self.request.connection.stream is not None and not self.request.connection.stream.closed():
            self._respond(self.session, packets)

    def _respond(self, session: SessionIO, packets: list) -> None:
        body, content_type = encode_payload(packets, session.engine.version, session.engine.b64)
        self._cors()
        self.set_header("Content-Type", content_type)
        self.finish(body)

    def on_connection_close(self) -> None:
        if self.ws_connection is None and self.session is not None:
            self.server.poll_abandoned(self.session)
        super().on_connection_close()

    def post(self, *args: str) -> None:
        if self._check("polling") is None:
            return
        session = self.session
        if session is None:
            return self._fail(BAD_METHOD)
        if session.engine.transport != "polling":
            return self._fail(BAD_REQUEST)
        try:  # the body is at most maxPayload: prepare() saw to that
            for packet in iter_payload(bytes(self._body), session.engine.version, utf8_twice=session.engine.b64):
                self.server.receive(session, packet, "polling")
                if session.engine.closed:
                    break
        except SocketIOProtocolError as error:
            self.server.close_session(session, f"bad polling payload: {error}")
            return self._fail(BAD_REQUEST)
        self.server.flush(session)
        if session.engine.closed and not session.engine.closed.by_client:
            return self._fail(BAD_REQUEST)  # e.g. too many messages waiting
        self._cors()
        self.set_header("Content-Type", "text/html")
        self.finish("ok")

    # --- websocket -----------------------------------------------------------------------

    def check_origin(self, origin: str) -> bool:
        return self.server.access.origin_allowed(self.request)

    def open(self, *args: str) -> None:
        self.set_nodelay(True)
        if self._refuse_after_open:
            self.session = None
            self.close(1008, "session already has a websocket")
        elif self.session is None:
            self.session = self.server.open_session(self.version, "websocket", self.request, b64=False)
            if self.session is None:
                self.close(1013, "too many sessions")
                return
            self.session.websocket = self
            self.server.flush(self.session)
        else:
            self.session.probe = self

    def on_message(self, frame: str | bytes) -> None:
        session = self.session
        if session is None or session.engine.closed:
            return
        try:
            packet = decode_ws(frame, session.engine.version)
        except SocketIOProtocolError as error:
            self.server.close_session(session, f"bad websocket frame: {error}")
            return
        self.server.receive(session, packet, "websocket", ws=self)
        self.server.flush(session)

    def on_close(self) -> None:
        if self.session is not None:
            self.server.transport_closed(self.session, self)

    # --- Transport (used by the EngineServer) ---------------------------------------------

    def send_frame(self, frame: str | bytes) -> Any:
        try:
            return self.write_message(frame, binary=is_binary(frame))
        except websocket.WebSocketClosedError:
            return None

    def send_frames(self, frames: list[str | bytes]) -> Any:
        """The frames straight to the stream, small ones joined into one write and big ones
        sent as they are (see protocol.ws_frames); the same frames `write_message` makes."""
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            return None
        wire = [wire_frame([frame.encode() if isinstance(frame, str) else frame], is_binary(frame)) for frame in frames]
        written = None
        try:
            for piece in writes_of(wire):
                written = connection.stream.write(piece)  # the stream's writes complete in order
        except StreamClosedError:
            return None
        return written

    def close_transport(self) -> None:
        if self.ws_connection is not None:
            self.close()


def engineio_routes(server: EngineServer, paths: list[str]) -> list[tuple[str, type, dict[str, Any]]]:
    """Route table entries for the Engine.IO paths (e.g. `/socket.io/`, `/jupyter/socket.io/`)."""
    return [(path, EngineIOHandler, {"server": server}) for path in dict.fromkeys(paths)]
