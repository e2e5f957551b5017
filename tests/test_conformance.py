"""The Socket.IO protocol specification's test suite, against the stand-alone conformance
server, over real HTTP and websockets: Engine.IO 4 + Socket.IO 5 as the suite states it,
and the same cases in Engine.IO 3 + Socket.IO 4 framing."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys

import pytest
import websocket

from kernels_service.testing.service import alive, free_port
from tests.support.engineio import post_headers_only, recv_non_ping, wait_closed
from tests.support.paths import ROOT
from tests.support.waiting import wait_until, wait_until_read


def listening(port: int) -> bool:
    """Whether something accepts connections on the loopback port."""
    try:
        http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def server():
    """Two conformance servers: Socket.IO at /socket.io/ and Engine.IO echo at /engine.io/."""
    ports = {"sio": free_port(), "eio": free_port()}
    module = "kernels_service.socketio.conformance"
    procs = [
        subprocess.Popen([sys.executable, "-m", module, "--port", str(ports["sio"])], cwd=ROOT),
        subprocess.Popen([sys.executable, "-m", module, "--port", str(ports["eio"]), "--engine-only"], cwd=ROOT),
    ]
    for port in ports.values():
        wait_until(lambda port=port: listening(port), 20, f"the conformance server on port {port}")
    yield ports
    procs[0].send_signal(signal.SIGINT)  # Ctrl-C
    procs[1].terminate()
    for proc in procs:
        assert proc.wait(10) == 0, "the conformance server exits 0 on Ctrl-C and SIGTERM"
        assert not alive(proc.pid)


def request(port, method, path, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, body=body)
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def pending_poll(port, path):
    """A polling GET sent on a connection of its own, returned once the server has read it
    (not after a sleep): `answer_of` then reads its answer."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    wait_until_read(sock)
    return sock


def answer_of(sock):
    """The status and body of the answer to the request sent on `sock`."""
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
        return response.status, response.read()
    finally:
        sock.close()


def handshake(port, version=4, path="/socket.io/"):
    b64 = "&b64=1" if version == 3 else ""
    status, body = request(port, "GET", f"{path}?EIO={version}&transport=polling{b64}")
    assert status == 200
    text = body.decode()
    if version == 3:
        length, rest = text.split(":", 1)
        text = rest[: int(length)]
    return json.loads(text[1:])["sid"]


def ws_open(port, query, path="/socket.io/"):
    sock = websocket.create_connection(f"ws://127.0.0.1:{port}{path}?{query}", timeout=5)
    return sock


def sio_ws(port, version=4):
    sock = ws_open(port, f"EIO={version}&transport=websocket")
    sock.recv()  # Engine.IO handshake
    if version == 4:
        sock.send("40")
        assert recv_non_ping(sock).startswith("40{")
    else:
        assert sock.recv() == "40"
    assert recv_non_ping(sock) == '42["auth",{}]'
    return sock


# --- Engine.IO handshake -------------------------------------------------------------------


def test_polling_handshake(server):
    status, body = request(server["sio"], "GET", "/socket.io/?EIO=4&transport=polling")
    value = json.loads(body[1:])
    assert status == 200 and body[:1] == b"0"
    assert set(value) == {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}
    assert value["upgrades"] == ["websocket"] and (value["pingInterval"], value["pingTimeout"]) == (300, 200)
    assert value["maxPayload"] == 1000000


def test_polling_handshake_v3_is_length_prefixed(server):
    status, body = request(server["sio"], "GET", "/socket.io/?EIO=3&transport=polling&b64=1")
    length, content = body.decode().split(":", 1)
    assert status == 200 and int(length) == len(content.split("2:40")[0]) and content.startswith("0{")


@pytest.mark.parametrize(
    "method, query",
    [("GET", "transport=polling"), ("GET", "EIO=abc&transport=polling"), ("GET", "EIO=5&transport=polling"),
     ("GET", "EIO=4"), ("GET", "EIO=4&transport=abc"), ("POST", "EIO=4&transport=polling"),
     ("PUT", "EIO=4&transport=polling"), ("GET", "EIO=4&transport=polling&sid=unknown")],
)  # fmt: skip
def test_bad_handshakes_are_400(server, method, query):
    status, body = request(server["sio"], method, f"/socket.io/?{query}")
    assert status == 400 and set(json.loads(body)) == {"code", "message"}


