"""Who may talk to the service: the token and the origin policy, one place for every door."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from tornado.httputil import HTTPServerRequest


@dataclass(frozen=True)
class AccessPolicy:
    """Token check (constant time) and origin policy shared by REST and websockets.

    `token` empty means no token is required. `allow_origin` is `*`, a single origin,
    or empty (same origin only).
    """

    token: str
    allow_origin: str = ""

    def token_accepted(self, request: HTTPServerRequest) -> bool:
        """True if the request carries the token (header or `?token=`), or none is needed."""
        if not self.token:
            return True
        supplied = _token_from(request)
        return supplied is not None and hmac.compare_digest(supplied.encode(), self.token.encode())

    def origin_allowed(self, request: HTTPServerRequest) -> bool:
        """Non-browser clients (no Origin) pass; browsers must be same-origin or allowed."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        if self.allow_origin == "*" or origin == self.allow_origin:
            return True
        return urlsplit(origin).netloc.lower() == request.host.lower()

    def cors_origin(self, request: HTTPServerRequest) -> str | None:
        """The value of Access-Control-Allow-Origin for this request, if any.

        The request's own origin is echoed (never `*`) so that credentialed requests work.
        """
        origin = request.headers.get("Origin")
        if origin is None or not self.allow_origin:
            return None
        if self.allow_origin == "*" or origin == self.allow_origin:
            return origin
        return None


def _token_from(request: HTTPServerRequest) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    values = request.query_arguments.get("token")
    if values:
        return values[-1].decode("utf-8", "replace")
    return None
