"""Who may talk to the service: the token and the origin policy, one place for every door."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from tornado.httputil import HTTPServerRequest

from kernels_service.hardening import read_token_file

log = logging.getLogger("kernels_service")


def resolve_token(token: str | None, token_file: str, address: str) -> str:
    """The token clients must send: `token_file`'s if given, else `token`, else (None) a
    random one, logged once. An empty token is allowed, with a warning naming `address`."""
    if token_file:
        return read_token_file(token_file)
    if token is None:
        token = secrets.token_hex(24)
        log.info("Token (send as 'Authorization: token <token>' or ?token=): %s", token)
        return token
    if not token:
        log.warning("No token: anyone who can reach %s can run code. Use only for local demos.", address)
    return token


@dataclass(frozen=True)
class AccessPolicy:
    """Token check (constant time) and origin policy shared by REST and websockets.

    `token` empty means no token is required. `allow_origin` is `*`, a single origin,
    or empty (same origin only).
    """

    token: str
    allow_origin: str = ""
    remote_access: bool = True  # any Host header; False: local ones only (see host_allowed)
    local_hostnames: tuple[str, ...] = ("localhost",)

    def token_accepted(self, request: HTTPServerRequest) -> bool:
        """True if the request carries the token (header or `?token=`), or none is needed."""
        query = {key: values[-1].decode("utf-8", "replace") for key, values in request.query_arguments.items()}
        return self.token_valid(token_from(request.headers, query))

    def token_missing(self, request: HTTPServerRequest) -> bool:
        """A token is needed and the request carries none at all (401, not 403)."""
        query = {key: values[-1].decode("utf-8", "replace") for key, values in request.query_arguments.items()}
        return bool(self.token) and not token_from(request.headers, query)

    def token_valid(self, supplied: str | None) -> bool:
        """Constant-time check of a supplied token (anything passes when no token is set)."""
        if not self.token:
            return True
        return supplied is not None and hmac.compare_digest(supplied.encode(), self.token.encode())

    def host_allowed(self, request: HTTPServerRequest) -> bool:
        """Whether the request's `Host` may be served: any, with remote access; else only a
        loopback address or one of `local_hostnames`. A web page the user visits can point
        a name of its own at 127.0.0.1 (DNS rebinding) and so reach a local service as
        "same origin"; its requests still carry that name in `Host`."""
        return self.remote_access or is_local_host(request.host, self.local_hostnames)

    def origin_allowed(self, request: HTTPServerRequest) -> bool:
        """Non-browser clients (no Origin) pass; browsers must be same-origin or allowed."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        if self.allow_origin == "*" or origin == self.allow_origin:
            return True
        return urlsplit(origin).netloc.lower() == request.host.lower()

    def cors_headers(self, request: HTTPServerRequest) -> dict[str, str]:
        """The CORS headers of a response to this request (none for disallowed origins)."""
        origin = self.cors_origin(request)
        if origin is None:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Vary": "Origin"}

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


def is_local_host(host: str, local_hostnames: tuple[str, ...]) -> bool:
    """Whether a `Host` header (`name[:port]`, `[v6][:port]`) names this machine's loopback:
    a loopback address, or one of `local_hostnames` (case-insensitive)."""
    name = host.strip()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else ""
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name.lower().rstrip(".") in {hostname.lower() for hostname in local_hostnames}


def remote_access_default(token: str, ip: str) -> bool:
    """Whether any `Host` is served when the operator did not say: yes where a token is
    required and the service listens beyond the loopback (as Jupyter Server does); no
    where it listens on the loopback only, or without a token (a page could then run code)."""
    if not token:
        return False
    try:
        return not ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return ip.lower() != "localhost"  # "" (every address) or a name


def token_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """The token a client sent: `Authorization: token|Bearer <t>`, else `?token=<t>`."""
    scheme, _, value = headers.get("Authorization", headers.get("authorization", "")).partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return query.get("token")
