"""DNS rebinding: a web page the user visits points a name of its own at 127.0.0.1 and so
reaches a local service as "same origin"; the browser still names the page's host in
`Host`. A service that serves only local `Host` headers (no token, or bound to the
loopback) refuses such a request on every door: REST, the kernel websocket, socket.io
over polling and over websocket. Real service, real sockets; the Host is set by hand,
as the rebinding browser would send it."""

from __future__ import annotations

import http.client
import json

import pytest
import websocket
from hypothesis import given
from hypothesis import strategies as st

from kernels_service.access import is_local_host, remote_access_default
from kernels_service.testing.service import running_service, tracebacks

REBOUND = ["evil.example", "evil.example:8000", "127.0.0.1.evil.example", "localhost.evil.example", "10.1.2.3:80"]
LOCAL = ["localhost", "LOCALHOST:1", "localhost.", "127.0.0.1", "127.8.9.10:80", "[::1]", "[::1]:8000", "::1"]


def http_with_host(service, path: str, host: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        connection.request(method, path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def websocket_status(url: str, host: str) -> int:
    """The status of a websocket handshake sent with this Host, and the Origin a browser
    would send with it (101: it was taken)."""
    try:
        sock = websocket.create_connection(url, timeout=30, host=host, origin=f"http://{host}")
    except websocket.WebSocketBadStatusException as refused:
        return refused.status_code
    sock.close()
    return 101


def every_door(service, kernel_id: str, host: str) -> dict[str, int]:
    """The status each door gives a request naming `host`."""
    ws_base = f"ws://127.0.0.1:{service.port}"
    return {
        "rest": http_with_host(service, f"{service.base}api/kernels", host)[0],
        "kernelspecs": http_with_host(service, f"{service.base}api/kernelspecs", host)[0],
        "kernel-relay rest": http_with_host(service, f"{service.base}spawn/python3", host, "HEAD")[0],
        "websocket": websocket_status(f"{ws_base}{service.base}api/kernels/{kernel_id}/channels", host),
        "socket.io polling": http_with_host(service, "/socket.io/?EIO=4&transport=polling", host)[0],
        "socket.io 2.x polling": http_with_host(service, "/socket.io/?EIO=3&transport=polling", host)[0],
        "socket.io websocket": websocket_status(f"{ws_base}/socket.io/?EIO=4&transport=websocket", host),
    }


def test_without_a_token_a_rebound_host_is_refused_on_every_door_and_a_local_one_served():
    with running_service("--initial-kernels=1", token="") as service:
        (kernel,) = service.request("GET", "api/kernels")[2]
        for host in REBOUND:
            statuses = every_door(service, kernel["id"], host)
            assert set(statuses.values()) == {403}, (host, statuses)
        for host in LOCAL:
            statuses = every_door(service, kernel["id"], host)
            assert 403 not in statuses.values(), (host, statuses)
            assert statuses["websocket"] == statuses["socket.io websocket"] == 101, (host, statuses)
        status, headers, body = http_with_host(service, f"{service.base}api/kernels", "evil.example")
        assert headers["content-type"].startswith("application/json")
        assert "is not a local address" in json.loads(body)["message"]
        assert json.loads(http_with_host(service, "/socket.io/?EIO=4&transport=polling", "evil.example")[2]) == {
            "code": 4,
            "message": "Forbidden: this Host is not served (--allow-remote-access)",
        }
        # the health check answers any Host (a cluster's probe names the pod by address)
        assert http_with_host(service, f"{service.base}api/health", "10.0.0.7:8000")[0] == 200
        assert service.request("GET", "api/kernels")[0] == 200, "the next client is served"
        assert not tracebacks(service.output())


def test_a_token_on_the_loopback_still_serves_local_hosts_only():
    with running_service("--initial-kernels=0", "--metrics-no-auth") as service:
        status, _, body = http_with_host(service, f"{service.base}api/kernels", "evil.example")
        assert status == 403 and b"not a local address" in body
        assert http_with_host(service, f"{service.base}metrics", "evil.example")[0] == 403
        assert http_with_host(service, f"{service.base}metrics", "localhost")[0] == 200
        assert http_with_host(service, f"{service.base}api/kernels", "localhost:1")[0] == 401  # on to the token


def test_allow_remote_access_and_local_hostnames_let_a_named_host_in():
    with running_service("--initial-kernels=1", "--allow-remote-access", token="") as service:
        (kernel,) = service.request("GET", "api/kernels")[2]
        statuses = every_door(service, kernel["id"], "kernels.example:8000")
        assert 403 not in statuses.values(), statuses
    with running_service("--initial-kernels=0", "--local-hostnames=kernels.internal", token="") as service:
        assert http_with_host(service, f"{service.base}api/kernels", "kernels.internal:80")[0] == 200
        assert http_with_host(service, f"{service.base}api/kernels", "localhost")[0] == 403, "replaced, not added"
        assert http_with_host(service, f"{service.base}api/kernels", "127.0.0.1")[0] == 200


def test_a_flood_of_odd_host_headers_is_answered_and_the_service_goes_on():
    odd = ["", ":", "[", "[::1", "]:80", "::", "a" * 5000, "ex ample", "\u00e9.example", "0x7f.1", "127.1", "0"]
    with running_service("--initial-kernels=0", token="") as service:
        for host in odd * 5:
            status, _, _ = http_with_host(service, f"{service.base}api/kernels", host.encode("utf-8").decode("latin-1"))
            assert status in (200, 400, 403), (host, status)
        assert http_with_host(service, f"{service.base}api/kernels", "localhost")[0] == 200
        assert not tracebacks(service.output())


@pytest.mark.parametrize(
    ("token", "ip", "remote"),
    [
        ("", "0.0.0.0", False),  # no token: never every Host unless the operator says
        ("", "127.0.0.1", False),
        ("t", "127.0.0.1", False),  # a token on the loopback: as Jupyter Server
        ("t", "::1", False),
        ("t", "localhost", False),
        ("t", "0.0.0.0", True),  # a token, listening beyond the loopback: as Jupyter Server
        ("t", "", True),
        ("t", "10.0.0.5", True),
    ],
)
def test_when_every_host_is_served_by_default(token, ip, remote):
    assert remote_access_default(token, ip) is remote


@given(st.text(max_size=300))
def test_any_host_header_is_judged_without_error(host):
    assert is_local_host(host, ("localhost",)) in (True, False)
