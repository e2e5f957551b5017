"""The raw Jupyter websocket against real kernels, in both protocols."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import websocket

from kernels_service.testing.channels import ChannelsClient, close_of, stream_text
from kernels_service.testing.service import running_service
from tests.support.channels import interrupted_reply
from tests.support.waiting import wait_until

PROTOCOLS = ["legacy", "v1"]

ECHO_COMM = """
from comm import get_comm_manager
def _echo_target(comm, open_msg):
    @comm.on_msg
    def _echo(msg):
        comm.send({"echo": msg["content"]["data"]}, buffers=msg["buffers"])
get_comm_manager().register_target("echo", _echo_target)
"""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_execute_gives_exact_stream_output(service, kernel, open_client, protocol):
    client = open_client(kernel, protocol)
    reply, outputs = client.execute("print('hello'); print('wörld ✓')")
    assert reply["content"]["status"] == "ok"
    assert reply["header"]["msg_type"] == "execute_reply"
    assert stream_text(outputs) == "hello\nwörld ✓\n"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_all_client_channels(service, kernel, open_client, protocol):
    client = open_client(kernel, protocol)
    for channel in ("shell", "control"):
        msg_id = client.send(channel, "kernel_info_request", {})
        reply = client.recv_until(
            lambda m, i=msg_id, c=channel: m["parent_header"].get("msg_id") == i and m["channel"] == c
        )
        assert reply[-1]["header"]["msg_type"] == "kernel_info_reply"
        assert reply[-1]["content"]["language_info"]["name"] == "python"
    msg_id = client.send("shell", "execute_request", {"code": "input('name? ')", "allow_stdin": True})
    request = client.recv_until(lambda m: m["channel"] == "stdin")[-1]
    assert request["header"]["msg_type"] == "input_request" and request["content"]["prompt"] == "name? "
    client.send("stdin", "input_reply", {"value": "Ada"})
    reply, outputs = client.wait_for(msg_id)
    assert reply["content"]["status"] == "ok"
    assert outputs[-1]["content"]["data"]["text/plain"] == "'Ada'"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_buffers_round_trip(service, kernel, open_client, protocol):
    client = open_client(kernel, protocol)
    client.execute(ECHO_COMM)
    client.send("shell", "comm_open", {"comm_id": "c1", "target_name": "echo", "data": {}})
    # small buffers and big ones (written to the client as they came, not joined into the frame)
    payload = [bytes(range(256)), b"\x00" * 1000, os.urandom(300_000), b"", os.urandom(40_000)]
    data = {"n": 2, "big": "ü" * 50_000}
    client.send("shell", "comm_msg", {"comm_id": "c1", "data": data}, buffers=payload)
    echo = client.recv_until(lambda m: m["header"]["msg_type"] == "comm_msg")[-1]
    assert echo["content"]["data"] == {"echo": data}
    assert [bytes(b) for b in echo["buffers"]] == payload


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_big_outputs_arrive_whole_and_in_order(service, kernel, open_client, protocol):
    """Big parts go to the client as separate writes between the small ones: each frame
    still arrives whole, and in the kernel's order."""
    client = open_client(kernel, protocol)
    code = (
        "from IPython.display import display\n"
        "for i in range(4):\n"
        "    print(i, flush=True)\n"
        "    display({'text/plain': str(i) * 400_000 + 'é'}, raw=True)\n"
    )
    reply, outputs = client.execute(code)
    assert reply["content"]["status"] == "ok"
    seen = []
    for message in outputs:
        if message["header"]["msg_type"] == "stream":
            seen += message["content"]["text"].split()
        elif message["header"]["msg_type"] == "display_data":
            text = message["content"]["data"]["text/plain"]
            assert text == text[0] * 400_000 + "é"
            seen.append(f"display {text[0]}")
    assert seen == [item for i in range(4) for item in (str(i), f"display {i}")]


def test_two_clients_share_iopub_but_not_replies_or_stdin(service, kernel, open_client):
    alice, bob = open_client(kernel, "legacy"), open_client(kernel, "v1")
    bob.execute("pass")  # both sessions are open once each has had a reply
    alice.execute("pass")
    assert service.request("GET", f"api/kernels/{kernel}")[2]["connections"] == 2
    msg_id = alice.send("shell", "execute_request", {"code": "print('x' + input('? '))", "allow_stdin": True})
    assert alice.recv_until(lambda m: m["channel"] == "stdin")[-1]["content"]["prompt"] == "? "
    alice.send("stdin", "input_reply", {"value": "yz"})
    reply, outputs = alice.wait_for(msg_id)
    assert stream_text(outputs) == "xyz\n"
    seen_by_bob = bob.recv_until(
        lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
        and m["parent_header"].get("msg_id") == msg_id
    )  # fmt: skip
    assert stream_text([m for m in seen_by_bob if m["channel"] == "iopub"]) == "xyz\n"
    assert all(m["channel"] == "iopub" for m in seen_by_bob), "bob got alice's reply or input_request"


