"""The access log: tornado's line for each request, with the token taken out of the URL.

Browsers' websockets and socket.io clients can only send the token as `?token=`, so
the URL of a request may carry it; it must never reach a log.
"""

from __future__ import annotations

import logging
import re

from tornado import web

from kernels_service.metrics import HTTP_REQUEST_DURATION

access_log = logging.getLogger("tornado.access")
_TOKEN_IN_QUERY = re.compile(r"([?&]token=)[^&#]*", re.IGNORECASE)


def redact(uri: str) -> str:
    """The URI with the value of every `token` query parameter replaced."""
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", uri)


def log_request(handler: web.RequestHandler) -> None:
    """Tornado's access-log line and levels, without the token."""
    status = handler.get_status()
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    request = handler.request
    name = f"{type(handler).__module__}.{type(handler).__name__}"
    HTTP_REQUEST_DURATION.labels(request.method, name, str(status)).observe(request.request_time())
    access_log.log(
        level,
        "%d %s %s (%s) %.2fms",
        status,
        request.method,
        redact(request.uri or ""),
        request.remote_ip,
        1000.0 * request.request_time(),
    )
