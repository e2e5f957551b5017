#!/usr/bin/env python3
"""The image's HEALTHCHECK: exit 0 when the service answers `GET /api/health` on $PORT.

`/api/health` is served at the root whatever the base path, needs no token and reveals
nothing. A plain HTTP connection to loopback, so no proxy setting can get in the way."""

import http.client
import os
import sys


def healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=4)
    try:
        connection.request("GET", "/api/health")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(0 if healthy(int(os.environ.get("PORT", "8000"))) else 1)