def test_interrupt_stops_a_sleeping_cell(service, kernel, open_client):
    """The reply of an interrupted cell reaches its client: it fails only if the relay loses
    or holds back a reply the kernel sent (see `interrupted_reply`)."""
    client = open_client(kernel)
    interrupt = lambda: service.request("POST", f"api/kernels/{kernel}/interrupt")[0]  # noqa: E731
    reply = interrupted_reply(interrupt, client, service.output)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"
    reply, outputs = client.execute("print('next')")
    assert reply["content"]["status"] == "ok" and stream_text(outputs) == "next\n"


def test_a_connected_client_works_on_after_a_rest_restart(service, kernel, open_client):
    """As with Jupyter Server, a REST restart sends no synthetic `restarting` status (the
    client that asked knows; JupyterLab would reconnect twice); a client that stays
    connected reaches the new kernel, and its first request's output is not lost."""
    client = open_client(kernel)
    client.execute("x = 1")
    assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
    reply, outputs = client.execute("print('x' in dir())")
    assert reply["content"]["status"] == "ok" and stream_text(outputs) == "False\n"


def test_killed_kernel_is_reported_restarting_then_works(service, kernel, open_client):
    client = open_client(kernel)
    _, outputs = client.execute("import os; print(os.getpid())")
    os.kill(int(stream_text(outputs)), signal.SIGKILL)
    client.recv_until(
        lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "restarting", timeout=30
    )
    wait_until(
        lambda: service.request("GET", f"api/kernels/{kernel}")[2]["execution_state"] != "restarting",
        30,
        "the kernel coming back after the restart",
    )
    _, outputs = client.execute("print('back')")
    assert stream_text(outputs) == "back\n"


def test_unknown_kernel_is_refused_before_upgrade(service):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        ChannelsClient(service, "no-such-kernel")
    assert refused.value.status_code == 404


def test_bad_token_is_refused_before_upgrade(service, kernel):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        ChannelsClient(service, kernel, token="wrong")
    assert refused.value.status_code == 403


def test_missing_token_is_401_before_upgrade(service, kernel):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        ChannelsClient(service, kernel, token="")
    assert refused.value.status_code == 401
    assert refused.value.resp_headers["www-authenticate"].startswith("token")


def test_foreign_origin_is_refused(service, kernel):
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(
            service.ws_url(f"api/kernels/{kernel}/channels"),
            header=[f"Authorization: token {service.token}"],
            origin="http://evil.example",
        )
    assert refused.value.status_code == 403
    assert json.loads(refused.value.resp_body)["message"].startswith("Forbidden")


