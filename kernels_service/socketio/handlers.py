"""The tornado handler of the Engine.IO path: polling GET/POST, websocket, CORS preflight.

It only moves bytes and maps decisions to tornado calls: it describes each request to
the server, which decides by the sans-IO rules (`admission`) what it is; it answers a
refusal with Engine.IO's JSON error body; it decodes what arrives and hands packets to
the server, and writes what the server gives back. A polling body larger than
`max_payload` is refused before it is read or decoded.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tornado import web, websocket

from kernels_service.socketio import admission
from kernels_service.socketio.eio_codec import decode_ws, encode_payload, iter_payload
from kernels_service.socketio.errors import RemoteProtocolError
from kernels_service.socketio.server import EngineServer
from kernels_service.socketio.session_io import SessionIO
from kernels_service.websocket_writer import FrameWriter, open_stream

log = logging.getLogger("kernels_service.socketio")


@web.stream_request_body
class EngineIOHandler(websocket.WebSocketHandler):
    """`/socket.io/`: one handler for both transports and both protocol generations."""

    def initialize(self, server: EngineServer) -> None:
        self.server = server
        self.session: SessionIO | None = None
        self._decision: admission.Decision | None = None  # what the server made of this request
        self._writer: FrameWriter | None = None
        self._body = bytearray()

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        """Websocket messages past maxPayload are refused by tornado (close 1009)."""
        return self.server.config.max_payload

    @property
    def ping_interval(self) -> float | None:
        """No websocket-level pings: Engine.IO has its own heartbeat, in both generations."""
        return None

    # --- requests --------------------------------------------------------------------------

    def _admit(self) -> admission.Decision:
        request = admission.EngineRequest(
            method=self.request.method or "",
            eio=self.get_query_argument("EIO", ""),
            transport=self.get_query_argument("transport", ""),
            sid=self.get_query_argument("sid", None),
            upgrade=self.request.headers.get("Upgrade", "").lower() == "websocket",
            origin_allowed=self.server.access.origin_allowed(self.request),
            host_allowed=self.server.access.host_allowed(self.request),
        )
        decision = self.server.admit(request)
        if isinstance(decision, admission.Refuse):
            self._refuse(decision)
        return decision

    def prepare(self) -> None:
        """Refuse an oversized polling body from its Content-Length, before reading it."""
        if self.request.method != "POST":
            return
        limit = self.server.config.max_payload
        size = admission.announced_size(self.request.headers.get("Content-Length"), limit)
        refusal = admission.payload_refusal(size, limit)
        if refusal is not None:
            session = self.server.sessions.get(self.get_query_argument("sid", ""))
            if session is not None:
                self.server.payload_too_large(session, size)
            self._refuse(refusal)
            return
        self.request.connection.set_max_body_size(limit)  # a chunked body past it drops the connection

    def data_received(self, chunk: bytes) -> None:
        self._body += chunk

    def _refuse(self, refusal: admission.Refuse) -> None:
        self.set_status(refusal.status)
        self.set_header("Content-Type", "application/json")
        self._cors()
        self.finish(json.dumps({"code": refusal.code, "message": refusal.text}))

    def _cors(self) -> None:
        for name, value in self.server.access.cors_headers(self.request).items():
            self.set_header(name, value)

    def put(self, *args: str) -> None:
        self._admit()

    def options(self, *args: str) -> None:
        self._cors()
        self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        self.set_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
        self.set_status(204)
        self.finish()

    # --- polling ---------------------------------------------------------------------------

    async def get(self, *args: str) -> None:
        decision = self._decision = self._admit()
        if admission.upgrades(decision):
            await super().get(*args)
        elif isinstance(decision, admission.OpenSession):
            b64 = self.get_query_argument("b64", "") in ("1", "true")
            session = self.server.open_session(decision, self.request, b64)
            self._respond(session, session.engine.take_outgoing())
        elif isinstance(decision, admission.Poll):
            await self._poll(self.server.session_of(decision.session))

    async def _poll(self, session: SessionIO) -> None:
        self.session = session
        packets = await self.server.poll(session)
        if packets is None:
            return self._refuse(admission.Refuse(admission.BAD_REQUEST))
        if self.request.connection.stream is not None and not self.request.connection.stream.closed():
            self._respond(session, packets)
        return None

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
        decision = self._admit()
        if not isinstance(decision, admission.Post):
            return
        session = self.server.session_of(decision.session)
        engine = session.engine
        try:  # the body is at most maxPayload: prepare() saw to that
            packets = list(iter_payload(bytes(self._body), engine.version, utf8_twice=engine.b64))
        except RemoteProtocolError as error:
            self.server.close_session(session, f"bad polling payload: {error}")
            return self._refuse(admission.Refuse(admission.BAD_REQUEST))
        self.server.receive_from(session, packets)
        refusal = admission.after_post(engine)
        if refusal is not None:
            return self._refuse(refusal)
        self._cors()
        self.set_header("Content-Type", "text/html")
        self.finish("ok")
        return None

    # --- websocket -------------------------------------------------------------------------

    def check_origin(self, origin: str) -> bool:
        return self.server.access.origin_allowed(self.request)

    def open(self, *args: str) -> None:
        self.set_nodelay(True)
        decision = self._decision
        if isinstance(decision, admission.RefuseWebsocket):
            self.close(decision.code, decision.reason)
        elif isinstance(decision, admission.Probe):
            session = self.server.session_of(decision.session)
            if not self.server.probe_opened(session, self):
                self.close(admission.CLOSE_POLICY, "session already has a websocket")
                return
            self.session = session
        elif isinstance(decision, admission.OpenSession):
            self.session = self.server.open_session(decision, self.request, b64=False)
            self.server.websocket_opened(self.session, self)

    def on_message(self, frame: str | bytes) -> None:
        session = self.session
        if session is None or session.engine.closed:
            return
        try:
            packet = decode_ws(frame, session.engine.version)
        except RemoteProtocolError as error:
            self.server.close_session(session, f"bad websocket frame: {error}")
            return
        self.server.receive_from(session, [packet], ws=self)

    def on_close(self) -> None:
        if self.session is not None:
            self.server.transport_closed(self.session, self)

    # --- Transport (used by the EngineServer) ----------------------------------------------

    @property
    def writer(self) -> FrameWriter:
        """This websocket's frame writer (made on first use: polling requests never need one)."""
        if self._writer is None:
            self._writer = FrameWriter(lambda: open_stream(self), on_flushed=self._flushed)
        return self._writer

    def _flushed(self) -> None:
        if self.session is not None and self.session.websocket is self:
            self.server.written(self.session)

    def close_transport(self, code: int | None = None, reason: str | None = None) -> None:
        if self.ws_connection is not None:
            self.close(code, reason)


def engineio_routes(server: EngineServer, paths: list[str]) -> list[tuple[str, type, dict[str, Any]]]:
    """Route table entries for the Engine.IO paths (e.g. `/socket.io/`, `/jupyter/socket.io/`)."""
    return [(path, EngineIOHandler, {"server": server}) for path in dict.fromkeys(paths)]
