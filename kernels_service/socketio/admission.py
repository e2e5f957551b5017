"""Which Engine.IO requests are taken, and as what: a pure function of the request.

The tornado handler describes each request (`EngineRequest`) and does what `admit`
decides: open a session, answer a poll, take a POST, take a websocket as a session's
probe, or refuse with Engine.IO's JSON error (or, for a websocket, by closing it at
once after the upgrade, as the reference server does). The order of the checks is the
reference's: protocol version, transport, origin, session id, then the method's own
rules. The session cap is decided here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kernels_service.socketio.engine import EngineIOSession, EngineState

#: Engine.IO's error codes, as its reference server sends them.
UNKNOWN_TRANSPORT, UNKNOWN_SID, BAD_METHOD, BAD_REQUEST, FORBIDDEN, BAD_VERSION = range(6)
MESSAGES = ["Transport unknown", "Session ID unknown", "Bad handshake method", "Bad request", "Forbidden",
            "Unsupported protocol version"]  # fmt: skip

#: A websocket refused after its upgrade: the session has one (or a probe) already,
#: or the service holds as many sessions as it may.
CLOSE_POLICY, CLOSE_TRY_AGAIN_LATER = 1008, 1013


@dataclass(frozen=True)
class EngineRequest:
    """What the door saw of one request to the Engine.IO path."""

    method: str
    eio: str  # the EIO query parameter, as sent
    transport: str
    sid: str | None
    upgrade: bool = False  # an `Upgrade: websocket` header
    origin_allowed: bool = True
    host_allowed: bool = True  # its Host header may be served (access.AccessPolicy.host_allowed)


@dataclass(frozen=True)
class Refuse:
    """Answer with Engine.IO's JSON error body."""

    code: int
    status: int = 400
    message: str | None = None

    @property
    def text(self) -> str:
        return self.message or MESSAGES[self.code]


@dataclass(frozen=True)
class RefuseWebsocket:
    """Take the upgrade, then close the websocket at once with this code and reason."""

    code: int
    reason: str


@dataclass(frozen=True)
class OpenSession:
    """A new session on this transport, of this protocol generation."""

    version: int
    transport: str


@dataclass(frozen=True)
class Poll:
    """A polling GET of this session."""

    session: EngineIOSession


@dataclass(frozen=True)
class Post:
    """A polling POST of this session: its body holds packets."""

    session: EngineIOSession


@dataclass(frozen=True)
class Probe:
    """A websocket for this polling session: its probe, perhaps its next transport."""

    session: EngineIOSession


Decision = Refuse | RefuseWebsocket | OpenSession | Poll | Post | Probe


def admit(
    request: EngineRequest, find: Callable[[str], EngineIOSession | None], open_sessions: int, max_sessions: int
) -> Decision:
    """What to do with `request`; `find` gives a live session by id."""
    if request.eio not in ("3", "4"):
        return Refuse(BAD_VERSION)
    version = int(request.eio)
    posting_over_websocket = request.method == "POST" and request.transport != "polling"
    if request.transport not in ("polling", "websocket") or posting_over_websocket:
        return Refuse(UNKNOWN_TRANSPORT)
    if not request.host_allowed:
        return Refuse(FORBIDDEN, 403, "Forbidden: this Host is not served (--allow-remote-access)")
    if not request.origin_allowed:
        return Refuse(FORBIDDEN, 403)
    session = None
    if request.sid is not None:
        session = find(request.sid)
        if session is None or session.version != version:
            return Refuse(UNKNOWN_SID)
    full = open_sessions >= max_sessions
    if request.method == "POST":
        return _post(session)
    if request.method != "GET":
        return Refuse(BAD_METHOD)
    if request.transport == "websocket":
        return _websocket(request, version, session, full)
    if session is not None:
        return Poll(session)
    return Refuse(BAD_REQUEST, 503, "Too many sessions") if full else OpenSession(version, "polling")


def _post(session: EngineIOSession | None) -> Decision:
    if session is None:
        return Refuse(BAD_METHOD)
    if not session.on_polling:
        return Refuse(BAD_REQUEST)
    return Post(session)


def _websocket(request: EngineRequest, version: int, session: EngineIOSession | None, full: bool) -> Decision:
    if not request.upgrade:
        return Refuse(BAD_REQUEST)
    if session is None and full:
        return RefuseWebsocket(CLOSE_TRY_AGAIN_LATER, "too many sessions")
    if session is None:
        return OpenSession(version, "websocket")
    if session.state is not EngineState.POLLING:
        return RefuseWebsocket(CLOSE_POLICY, "session already has a websocket")
    return Probe(session)


def upgrades(decision: Decision) -> bool:
    """Whether the handler takes the websocket upgrade for this decision (a refused
    websocket too: it is closed after the upgrade, with a reason)."""
    if isinstance(decision, OpenSession):
        return decision.transport == "websocket"
    return isinstance(decision, (RefuseWebsocket, Probe))


def announced_size(content_length: str | None, max_payload: int) -> int:
    """The body size a Content-Length announces; past the limit if it is not a number."""
    length = content_length or "0"
    return int(length) if length.isascii() and length.isdigit() else max_payload + 1


def payload_refusal(size: int, max_payload: int) -> Refuse | None:
    """A POST body larger than `max_payload` is refused before it is read: 413."""
    return Refuse(BAD_REQUEST, 413, "Payload too large") if size > max_payload else None


def after_post(session: EngineIOSession) -> Refuse | None:
    """A POST whose packets closed the session (but for the client's own CLOSE) is a 400:
    too many messages waiting, a packet the session does not allow."""
    closed = session.closed
    return Refuse(BAD_REQUEST) if closed is not None and not closed.by_client else None
