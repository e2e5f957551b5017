"""The socket.io door as an attacker tries it: floods, sessions without a token, garbage in
every field, in both generations and over both transports.

Each test then checks that the service still serves a real client (an authorized
namespace join on a real kernel) and that its log holds no traceback.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

import pytest
import websocket

from kernels_service.testing.service import running_service, tracebacks
from tests.support.engineio import frames_until_closed, post_headers_only, recv_non_ping, wait_closed
from tests.support.metrics import socketio_sessions
from tests.support.waiting import wait_until, wait_until_read

CONNECT_TIMEOUT = 1.5
MAX_SESSIONS = 60


@pytest.fixture(scope="module")
def guarded():
    """A service with a token, a short connect timeout and a small session cap."""
    with running_service(f"--connect-timeout={CONNECT_TIMEOUT}", f"--max-socketio-sessions={MAX_SESSIONS}") as service:
        yield service


@pytest.fixture
def kernel_id(guarded):
    return guarded.request("GET", "api/kernels")[2][0]["id"]


def post(service, query, body, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    connection.request("POST", f"/socket.io/?{query}", body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def get(service, query):
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    connection.request("GET", f"/socket.io/?{query}")
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, data


def open_polling(service, version):
    """A polling session without a token; its sid."""
    status, body = get(service, f"EIO={version}&transport=polling")
    assert status == 200, body
    text = body.decode()
    return json.loads(text[text.index("{") : text.index("}") + 1])["sid"]


def open_ws(service, version, token=True):
    query = f"EIO={version}&transport=websocket" + (f"&token={service.token}" if token else "")
    sock = websocket.create_connection(f"ws://127.0.0.1:{service.port}/socket.io/?{query}", timeout=10)
    assert recv_non_ping(sock).startswith("0{")
    if version == 3:
        assert recv_non_ping(sock) == ("40" if token else '44{"message":"Forbidden: missing or bad token"}')
    return sock


def join(sock, version, namespace, token):
    if version == 3:
        sock.send(f"40{namespace}")
        return recv_non_ping(sock)
    sock.send(f'40{namespace},{{"token":"{token}"}}')
    return recv_non_ping(sock)


def assert_still_serves(service, kernel_id):
    """A real client of each generation joins a kernel's shell, and the log is clean."""
    for version in (3, 4):
        sock = open_ws(service, version)
        assert join(sock, version, f"/shell/{kernel_id}", service.token).startswith(f"40/shell/{kernel_id}")
        sock.close()
    log = service.output()
    assert not tracebacks(log) and "Uncaught exception" not in log, log[-3000:]


def session_alive(service, version, sid):
    """True if the polling session still answers (a POST of a noop is accepted)."""
    noop = "1:6" if version == 3 else "6"
    return post(service, f"EIO={version}&transport=polling&sid={sid}", noop)[0] == 200


# --- floods and resources before authentication ---------------------------------------------


def service_rss(service) -> int:
    fields = Path(f"/proc/{service.pid}/status").read_text().split("\n")
    return next(int(line.split()[1]) * 1024 for line in fields if line.startswith("VmRSS:"))


@pytest.mark.parametrize("version", [3, 4])
def test_a_64_mib_polling_body_is_refused_from_its_headers(guarded, kernel_id, version):
    sid = open_polling(guarded, version)
    path = f"/socket.io/?EIO={version}&transport=polling&sid={sid}"
    status, body = post_headers_only(guarded.port, path, 64 * 1024 * 1024)
    assert status == 413 and json.loads(body)["message"] == "Payload too large"
    assert not session_alive(guarded, version, sid)
    assert_still_serves(guarded, kernel_id)


