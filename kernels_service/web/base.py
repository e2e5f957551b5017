"""The base of every REST handler: auth, CORS, and JSON errors that never carry a traceback."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from http.client import responses
from typing import Any

from tornado import web

from kernels_service.access import AccessPolicy
from kernels_service.kernels import (
    Busy,
    InvalidRequest,
    KernelNotStarted,
    KernelRefused,
    KernelRegistry,
    KernelsError,
    LimitReached,
    NoSuchKernel,
    NoSuchKernelSpec,
    Stopping,
    StoreUnavailable,
)
from kernels_service.kernels.errors import HandingOver
from kernels_service.kernels.fleet import OwnedElsewhere
from kernels_service.kernels.pool import KernelPool
from kernels_service.kernels.record import utcnow
from kernels_service.kernels.store import LeaseLost
from kernels_service.memory import HeapTrimmer
from kernels_service.protocol import strict_json
from kernels_service.relay import RelayHub
from kernels_service.relay.turn_cache import TurnCache
from kernels_service.web.access_log import redact
from kernels_service.web.forwarding import FORWARDED_BY, OwnerUnreachable, forward

log = logging.getLogger("kernels_service.web")

#: The challenge of a 401: the token, in the `Authorization` header (or `?token=`).
TOKEN_CHALLENGE = 'token realm="kernels-service"'

STATUS_OF_ERROR: dict[type[KernelsError], int] = {
    NoSuchKernel: 404,
    NoSuchKernelSpec: 404,
    InvalidRequest: 400,
    LimitReached: 503,
    Busy: 409,
    Stopping: 503,
    KernelNotStarted: 503,
    KernelRefused: 403,
    StoreUnavailable: 503,
    HandingOver: 503,
    LeaseLost: 409,
}


@dataclass
class ApiActivity:
    """When the service started, and when a client last made an authenticated REST request
    (Jupyter Server's `api_last_activity`: `/api/status` and `?no_track_activity` do not count)."""

    started: datetime = field(default_factory=utcnow)
    last_request: datetime = field(default_factory=utcnow)


@dataclass
class Drain:
    """Whether the service is stopping: its health check then answers 503 at once, so that
    a balancer or a cluster sends it nobody new."""

    draining: bool = False


@dataclass(frozen=True)
class Services:
    """What the handlers work with, handed to each through the route table."""

    registry: KernelRegistry
    hub: RelayHub
    policy: AccessPolicy
    base_path: str  # "/" or "/jupyter/"
    client_queue_limit: int = 128 * 1024 * 1024  # bytes of output waiting for one slow client
    ping_interval: float = 30.0  # seconds between websocket pings; 0: no pings
    heap: HeapTrimmer = field(default_factory=HeapTrimmer)  # told when a client goes
    activity: ApiActivity = field(default_factory=ApiActivity)
    pool: KernelPool | None = None  # the warm pool, if there is one
    metrics_no_auth: bool = False  # <base>metrics without the token
    frames: TurnCache = field(default_factory=TurnCache)  # websocket frames, encoded once per message
    replica_name: str = ""  # this service's name among the replicas of a shared store
    drain: Drain = field(default_factory=Drain)


def status_of(error: BaseException) -> int:
    for error_type, status in STATUS_OF_ERROR.items():
        if isinstance(error, error_type):
            return status
    return 500


class JSONHandler(web.RequestHandler):
    """JSON in, JSON out; token and CORS checked before any method runs."""

    services: Services
    tracks_activity = True  # an answered request counts as API activity (see ApiActivity)

    def initialize(self, services: Services) -> None:
        self.services = services

    def on_finish(self) -> None:
        answered = self.request.method != "OPTIONS" and self.get_status() not in (401, 403)
        if self.tracks_activity and answered and self.get_query_argument("no_track_activity", None) is None:
            self.services.activity.last_request = utcnow()

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")

    def prepare(self) -> None:
        if not self.services.policy.host_allowed(self.request):
            raise web.HTTPError(403, foreign_host_refusal(self.request.host))
        for name, value in self.services.policy.cors_headers(self.request).items():
            self.set_header(name, value)
        if self.request.method == "OPTIONS" or not self.needs_token():
            return
        if self.services.policy.token_missing(self.request):
            raise web.HTTPError(401, "Unauthorized: a token is required")
        if not self.services.policy.token_accepted(self.request):
            raise web.HTTPError(403, "Forbidden: bad token")

    async def forward_to(self, owner: OwnedElsewhere) -> None:
        """Answer with what the replica that owns the kernel answers to this request."""
        path = self.request.path[len(self.services.base_path) :]
        forwarded_by = self.request.headers.get(FORWARDED_BY)
        try:
            status, content_type, body = await forward(
                owner, self.request.method or "GET", path, self.request.body, self.services.policy.token,
                self.services.replica_name, forwarded_by,
            )  # fmt: skip
        except OwnerUnreachable as error:
            raise web.HTTPError(503, str(error)) from None
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.finish(None if status in (204, 304) else body)

    def needs_token(self) -> bool:
        """Whether this request must carry the token (every one, unless a handler says)."""
        return True

    def options(self, *args: str, **kwargs: str) -> None:
        """CORS preflight: what the allowed origins may send (path parameters are ignored)."""
        self.set_header("Access-Control-Allow-Methods", ", ".join(allowed_methods(self)))
        self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
        self.set_status(204)

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(value))

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object ({} if empty); 400 if it is anything else."""
        if not self.request.body.strip():
            return {}
        try:
            value = strict_json.loads(self.request.body)
        except strict_json.JSONRejected as error:
            raise web.HTTPError(400, f"Request body: {error}") from None
        if not isinstance(value, dict):
            raise web.HTTPError(400, "Request body must be a JSON object")
        return value

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error as `{"message", "reason"}`; domain errors get their own status."""
        status_code, message = error_answer(self, status_code, kwargs)
        self.finish(json.dumps({"message": message, "reason": responses.get(status_code, "Error")}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Client errors are logged in one line, without a traceback."""
        if isinstance(value, (KernelsError, web.HTTPError)):
            log.info("%s %s -> %s", self.request.method, redact(self.request.uri or ""), value)
        else:
            super().log_exception(typ, value, tb)


def foreign_host_refusal(host: str) -> str:
    """The message of a request refused for its `Host` (access.AccessPolicy.host_allowed)."""
    shown = host.encode("ascii", "backslashreplace").decode()[:100]
    return (
        f"Forbidden: Host {shown!r} is not a local address, and this service serves only local ones "
        "(a web page can point its own name at 127.0.0.1); name it with --local-hostnames, or serve "
        "every Host with --allow-remote-access"
    )


def allowed_methods(handler: web.RequestHandler) -> list[str]:
    """The HTTP methods a handler class implements (for `Allow` and CORS preflights)."""
    unimplemented = web.RequestHandler.get  # tornado's placeholder for every method
    return [m for m in handler.SUPPORTED_METHODS if getattr(type(handler), m.lower()) is not unimplemented]


def error_answer(handler: web.RequestHandler, status_code: int, kwargs: dict[str, Any]) -> tuple[int, str]:
    """The status and message of an error answer; sets the status of domain errors, the
    `Allow` header of a 405 and the challenge of a 401 (headers set before the error was
    raised are cleared by tornado). Never a traceback: 500s say only "Internal server error"."""
    error = kwargs.get("exc_info", (None, None, None))[1]
    if isinstance(error, KernelsError):
        status_code = status_of(error)
        handler.set_status(status_code)
        return status_code, str(error)
    if status_code == 405:
        handler.set_header("Allow", ", ".join(allowed_methods(handler)))
    if status_code == 401:
        handler.set_header("WWW-Authenticate", TOKEN_CHALLENGE)
    if isinstance(error, web.HTTPError) and error.log_message:
        return status_code, error.log_message
    return status_code, "Internal server error" if status_code >= 500 else responses.get(status_code, "Error")


class NotFoundHandler(JSONHandler):
    """A JSON 404 for every route the service does not have."""

    def prepare(self) -> None:
        raise web.HTTPError(404, "Not found")
