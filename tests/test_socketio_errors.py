"""Bad input, auth and origin at the service's socket.io door; vanished clients are reaped."""

from __future__ import annotations

import http.client
import json
import sys
import time

import pytest
import websocket

from kernels_service.testing.service import running_service
from tests.support.engineio import recv_non_ping
from tests.support.kernelspecs import write_kernelspec
from tests.support.waiting import wait_until


def connect_raw(service, version=4, query="", origin=None):
    url = f"ws://127.0.0.1:{service.port}/socket.io/?EIO={version}&transport=websocket{query}"
    sock = websocket.create_connection(url, timeout=10, **({"origin": origin} if origin else {}))
    sock.recv()  # Engine.IO open
    if version == 3:
        assert sock.recv() == "40"
    return sock


def poll(service, query, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    connection.request("GET", f"/socket.io/?{query}", headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_missing_or_bad_token_is_a_visible_connect_error(service, kernel):
    sock = connect_raw(service)
    sock.send(f"40/shell/{kernel},")
    assert recv_non_ping(sock) == f'44/shell/{kernel},{{"message":"Forbidden: missing or bad token"}}'
    sock.send(f'40/shell/{kernel},{{"token":"wrong"}}')
    assert recv_non_ping(sock).startswith(f"44/shell/{kernel},")
    sock.send(f'40/shell/{kernel},{{"token":"{service.token}"}}')
    assert recv_non_ping(sock).startswith(f'40/shell/{kernel},{{"sid":')
    sock.close()


def test_token_in_query_works_for_protocol_4(service, kernel):
    sock = connect_raw(service, 3, f"&token={service.token}")
    sock.send(f"40/jupyter/iopub/{kernel}")
    assert sock.recv() == f"40/jupyter/iopub/{kernel}"
    sock.close()


@pytest.mark.parametrize("namespace", ["/shell/no-such-kernel", "/jupyter/stdio/no-such-kernel", "/nothing/here"])
def test_unknown_kernel_or_namespace_is_a_connect_error_not_a_hang(service, namespace):
    sock = connect_raw(service, 3, f"&token={service.token}")
    sock.send(f"40{namespace}")
    reply = sock.recv()
    assert reply.startswith(f"44{namespace},") and ("No such kernel" in reply or "Invalid namespace" in reply)
    sock.close()


def test_malformed_msg_is_answered_with_an_error_event(service, kernel):
    sock = connect_raw(service, 4)
    sock.send(f'40/shell/{kernel},{{"token":"{service.token}"}}')
    recv_non_ping(sock)
    sock.send(f'42/shell/{kernel},["msg",{{"header":"not an object"}}]')
    reply = recv_non_ping(sock)
    assert reply.startswith(f'42/shell/{kernel},["error",') and "header must be a JSON object" in reply
    sock.send(f'42/iopub/{kernel},["msg",{{}}]')  # namespace not joined: the session closes
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionResetError)):
        for _ in range(5):
            recv_non_ping(sock)


def test_unsupported_eio_version_is_400(service):
    status, _, body = poll(service, "EIO=5&transport=polling")
    assert status == 400 and json.loads(body)["message"] == "Unsupported protocol version"


def test_socketio_is_served_under_the_base_path_too(service):
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
    connection.request("GET", "/jupyter/socket.io/?EIO=4&transport=polling")
    response = connection.getresponse()
    assert response.status == 200 and response.read().startswith(b'0{"sid":')


def test_origin_policy_for_polling_and_websocket():
    with running_service("--initial-kernels=0", "--allow-origin=http://app.example") as service:
        status, headers, _ = poll(service, "EIO=3&transport=polling", {"Origin": "http://app.example"})
        assert status == 200
        assert headers["access-control-allow-origin"] == "http://app.example"
        assert headers["access-control-allow-credentials"] == "true"
        status, headers, _ = poll(service, "EIO=3&transport=polling", {"Origin": "http://evil.example"})
        assert status == 403 and "access-control-allow-origin" not in headers
        status, headers, _ = service.request("GET", "spawn/python3", headers={"Origin": "http://app.example"})
        assert status == 200 and headers["access-control-allow-origin"] == "http://app.example"
        connect_raw(service, 4, origin="http://app.example").close()
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            connect_raw(service, 4, origin="http://evil.example")
        assert refused.value.status_code == 403


def test_vanished_clients_are_reaped_by_the_heartbeat():
    with running_service("--KernelsService.ping_interval=0.3", "--KernelsService.ping_timeout=0.2") as service:
        (kernel,) = service.request("GET", "api/kernels")[2]
        polling_sid = json.loads(poll(service, "EIO=4&transport=polling")[2][1:])["sid"]
        sock = connect_raw(service, 4)
        sock.send(f'40/iopub/{kernel["id"]},{{"token":"{service.token}"}}')
        assert recv_non_ping(sock).startswith("40/iopub/")
        assert service.request("GET", f"api/kernels/{kernel['id']}")[2]["connections"] == 1
        wait_until(  # the client stops answering pings: gone within ~0.5 s
            lambda: service.request("GET", f"api/kernels/{kernel['id']}")[2]["connections"] == 0,
            5,
            "the silent socket.io client letting go of its relay listener",
        )
        assert poll(service, f"EIO=4&transport=polling&sid={polling_sid}")[0] == 400
        sock.close()


def test_allow_origin_star_lets_any_page_spawn():
    with running_service("--initial-kernels=0", "--allow-origin=*") as service:
        status, headers, body = service.request("GET", "spawn/python3", headers={"Origin": "http://any.example"})
        assert status == 200 and headers["access-control-allow-origin"] == "http://any.example"
        assert headers["access-control-allow-credentials"] == "true"
        status, headers, _ = poll(service, "EIO=3&transport=polling", {"Origin": "http://other.example"})
        assert status == 200 and headers["access-control-allow-origin"] == "http://other.example"


def test_websocket_transport_without_upgrade_is_a_json_400(service):
    status, headers, body = poll(service, "EIO=4&transport=websocket")
    assert status == 400 and json.loads(body) == {"code": 3, "message": "Bad request"}


def test_heartbeat_goes_on_while_a_connect_waits_for_a_slow_kernel(tmp_path):
    """A namespace connect waits for its kernel to be ready; pings and pongs must not."""
    launcher = (
        "import sys, time; time.sleep(2); from ipykernel.kernelapp import launch_new_instance; launch_new_instance()"
    )
    write_kernelspec(tmp_path, "slow", [sys.executable, "-c", launcher, "-f", "{connection_file}"])
    with running_service(
        "--initial-kernels=0",
        "--KernelsService.ping_interval=0.3",
        "--KernelsService.ping_timeout=0.2",
        env={"JUPYTER_PATH": str(tmp_path)},
    ) as service:
        kernel_id = service.request("GET", "spawn/slow")[2]["id"]
        sock = connect_raw(service, 4)
        started = time.monotonic()
        sock.send(f'40/shell/{kernel_id},{{"token":"{service.token}"}}')
        assert recv_non_ping(sock).startswith(f"40/shell/{kernel_id},"), "the session died while connecting"
        assert time.monotonic() - started > 0.5, "the connect did not wait for the kernel"
        sock.close()