UPGRADE = {"Upgrade": "websocket", "Connection": "keep-alive, Upgrade", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
NOT_AN_UPGRADE = {
    "a plain GET": ({}, 400),
    "no Connection: upgrade": ({**UPGRADE, "Connection": "keep-alive", "Sec-WebSocket-Version": "13"}, 400),
    "no key": ({**UPGRADE, "Sec-WebSocket-Key": "", "Sec-WebSocket-Version": "13"}, 400),
    "no version": (UPGRADE, 400),
    "an old draft's version": ({**UPGRADE, "Sec-WebSocket-Version": "8"}, 426),
}


@pytest.mark.parametrize("name", NOT_AN_UPGRADE)
def test_a_request_that_is_not_a_websocket_upgrade_gets_a_json_error(service, kernel, open_client, name):
    """As api/spec.yaml states the route: every refusal is JSON, 426 says which version."""
    headers, expected = NOT_AN_UPGRADE[name]
    status, reply_headers, body = service.request("GET", f"api/kernels/{kernel}/channels", headers=headers)
    assert status == expected and set(body) == {"message", "reason"}, body
    if expected == 426:
        assert reply_headers["sec-websocket-version"] == "13"
    reply, _ = open_client(kernel).execute("pass")  # the route still upgrades the next client
    assert reply["content"]["status"] == "ok"


V1_BAD_FRAMES = {
    "wrong first offset": struct.pack("<7Q", 6, 0, 61, 63, 65, 67, 69) + b"shell" + b"{}" * 4,
    "offsets past the end": struct.pack("<7Q", 6, 56, 61, 63, 65, 67, 999) + b"shell" + b"{}" * 4,
    "too short": b"\x01\x02",
    "iopub is not for clients": struct.pack("<7Q", 6, 56, 61, 63, 65, 67, 69) + b"iopub" + b"{}" * 4,
}


@pytest.mark.parametrize("name", V1_BAD_FRAMES)
def test_malformed_v1_frame_closes_only_that_connection(service, kernel, open_client, name):
    bad, good = open_client(kernel, "v1"), open_client(kernel, "v1")
    bad.ws.send_binary(V1_BAD_FRAMES[name])
    assert_closed_with(bad, 1007)
    _, outputs = good.execute("print(2 + 2)")
    assert stream_text(outputs) == "4\n"


@pytest.mark.parametrize(
    "frame",
    ["{not json", json.dumps({"header": {"msg_id": "x"}}), json.dumps([1]), json.dumps({"channel": "shell"})],
)
def test_malformed_legacy_frame_closes_the_connection(service, kernel, open_client, frame):
    client = open_client(kernel)
    client.ws.send(frame)
    assert_closed_with(client, 1007)
    assert service.request("GET", f"api/kernels/{kernel}")[0] == 200


def test_v1_text_frame_is_refused(service, kernel, open_client):
    client = open_client(kernel, "v1")
    client.ws.send("{}")
    assert_closed_with(client, 1007)


def test_oversized_frame_closes_the_connection(service, kernel, open_client):
    client = open_client(kernel)
    try:
        client.ws.send_binary(b"\x00" * (64 * 1024 * 1024 + 1))
        assert_closed_with(client, 1009)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server closed (1009) and dropped the connection before the client finished sending
    with pytest.raises((websocket.WebSocketConnectionClosedException, BrokenPipeError, ConnectionResetError)):
        client.ws.send("{}")
        client.ws.recv()
    _, outputs = open_client(kernel).execute("print('still here')")
    assert stream_text(outputs) == "still here\n"


def test_deleting_a_kernel_closes_its_websockets(service, open_client):
    kernel_id = service.start_kernel()
    client = open_client(kernel_id)
    assert service.request("DELETE", f"api/kernels/{kernel_id}")[0] == 204
    assert_closed_with(client, 1001)


def assert_closed_with(client: ChannelsClient, code: int) -> None:
    """Read until the server's close frame arrives; check its code and that it has a reason."""
    client.ws.settimeout(20)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        frame = client.ws.recv_frame()
        if frame.opcode == websocket.ABNF.OPCODE_CLOSE:
            got = struct.unpack("!H", frame.data[:2])[0]
            assert got == code, frame.data
            assert code == 1009 or frame.data[2:], "close frame has no reason"
            return
    raise AssertionError("connection was not closed")


def test_plain_http_get_of_the_websocket_url_is_a_json_400(service, kernel):
    status, headers, error = service.request("GET", f"api/kernels/{kernel}/channels")
    assert status == 400 and headers["content-type"].startswith("application/json") and "websocket" in error["message"]


def v1_frame(channel: bytes, *parts: bytes) -> bytes:
    """A v1 frame from raw chunks, whatever they hold."""
    chunks = [channel, *parts]
    offsets = [8 * (len(chunks) + 2)]
    for chunk in chunks:
        offsets.append(offsets[-1] + len(chunk))
    return struct.pack(f"<{len(chunks) + 2}Q", len(chunks) + 1, *offsets) + b"".join(chunks)


HEADER = b'{"msg_id":"m1","msg_type":"kernel_info_request","session":"s","username":"u","version":"5.3"}'
BAD_VALUES = {
    "NaN": '{"x": NaN}',
    "lone surrogate": '{"x": "\\ud800"}',
    "nested 100000 deep": '{"x": ' + "[" * 100000 + "]" * 100000 + "}",
}


@pytest.mark.parametrize("value", BAD_VALUES)
def test_bad_json_values_close_the_legacy_websocket_with_1007(service, kernel, open_client, value):
    client = open_client(kernel)
    message = '{"channel":"shell","header":%s,"parent_header":{},"metadata":{},"content":%s}'
    client.ws.send(message % (HEADER.decode(), BAD_VALUES[value]))
    assert_closed_with(client, 1007)
    assert_service_serves(service, kernel, open_client)


@pytest.mark.parametrize("value", [*BAD_VALUES, "not JSON", "an array"])
@pytest.mark.parametrize("part", ["header", "content"])
def test_bad_json_parts_close_the_v1_websocket_with_1007(service, kernel, open_client, value, part):
    """v1 parts go to the kernel as they are, so each must be a plain JSON object."""
    bad = {"not JSON": "{not json", "an array": "[1]"}.get(value) or BAD_VALUES[value]
    parts = {"header": HEADER, "content": b"{}"}
    parts[part] = bad.encode()
    client = open_client(kernel, "v1")
    client.ws.send_binary(v1_frame(b"shell", parts["header"], b"{}", b"{}", parts["content"]))
    assert_closed_with(client, 1007)
    assert_service_serves(service, kernel, open_client)


def assert_service_serves(service, kernel, open_client):
    """Another client runs code on the kernel, and no handler or task of the service failed."""
    _, outputs = open_client(kernel, "v1").execute("print('still here')")
    assert stream_text(outputs) == "still here\n"
    log = service.output()
    assert "Uncaught exception" not in log and "Task exception was never retrieved" not in log, log[-3000:]


def test_a_client_flooding_a_hung_kernel_is_closed_with_1013_and_the_service_goes_on():
    """A kernel that stops reading (here: SIGSTOP) fills its ZeroMQ queue; the relay does
    not pile up send futures without bound but closes the flooding client, "try again
    later". Its own service: the kernel's backlog makes noise when it is stopped."""
    with running_service() as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        _, outputs = client.execute("import os; print(os.getpid())")
        pid = int(stream_text(outputs))
        os.kill(pid, signal.SIGSTOP)
        try:
            content = {"code": "x = '" + "y" * 20_000 + "'", "silent": True, "store_history": False}
            refused = f"{kernel}: the kernel is not reading its shell messages"
            for sent in range(20_000):  # far more than ZeroMQ's queue and the socket buffers hold
                if sent % 200 == 0 and refused in service.output():
                    break
                try:
                    client.send("shell", "execute_request", content)
                except (websocket.WebSocketConnectionClosedException, OSError):
                    break  # closed by the service: the log says why
            assert refused in service.output(), "the flooding client was never refused"
            # the close frame, or the connection's end if the service had to abort it
            with pytest.raises((ConnectionError, websocket.WebSocketException), match="03f5|closed|Broken|reset"):
                for _ in range(100_000):
                    client.recv(timeout=30)
        finally:
            os.kill(pid, signal.SIGCONT)
        # the kernel answers on its control channel, past the backlog its shell now works
        # through (as much as ZeroMQ and the socket buffers held: minutes on a busy machine)
        other = ChannelsClient(service, kernel)
        request = other.send("control", "kernel_info_request", {})
        seen = other.recv_until(lambda m: m["parent_header"].get("msg_id") == request and m["channel"] == "control")
        assert seen[-1]["header"]["msg_type"] == "kernel_info_reply"
        other.close()
        output = service.output()
        assert "Uncaught exception" not in output and "never retrieved" not in output, output[-3000:]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_clients_vanishing_during_a_flood_leave_no_unread_errors(service, kernel, open_client, protocol):
    """Three clients drop their TCP connection (no close frame) while the kernel floods
    them: their unflushed writes fail, and every failure is read, none logged as lost.

    The flood is 800 lines, under the 1000 messages a kernel's iopub queues for a reader
    that has not taken them (past that it drops them, `test_flow_control`'s PACED_FLOOD
    says why): with 3000, a service starved of CPU lost some of the tail, the watcher's
    `idle` among them, and the watcher waited for it for good. What can arrive is
    independent of how fast either process runs; only when it arrives is not."""
    flood = "import sys\nfor i in range(800): sys.stdout.write('x' * 200 + '\\n'); sys.stdout.flush()"
    doomed = [open_client(kernel, protocol) for _ in range(3)]
    doomed[0].send("shell", "execute_request", {"code": flood, "silent": False})
    doomed[0].recv_until(lambda m: m["header"]["msg_type"] == "stream")
    for client in doomed:
        client.ws.sock.shutdown(socket.SHUT_RDWR)
        client.ws.sock.close()
    watcher = open_client(kernel, protocol)
    reply, outputs = watcher.execute("print('after the flood')", timeout=100)
    assert reply["content"]["status"] == "ok"
    assert stream_text(outputs) == "after the flood\n"
    assert_service_serves(service, kernel, open_client)
    assert "never retrieved" not in service.output()


def test_rest_agrees_with_the_websocket_about_a_kernel_being_deleted(service, open_client):
    """Once a client is told its kernel is going, REST says so too (404, not listed), even
    while the DELETE still waits for the kernel's process to exit."""
    kernel = service.start_kernel()
    client = open_client(kernel)
    client.execute("pass")
    with ThreadPoolExecutor(1) as worker:
        delete = worker.submit(service.request, "DELETE", f"api/kernels/{kernel}")
        assert close_of(client) == (1001, "kernel shut down")
        assert service.request("GET", f"api/kernels/{kernel}")[0] == 404
        assert kernel not in {model["id"] for model in service.request("GET", "api/kernels")[2]}
        assert delete.result()[0] == 204