def test_websocket_handshake(server):
    sock = ws_open(server["sio"], "EIO=4&transport=websocket")
    value = json.loads(sock.recv()[1:])
    assert value["upgrades"] == [] and value["pingInterval"] == 300
    sock.close()


@pytest.mark.parametrize("query", ["transport=websocket", "EIO=abc&transport=websocket", "EIO=4&transport=abc"])
def test_bad_websocket_handshakes_are_refused(server, query):
    with pytest.raises(websocket.WebSocketBadStatusException):
        ws_open(server["sio"], query)


# --- heartbeat -------------------------------------------------------------------------------


def test_v4_polling_heartbeat(server):
    port, sid = server["eio"], handshake(server["eio"], path="/engine.io/")
    for _ in range(3):
        assert request(port, "GET", f"/engine.io/?EIO=4&transport=polling&sid={sid}") == (200, b"2")
        assert request(port, "POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"3") == (200, b"ok")


def test_v3_polling_heartbeat(server):
    port, sid = server["eio"], handshake(server["eio"], 3, "/engine.io/")
    for _ in range(3):
        assert request(port, "POST", f"/engine.io/?EIO=3&transport=polling&sid={sid}&b64=1", b"1:2") == (200, b"ok")
        status, body = request(port, "GET", f"/engine.io/?EIO=3&transport=polling&sid={sid}")
        assert status == 200 and body == b"1:3"


@pytest.mark.parametrize("version", [3, 4])
def test_polling_session_closes_on_ping_timeout(server, version):
    port = server["eio"]
    sid = handshake(port, version, "/engine.io/")
    polls = [request(port, "GET", f"/engine.io/?EIO={version}&transport=polling&sid={sid}")]
    # the client never answers: its polls get pings (protocol 4) until the session times out
    wait_until(
        lambda: (
            polls[-1][0] == 400
            or polls.append(request(port, "GET", f"/engine.io/?EIO={version}&transport=polling&sid={sid}"))
        ),
        timeout=10,
        what="the silent session's end",
    )
    assert all(body in (b"2", b"1", b"1:1") for status, body in polls[:-1] if status == 200), polls


def test_v4_websocket_heartbeat_and_timeout(server):
    sock = ws_open(server["eio"], "EIO=4&transport=websocket", "/engine.io/")
    sock.recv()
    for _ in range(3):
        assert sock.recv() == "2"
        sock.send("3")
    assert wait_closed(sock), "no pong, but the session stayed open"


def test_v3_websocket_client_pings(server):
    sock = ws_open(server["eio"], "EIO=3&transport=websocket", "/engine.io/")
    sock.recv()
    for _ in range(3):
        sock.send("2")
        assert sock.recv() == "3"
    assert wait_closed(sock), "a silent v3 client must time out"


# --- close and upgrade -----------------------------------------------------------------------


def test_polling_close_answers_the_pending_poll_with_noop(server):
    port, sid = server["eio"], handshake(server["eio"], path="/engine.io/")
    poll = pending_poll(port, f"/engine.io/?EIO=4&transport=polling&sid={sid}")
    assert request(port, "POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"1") == (200, b"ok")
    assert answer_of(poll) == (200, b"6")
    assert request(port, "GET", f"/engine.io/?EIO=4&transport=polling&sid={sid}")[0] == 400


def test_websocket_close(server):
    sock = ws_open(server["eio"], "EIO=4&transport=websocket", "/engine.io/")
    sock.recv()
    sock.send("1")
    assert wait_closed(sock)


@pytest.mark.parametrize("version", [3, 4])
def test_upgrade_then_polling_and_second_websocket_are_refused(server, version):
    """The suites' "ignores HTTP requests / WebSocket connection with same sid after upgrade":
    the NOOP owed to a poll that never came goes out on the websocket; a second websocket is
    accepted and closed at once, and the first one goes on."""
    port = server["eio"]
    sid = handshake(port, version, "/engine.io/")
    sock = ws_open(port, f"EIO={version}&transport=websocket&sid={sid}", "/engine.io/")
    sock.send("2probe")
    assert sock.recv() == "3probe"
    sock.send("5")
    assert recv_non_ping(sock) == "6"
    assert request(port, "GET", f"/engine.io/?EIO={version}&transport=polling&sid={sid}")[0] == 400
    second = ws_open(port, f"EIO={version}&transport=websocket&sid={sid}", "/engine.io/")
    assert wait_closed(second)
    sock.send("4after upgrade")
    assert recv_non_ping(sock) == "4after upgrade"
    sock.close()


def test_concurrent_polls_close_the_session(server):
    port, sid = server["eio"], handshake(server["eio"], path="/engine.io/")
    first = pending_poll(port, f"/engine.io/?EIO=4&transport=polling&sid={sid}")
    assert request(port, "GET", f"/engine.io/?EIO=4&transport=polling&sid={sid}")[0] == 400
    assert answer_of(first)[0] == 200
    assert request(port, "GET", f"/engine.io/?EIO=4&transport=polling&sid={sid}")[0] == 400


# --- Engine.IO messages (echo server) --------------------------------------------------------


def test_polling_messages_echo_text_and_binary(server):
    port, sid = server["eio"], handshake(server["eio"], path="/engine.io/")
    url = f"/engine.io/?EIO=4&transport=polling&sid={sid}"
    assert request(port, "POST", url, "4hello\x1ebAQID\x1e4€".encode()) == (200, b"ok")
    assert request(port, "GET", url) == (200, "4hello\x1ebAQID\x1e4€".encode())


def test_websocket_messages_echo_text_and_binary(server):
    sock = ws_open(server["eio"], "EIO=4&transport=websocket", "/engine.io/")
    sock.recv()
    sock.send("4héllo")
    assert recv_non_ping(sock) == "4héllo"
    sock.send_binary(b"\x01\x02\x03")
    assert sock.recv() == b"\x01\x02\x03"
    sock.close()


def test_oversized_polling_payload_is_refused_before_it_is_sent(server):
    """413 comes from the Content-Length alone: the body is never read, let alone decoded."""
    port, sid = server["eio"], handshake(server["eio"], path="/engine.io/")
    for content_length in (1_000_001, 64 * 1024 * 1024):
        status, body = post_headers_only(port, f"/engine.io/?EIO=4&transport=polling&sid={sid}", content_length)
        assert status == 413 and json.loads(body)["message"] == "Payload too large"
    assert request(port, "GET", f"/engine.io/?EIO=4&transport=polling&sid={sid}")[0] == 400, "session not closed"
    assert handshake(port, path="/engine.io/"), "the server serves the next client"


def test_oversized_chunked_polling_body_is_cut_off(server):
    """Without a Content-Length, the body is read only up to maxPayload; then the connection drops."""
    port, sid = server["eio"], handshake(server["eio"], path="/engine.io/")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    chunks = (b"4" + b"x" * 65535 for _ in range(40))  # 2.6 MB
    try:
        connection.request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", body=chunks)
        response = connection.getresponse()
        assert response.status >= 400
    except (ConnectionError, http.client.RemoteDisconnected):
        pass  # the server dropped the connection: what we want
    connection.close()
    assert handshake(port, path="/engine.io/"), "the server serves the next client"


# --- Socket.IO -------------------------------------------------------------------------------


def test_connect_main_namespace_v5(server):
    sock = ws_open(server["sio"], "EIO=4&transport=websocket")
    sock.recv()
    sock.send('40{"token":"123"}')
    data = recv_non_ping(sock)
    assert data.startswith("40") and set(json.loads(data[2:])) == {"sid"}
    assert recv_non_ping(sock) == '42["auth",{"token":"123"}]'
    sock.close()


@pytest.mark.parametrize("connect, auth", [("40/custom,", "{}"), ('40/custom,{"token":"abc"}', '{"token":"abc"}')])
def test_connect_custom_namespace_v5(server, connect, auth):
    sock = ws_open(server["sio"], "EIO=4&transport=websocket")
    sock.recv()
    sock.send(connect)
    assert recv_non_ping(sock).startswith('40/custom,{"sid":')
    assert recv_non_ping(sock) == f'42/custom,["auth",{auth}]'
    sock.close()


def test_protocol_4_auto_joins_and_custom_namespace(server):
    sock = ws_open(server["sio"], "EIO=3&transport=websocket")
    sock.recv()
    assert sock.recv() == "40" and sock.recv() == '42["auth",{}]'
    sock.send("40/custom")
    assert sock.recv() == "40/custom" and sock.recv() == '42/custom,["auth",{}]'
    sock.send("40/random")
    assert sock.recv() == '44/random,{"message":"Invalid namespace"}'  # as socket.io 4 with allowEIO3
    sock.close()


def test_unknown_namespace_v5(server):
    sock = ws_open(server["sio"], "EIO=4&transport=websocket")
    sock.recv()
    sock.send("40/random")
    assert recv_non_ping(sock) == '44/random,{"message":"Invalid namespace"}'
    sock.close()


@pytest.mark.parametrize("version", [3, 4])
def test_disconnect_from_main_namespace_closes_after_connect_timeout(server, version):
    sock = sio_ws(server["sio"], version)
    sock.send("41")
    assert wait_closed(sock, 3.0)


def test_disconnect_custom_then_message_main(server):
    sock = sio_ws(server["sio"])
    sock.send("40/custom")
    recv_non_ping(sock), recv_non_ping(sock)
    sock.send("41/custom")
    sock.send('42["message","message to main namespace"]')
    assert recv_non_ping(sock) == '42["message-back","message to main namespace"]'
    sock.close()


@pytest.mark.parametrize("version", [3, 4])
def test_messages_acks_and_binary(server, version):
    sock = sio_ws(server["sio"], version)
    sock.send('42["message",1,"2",{"3":[true]}]')
    assert recv_non_ping(sock) == '42["message-back",1,"2",{"3":[true]}]'
    sock.send('42456["message-with-ack",1,"2",{"3":[false]}]')
    assert recv_non_ping(sock) == '43456[1,"2",{"3":[false]}]'
    binary = (lambda b: b"\x04" + b) if version == 3 else (lambda b: b)
    sock.send('452-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    sock.send_binary(binary(b"\x01\x02\x03"))
    sock.send_binary(binary(b"\x04\x05\x06"))
    assert recv_non_ping(sock) == '452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    assert sock.recv() == binary(b"\x01\x02\x03") and sock.recv() == binary(b"\x04\x05\x06")
    sock.send('452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
    sock.send_binary(binary(b"\x01"))
    sock.send_binary(binary(b"\x02"))
    assert recv_non_ping(sock) == '462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    assert sock.recv() == binary(b"\x01") and sock.recv() == binary(b"\x02")
    sock.close()


@pytest.mark.parametrize("bad", ["4abc", "42{}", '42abc["message-with-ack",1]', '42/custom,["message"]', "4"])
def test_invalid_packets_close_the_connection(server, bad):
    sock = sio_ws(server["sio"])
    sock.send(bad)
    assert wait_closed(sock)


def test_polling_socketio_v4_non_ascii_round_trip(server):
    """socket.io-client 1.x in base64 mode: UTF-8 once more inside text payloads, both ways."""
    port = server["sio"]
    sid = handshake(port, 3)
    url = f"/socket.io/?EIO=3&transport=polling&sid={sid}&b64=1"
    message = '42["message","é✓"]'.encode().decode("latin-1")
    assert request(port, "POST", url, f"{len(message)}:{message}".encode()) == (200, b"ok")
    status, body = request(port, "GET", url)
    assert status == 200 and body.decode().endswith('42["message-back","\\u00e9\\u2713"]')