@pytest.mark.parametrize("version", [3, 4])
def test_a_body_of_a_million_empty_messages_closes_the_session_and_costs_little(guarded, kernel_id, version):
    """Packets go to a bounded inbox: past its limit the session closes and the rest is not decoded."""
    sid = open_polling(guarded, version)
    packet = "1:4" if version == 3 else "4\x1e"
    body = (packet * (999_000 // len(packet))).rstrip("\x1e").encode()
    before = service_rss(guarded)
    started = time.monotonic()
    status, _ = post(guarded, f"EIO={version}&transport=polling&sid={sid}", body)
    assert status == 400
    assert time.monotonic() - started < 10
    assert not session_alive(guarded, version, sid)
    assert service_rss(guarded) - before < 100 * 1024 * 1024
    assert_still_serves(guarded, kernel_id)


def test_sessions_without_a_token_join_nothing_and_are_closed_after_the_connect_timeout(guarded, kernel_id):
    v3_sid, v4_sid = open_polling(guarded, 3), open_polling(guarded, 4)
    v3_ws, v4_ws = open_ws(guarded, 3, token=False), open_ws(guarded, 4, token=False)
    v4_ws.send("40")
    assert recv_non_ping(v4_ws) == '44{"message":"Forbidden: missing or bad token"}'
    status, body = get(guarded, f"EIO=3&transport=polling&sid={v3_sid}")
    assert status == 200 and b'44{"message":"Forbidden: missing or bad token"}' in body
    assert wait_closed(v3_ws, CONNECT_TIMEOUT * 4) and wait_closed(v4_ws, CONNECT_TIMEOUT * 4)
    for version, sid in ((3, v3_sid), (4, v4_sid)):
        assert not session_alive(guarded, version, sid)
    assert_still_serves(guarded, kernel_id)


def test_sessions_are_capped_and_the_cap_frees_up(guarded, kernel_id):
    opened = []
    for _ in range(MAX_SESSIONS + 5):
        status, body = get(guarded, "EIO=4&transport=polling")
        opened.append(status)
        if status == 503:
            assert json.loads(body)["message"] == "Too many sessions"
    assert opened.count(200) <= MAX_SESSIONS and opened[-1] == 503
    # sessions that join no namespace are closed: the cap frees up, then every one of them goes
    wait_until(lambda: get(guarded, "EIO=4&transport=polling")[0] == 200, CONNECT_TIMEOUT * 10, "a freed session")
    wait_until(lambda: socketio_sessions(guarded) == 0, CONNECT_TIMEOUT * 10, "every idle session's end")
    assert_still_serves(guarded, kernel_id)


def test_concurrent_handshakes_and_floods_leave_the_service_serving(guarded, kernel_id):
    errors = []

    def flood(version):
        try:
            for _ in range(10):
                sid = open_polling(guarded, version)
                post(guarded, f"EIO={version}&transport=polling&sid={sid}", b"\x00\xff" * 1000)
                get(guarded, f"EIO={version}&transport=polling&sid={sid}")
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=flood, args=(3 + i % 2,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert_still_serves(guarded, kernel_id)


# --- garbage: the codec refuses, the session closes, nothing escapes ---------------------------

BAD_SOCKETIO = {
    "superscript digit in attachment count": '5²-/shell/{k},["msg",{{}}]',
    "superscript digit in ack id": '2/shell/{k},²["msg",{{}}]',
    "NaN in a msg": '2/shell/{k},["msg",{{"header":{{"msg_id":NaN}}}}]',
    "lone surrogate": '2/shell/{k},["msg",{{"header":{{"msg_id":"\\ud800"}}}}]',
    "nested 100000 deep": '2/shell/{k},["msg",' + "[" * 100000 + "]" * 100000 + "]",
    "huge ack id": "2/shell/{k}," + "9" * 5000 + '["msg",{{}}]',
}


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("case", list(BAD_SOCKETIO))
def test_bad_socketio_packets_over_websocket_close_the_session(guarded, kernel_id, version, case):
    sock = open_ws(guarded, version)
    assert join(sock, version, f"/shell/{kernel_id}", guarded.token).startswith("40")
    sock.send("4" + BAD_SOCKETIO[case].format(k=kernel_id))
    assert wait_closed(sock, 10), "the session survived a malformed packet"
    assert_still_serves(guarded, kernel_id)


@pytest.mark.parametrize("version", [3, 4])
def test_a_session_closed_over_websocket_gets_its_last_packets_before_the_close(guarded, kernel_id, version):
    """Frames are written at the end of a turn of the event loop; a session the server ends
    in that turn still sends what it queued (Engine.IO's close packet) before the
    websocket's close frame."""
    sock = open_ws(guarded, version)
    assert join(sock, version, f"/shell/{kernel_id}", guarded.token).startswith("40")
    sock.send("4" + BAD_SOCKETIO["NaN in a msg"].format(k=kernel_id))
    frames = frames_until_closed(sock, 10)
    assert frames is not None, "the session survived a malformed packet"
    assert [frame for frame in frames if frame not in ("2", "3")][-1:] == ["1"], frames
    assert_still_serves(guarded, kernel_id)


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("case", list(BAD_SOCKETIO))
def test_bad_socketio_packets_over_polling_close_the_session(guarded, kernel_id, version, case):
    sid = open_polling(guarded, version)
    query = f"EIO={version}&transport=polling&sid={sid}"
    packets = [f'40/shell/{kernel_id},{{"token":"{guarded.token}"}}', "4" + BAD_SOCKETIO[case].format(k=kernel_id)]
    if version == 3:
        body = "".join(f"{len(p.encode('utf-16-le')) // 2}:{p}" for p in packets)
    else:
        body = "\x1e".join(packets)
    post(guarded, query, body.encode())
    wait_until(lambda: not session_alive(guarded, version, sid), 10, "the end of a session sent a malformed packet")
    assert_still_serves(guarded, kernel_id)


@pytest.mark.parametrize(
    "body", ["²:40".encode(), "2:4😀".encode(), b"\x00\xff", b"\x01\x09\xff\x07", b"\x00\x01", b"\xff\xfe", b"3:"]
)
def test_bad_v3_polling_payloads_are_json_400s(guarded, kernel_id, body):
    sid = open_polling(guarded, 3)
    status, reply = post(guarded, f"EIO=3&transport=polling&sid={sid}", body)
    assert status == 400 and json.loads(reply)["message"] == "Bad request"
    assert not session_alive(guarded, 3, sid)
    assert_still_serves(guarded, kernel_id)


@pytest.mark.parametrize(
    "frame, opcode",
    [(b"\x09abc", "binary"), (b"x", "text"), (b"", "text"), (b"b4!!", "text"), (b"4\xed\xa0\x80", "text")],
)
def test_bad_engineio_websocket_frames_close_the_session(guarded, kernel_id, frame, opcode):
    """Unknown packet types, empty frames, bad base64, and text that is not UTF-8."""
    sock = open_ws(guarded, 3)
    sock.send(frame, opcode=websocket.ABNF.OPCODE_BINARY if opcode == "binary" else websocket.ABNF.OPCODE_TEXT)
    assert wait_closed(sock, 10)
    assert_still_serves(guarded, kernel_id)


def test_an_abandoned_long_poll_ends_the_session_quietly(guarded, kernel_id):
    sid = open_polling(guarded, 4)
    with socket.create_connection(("127.0.0.1", guarded.port), timeout=10) as sock:
        sock.sendall(f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        wait_until_read(sock)  # the poll is in the server's hands: now abandon it
    wait_until(lambda: not session_alive(guarded, 4, sid), 10, "the end of the session of an abandoned poll")
    assert_still_serves(guarded, kernel_id)
