"""The tornado handler of the Engine.IO path: polling GET/POST, websocket, CORS preflight.

It checks the request (EIO, transport, sid, method, origin, size) and answers errors with
Engine.IO's JSON error bodies and status 400/403; everything else is the EngineServer's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from tornado import websocket

from kernels_service.protocol import ProtocolError
from kernels_service.socketio.eio_codec import decode_payload, decode_ws, encode_payload
from kernels_service.socketio.server import EngineServer, LiveSession

log = logging.getLogger("kernels_service.socketio")

#: Engine.IO's error codes, as its reference server sends them.
UNKNOWN_TRANSPORT, UNKNOWN_SID, BAD_METHOD, BAD_REQUEST, FORBIDDEN, BAD_VERSION = range(6)
MESSAGES = ["Transport unknown", "Session ID unknown", "Bad handshake method", "Bad request", "Forbidden",
            "Unsupported protocol version"]  # fmt: skip


class EngineIOHandler(websocket.WebSocketHandler):
    """`/socket.io/`: one handler for both transports and both protocol generations."""

    def initialize(self, server: EngineServer) -> None:
        self.server = server
        self.live: LiveSession | None = None
        self.version = 4

    # --- request checks ----------------------------------------------------------------

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
            self.live = self.server.sessions.get(sid)
            if self.live is None or self.live.engine.version != self.version:
                return self._fail(UNKNOWN_SID)
        return transport

    def _fail(self, code: int, status: int = 400) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self._cors()
        self.finish(json.dumps({"code": code, "message": MESSAGES[code]}))
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
            if self.live is not None and (self.live.engine.transport != "polling" or self.live.probe is not None):
                return self._fail(BAD_REQUEST)
            await super().get(*args)
            return
        if self.live is None:
            b64 = self.get_query_argument("b64", "") in ("1", "true")
            live = self.server.open_session(self.version, "polling", self.request, b64)
            return self._respond(live, live.engine.take_outgoing())
        await self._poll(self.live)

    async def _poll(self, live: LiveSession) -> None:
        if live.engine.transport != "polling" or live.poll is not None:
            if live.poll is not None:  # two polls at once: the client is broken
                live.engine.close("overlapping polls")
                self.server.flush(live)
            return self._fail(BAD_REQUEST)
        if live.engine.has_outgoing() or live.engine.probed:
            return self._respond(live, self.server.take_for_poll(live))
        live.poll = asyncio.get_running_loop().create_future()
        packets = await live.poll
        self._respond(live, packets)

    def _respond(self, live: LiveSession, packets: list) -> None:
        body, content_type = encode_payload(packets, live.engine.version, live.engine.b64)
        self._cors()
        self.set_header("Content-Type", content_type)
        self.finish(body)

    def on_connection_close(self) -> None:
        if self.ws_connection is None and self.live is not None and self.live.poll is not None:
            poll, self.live.poll = self.live.poll, None
            poll.cancel()
        super().on_connection_close()

    def post(self, *args: str) -> None:
        if self._check("polling") is None:
            return
        live = self.live
        if live is None:
            return self._fail(BAD_METHOD)
        if live.engine.transport != "polling":
            return self._fail(BAD_REQUEST)
        if len(self.request.body) > live.engine.config.max_payload:
            live.engine.close("payload larger than maxPayload")
            self.server.flush(live)
            return self._fail(BAD_REQUEST, 413)
        try:
            packets = decode_payload(self.request.body, live.engine.version, utf8_twice=live.engine.b64)
        except ProtocolError as error:
            log.info("Bad polling payload for session %s: %s", live.engine.sid, error)
            live.engine.close(str(error))
            self.server.flush(live)
            return self._fail(BAD_REQUEST)
        self.server.receive(live, packets, "polling")
        self._cors()
        self.set_header("Content-Type", "text/html")
        self.finish("ok")

    # --- websocket -----------------------------------------------------------------------

    def check_origin(self, origin: str) -> bool:
        return self.server.access.origin_allowed(self.request)

    def open(self, *args: str) -> None:
        self.set_nodelay(True)
        if self.live is None:
            self.live = self.server.open_session(self.version, "websocket", self.request, b64=False)
            self.live.websocket = self
            self.server.flush(self.live)
        else:
            self.live.probe = self

    def on_message(self, frame: str | bytes) -> None:
        live = self.live
        if live is None or live.engine.closed:
            return
        if len(frame) > live.engine.config.max_payload:
            live.engine.close("message larger than maxPayload")
            self.server.flush(live)
            return
        try:
            packet = decode_ws(frame, live.engine.version)
        except ProtocolError as error:
            live.engine.close(str(error))
            self.server.flush(live)
            return
        self.server.receive(live, [packet], "websocket", ws=self)

    def on_close(self) -> None:
        if self.live is not None:
            self.server.transport_closed(self.live, self)

    # --- Transport (used by the EngineServer) ---------------------------------------------

    def send_frame(self, frame: str | bytes) -> Any:
        try:
            return self.write_message(frame, binary=isinstance(frame, bytes))
        except websocket.WebSocketClosedError:
            return None

    def close_transport(self) -> None:
        if self.ws_connection is not None:
            self.close()


def engineio_routes(server: EngineServer, paths: list[str]) -> list[tuple[str, type, dict[str, Any]]]:
    """Route table entries for the Engine.IO paths (e.g. `/socket.io/`, `/jupyter/socket.io/`)."""
    return [(path, EngineIOHandler, {"server": server}) for path in dict.fromkeys(paths)]
