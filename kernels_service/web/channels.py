"""The raw Jupyter websocket, `/api/kernels/<id>/channels`: one connection, one relay session.

Both protocols of Jupyter Server: the legacy JSON/binary frames and, when the client offers
it, the `v1.kernel.websocket.jupyter.org` subprotocol. Everything is checked before the
upgrade (token, origin, kernel id), so refusals are plain JSON HTTP errors.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from http.client import responses
from typing import Any

from tornado import ioloop, websocket

from kernels_service.kernels import KernelsError, NoSuchKernel
from kernels_service.metrics import WEBSOCKETS, closed_reason, count_closed
from kernels_service.protocol import KernelMessage, ProtocolError
from kernels_service.protocol.websocket import (
    V1_SUBPROTOCOL,
    decode_legacy_binary,
    decode_legacy_text,
    decode_v1,
    legacy_pieces,
    v1_pieces,
)
from kernels_service.protocol.ws_frames import WireFrame, wire_frame
from kernels_service.relay import SERVICE_RESTARTING, KernelRelay, RelaySession
from kernels_service.relay.handover import HandoverError, handed_first, take_handover
from kernels_service.relay.outbox import Outbox
from kernels_service.relay.replay import handover_lost_notice
from kernels_service.relay.session import KernelNotReading
from kernels_service.web.base import TOKEN_CHALLENGE, Services, error_answer, foreign_host_refusal, status_of
from kernels_service.web.keepalive import Keepalive, Verdict, unsent_bytes
from kernels_service.websocket_writer import HIGH_WATER, FrameWriter, open_stream

log = logging.getLogger("kernels_service.web")

CLOSE_INVALID_DATA = 1007
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_SERVICE_RESTART = 1012  # JupyterLab's client reconnects on any code but 1000 and 1001


#: The websocket version tornado speaks (RFC 6455; tornado 6.6 dropped the drafts 7 and 8).
WEBSOCKET_VERSIONS = ("13",)


def upgrade_refusal(headers: Any) -> tuple[int, str] | None:
    """Why a request cannot be upgraded to a websocket (status, message), or None.

    The same rules as tornado's, checked first so that every refusal is JSON like every
    other error of the API (tornado answers in plain text), and as `api/spec.yaml` states
    them: `Upgrade: websocket`, a `Connection` list with `upgrade`, a `Sec-WebSocket-Key`
    and a `Sec-WebSocket-Version` (400 for any missing), and a version tornado speaks
    (else 426, as RFC 6455 says)."""
    if headers.get("Upgrade", "").strip().lower() != "websocket":
        return 400, "This is a websocket endpoint: send an 'Upgrade: websocket' request"
    if "upgrade" not in (item.strip().lower() for item in headers.get("Connection", "").split(",")):
        return 400, "A websocket request needs 'Connection: Upgrade'"
    if not headers.get("Sec-WebSocket-Key", "").strip():
        return 400, "A websocket request needs a 'Sec-WebSocket-Key'"
    version = headers.get("Sec-WebSocket-Version", "").strip()
    if not version:
        return 400, "A websocket request needs a 'Sec-WebSocket-Version'"
    if version not in WEBSOCKET_VERSIONS:
        return 426, f"Websocket version {version!r} is not spoken here; use 13"
    return None


class ChannelsHandler(websocket.WebSocketHandler):
    """Relays one client's Jupyter messages to a kernel and the kernel's messages back."""

    channels = frozenset(("shell", "iopub", "stdin", "control"))  # all of them (RelayListener)

    def initialize(self, services: Services) -> None:
        self.services = services
        self.relay: KernelRelay | None = None
        self.session: RelaySession | None = None
        self._encode: Callable[[KernelMessage], tuple[list[bytes], bool]] = legacy_pieces
        self._v1 = False  # the v1 subprotocol was chosen (set in open)
        self.outbox = Outbox(self._write, self._give_up, high_water=HIGH_WATER, limit=services.client_queue_limit)
        self.writer = FrameWriter(lambda: open_stream(self), self._not_written)
        self._keepalive: Keepalive | None = None
        self._counted = False  # in the open-websockets gauge
        self._unsent: list[KernelMessage] | None = None  # once the connection is gone: what it missed
        self._arriving: list[KernelMessage] | None = None  # held while a hand-over is taken (relay/handover.py)
        self._moved = False  # closed by a drain: what it still sends reaches the kernel, its replies handed over
        self._pinger: ioloop.PeriodicCallback | None = None

    async def get(self, kernel_id: str) -> None:
        if not self.services.policy.host_allowed(self.request):
            return self._refuse(403, foreign_host_refusal(self.request.host))
        if self.services.policy.token_missing(self.request):
            self.set_header("WWW-Authenticate", TOKEN_CHALLENGE)
            return self._refuse(401, "Unauthorized: a token is required")
        if not self.services.policy.token_accepted(self.request):
            return self._refuse(403, "Forbidden: bad token")
        if self.services.drain.draining:
            return self._refuse(503, "This replica is stopping; connect again (to another one)")
        try:
            self.relay = await self.services.hub.find(kernel_id)
        except KernelsError as error:  # none (404), or the shared store out of reach (503)
            return self._refuse(status_of(error), str(error))
        refusal = upgrade_refusal(self.request.headers)
        if refusal is None and not self.check_origin(self.request.headers.get("Origin", "")):
            refusal = 403, "Forbidden: cross-origin websockets are not allowed from this origin"
        if refusal is not None:
            if refusal[0] == 426:
                self.set_header("Sec-WebSocket-Version", "13")
            return self._refuse(*refusal)
        await super().get(kernel_id)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors before the upgrade (a wrong method, say) are JSON like every REST error."""
        status_code, message = error_answer(self, status_code, kwargs)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"message": message, "reason": responses.get(status_code, "Error")}))

    def _refuse(self, status: int, message: str) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps({"message": message, "reason": responses.get(status, "Error")}))

    def check_origin(self, origin: str) -> bool:
        return self.services.policy.origin_allowed(self.request)

    def select_subprotocol(self, subprotocols: list[str]) -> str | None:
        return V1_SUBPROTOCOL if V1_SUBPROTOCOL in subprotocols else None

    async def open(self, kernel_id: str) -> None:
        self.set_nodelay(True)
        self._v1 = self.selected_subprotocol == V1_SUBPROTOCOL
        if self._v1:
            self._encode = _encode_v1_frame
        assert self.relay is not None
        await self.relay.wait_ready()
        if self.ws_connection is None:  # the client left while the kernel was starting
            return
        key = self.get_query_argument("session_id", None)
        handover = await self.services.hub.handover_of(kernel_id, key)
        if handover is not None:
            self._arriving = []  # what reaches this session waits behind what the drained replica kept
        try:
            self.session = self.relay.open_session(self, key, handed=handover is not None)
        except NoSuchKernel:  # shut down while the kernel was starting
            self.close(CLOSE_GOING_AWAY, "kernel shut down")
            return
        if handover is not None and key is not None:
            await self._take_handover(handover, kernel_id, key)
        WEBSOCKETS.websockets += 1
        self._counted = True
        interval = self.services.ping_interval
        if interval > 0:
            self._keepalive = Keepalive(interval, time.monotonic())
            self._pinger = ioloop.PeriodicCallback(self._keep_alive, interval * 1000 / 4)
            self._pinger.start()

    def _keep_alive(self) -> None:
        """Ping the client, and close it if it is dead (see `keepalive`)."""
        if self._keepalive is None or self.ws_connection is None:
            return
        stream = open_stream(self)
        pending = self.outbox.backed_up or unsent_bytes(getattr(stream, "socket", None)) > 0
        verdict = self._keepalive.tick(time.monotonic(), pending)
        if verdict is Verdict.PING:
            try:
                self.ping()
            except websocket.WebSocketClosedError:
                pass  # closing already
        elif verdict is Verdict.DEAD:
            self._keepalive = None
            log.info("Closing websocket on kernel %s: ping not answered", self.relay.kernel_id if self.relay else "?")
            count_closed("ping timeout")
            self.close(CLOSE_GOING_AWAY, "ping timed out")

    def on_pong(self, data: bytes) -> None:
        if self._keepalive is not None:
            self._keepalive.heard()

    def on_message(self, frame: str | bytes) -> None:
        if self._keepalive is not None:
            self._keepalive.heard()  # anything from the client shows it is there
        if self.session is None or (self.ws_connection is None and not self._moved):
            return  # frames that arrived after our close; but a moved client's go on (handed over with replies)
        try:
            message = self._decode(frame)
            self.session.send(message)
        except ProtocolError as error:
            log.info("Closing websocket on kernel %s: %s", self.session.kernel_id, error)
            count_closed("bad input")
            self.close(CLOSE_INVALID_DATA, str(error)[:120])
        except KernelNotReading as error:
            log.warning("Closing websocket on kernel %s: %s", self.session.kernel_id, error)
            count_closed("kernel not reading")
            self.close(CLOSE_TRY_AGAIN_LATER, str(error)[:120])

    def _decode(self, frame: str | bytes) -> KernelMessage:
        if self._v1:
            if isinstance(frame, str):
                raise ProtocolError("the v1 protocol takes binary frames only")
            return decode_v1(frame)
        if isinstance(frame, bytes):
            return decode_legacy_binary(frame)
        return decode_legacy_text(frame)

    async def _take_handover(self, address: str, kernel_id: str, key: str) -> None:
        """Deliver what the drained replica at `address` kept for this session, then what
        arrived here meanwhile that it had not (relay/handover.py)."""
        try:
            handed = await take_handover(
                address, kernel_id, key, self.services.policy.token, self.services.replica_name
            )
        except HandoverError as error:
            log.warning("Kernel %s: a session's hand-over was not taken: %s", kernel_id, error)
            why = f"the replica it was on ({address}) did not hand it over"
            handed = [handover_lost_notice(why)]
        arrived, self._arriving = self._arriving or [], None
        for message in handed_first(handed, arrived):
            self.deliver(message)

    def deliver(self, message: KernelMessage) -> None:
        """Queue one kernel message for this client (RelayListener); never blocks."""
        if self._arriving is not None:  # a hand-over is being taken: this waits behind it
            self._arriving.append(message)
            return
        if self._unsent is not None:  # closed, but not yet detached: kept for its return
            self._unsent.append(message)
            return
        self.outbox.put(message)

    def _write(self, message: KernelMessage) -> tuple[int, Any]:
        # built once per message and protocol for all its clients in this turn
        frame = self.services.frames.get(message, self._encode, _framed, self._encode)
        return frame.length, self.writer.write(frame, message)

    def _not_written(self, messages: list[KernelMessage]) -> None:
        """The connection closed before a batch went out: it, and what waits behind it, are
        kept for the client's return (on_close hands them over)."""
        self._unsent = [*messages, *self.outbox.take_waiting(), *(self._unsent or [])]

    def _give_up(self, reason: str) -> None:
        log.warning("Closing websocket on kernel %s: %s", self.relay.kernel_id if self.relay else "?", reason)
        count_closed("too slow")
        self.close(CLOSE_POLICY, reason)

    def relay_closed(self, reason: str) -> None:
        """The kernel is gone (RelayListener), or the service stops and leaves it running:
        then the client is asked to come back (1012, "service restart")."""
        count_closed(closed_reason(reason))
        self.session = None
        self.close(CLOSE_SERVICE_RESTART if reason == SERVICE_RESTARTING else CLOSE_GOING_AWAY, reason)

    def moved(self, reason: str) -> None:
        """The replica drains (RelayListener): the client is asked to come back (1012:
        through the balancer, to another replica); what reaches it from now on is kept as
        it came, and its session waits, with it, for the hand-over."""
        count_closed(closed_reason(reason))
        self._unsent = self._unsent or []
        self._moved = True
        self.close(CLOSE_SERVICE_RESTART, reason)

    def on_close(self) -> None:
        if self._counted:
            WEBSOCKETS.websockets -= 1
            self._counted = False
        if self._pinger is not None:
            self._pinger.stop()
        missed = [*self.writer.take_pending(), *self.outbox.take_waiting(), *(self._unsent or [])]
        if self.session is not None and self.relay is not None:
            self.relay.detach(self.session, self, missed)  # kept for its return, if it gave a session_id
            self.session = None
        self.services.heap.released()


def _framed(message: KernelMessage, encode: Callable[[KernelMessage], tuple[list[bytes], bool]]) -> WireFrame:
    return wire_frame(*encode(message))


def _encode_v1_frame(message: KernelMessage) -> tuple[list[bytes], bool]:
    return v1_pieces(message), True
