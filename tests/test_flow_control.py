"""Slow and many clients during floods of output: nothing lost, idle always seen."""

from __future__ import annotations

import json
import time

import pytest
import websocket

from kernels_service.testing.channels import ChannelsClient, close_of, stream_text
from kernels_service.testing.service import running_service
from tests.support.waiting import wait_until

# 6000 flushed writes of 10 kB: 60 MB in thousands of messages, more than socket buffers hold
FLOOD = "import sys\nfor i in range(6000):\n    sys.stdout.write(str(i % 10) * 9999 + '\\n'); sys.stdout.flush()"
FLOOD_TEXT = "".join(str(i % 10) * 9999 + "\n" for i in range(6000))
# The same output at about 10 MB/s: a client that reads nothing piles up all 60 MB, one that
# reads keeps up even on a busy two-core machine, so only the first meets a 16 MiB limit.
# Every test that checks the whole text uses it: a kernel's iopub drops what its reader has
# not taken past 1000 waiting messages (benchmarks/iopub_stall.py), so a flood at full speed
# would test the CPU share the service gets on a busy machine rather than the service.
PACED_FLOOD = FLOOD.replace("sys.stdout.flush()", "sys.stdout.flush()\n    if i % 100 == 99: time.sleep(0.1)")
PACED_FLOOD = PACED_FLOOD.replace("import sys", "import sys, time")
# A third of it (20 MB) where no limit is to be met, only every byte to every client.
SHORT_PACED_FLOOD = PACED_FLOOD.replace("range(6000)", "range(2000)")
SHORT_FLOOD_TEXT = FLOOD_TEXT[: len(FLOOD_TEXT) // 3]
SMALL_LIMIT = "--KernelsService.client_queue_limit=16777216"


def is_idle_of(msg_id):
    return lambda m: (
        m["header"]["msg_type"] == "status"
        and m["content"]["execution_state"] == "idle"
        and m["parent_header"].get("msg_id") == msg_id
    )


def test_three_watchers_of_a_flood_all_see_all_output_and_idle(service, kernel, open_client):
    runner = open_client(kernel, "v1")
    watchers = [open_client(kernel, "legacy"), open_client(kernel, "v1")]
    for client in (runner, *watchers):
        client.execute("pass")
    reply, outputs = runner.execute(SHORT_PACED_FLOOD, timeout=120)
    assert stream_text(outputs) == SHORT_FLOOD_TEXT
    for watcher in watchers:
        seen = watcher.recv_until(is_idle_of(reply["parent_header"]["msg_id"]), timeout=120)
        assert (
            stream_text([m for m in seen if m["parent_header"].get("msg_id") == reply["parent_header"]["msg_id"]])
            == SHORT_FLOOD_TEXT
        )


def test_a_slow_reader_gets_everything_merged(service, kernel, open_client):
    fast, slow = open_client(kernel, "v1"), open_client(kernel, "v1")
    slow.execute("pass")
    reply, _ = fast.execute(PACED_FLOOD, timeout=120)
    msg_id = reply["parent_header"]["msg_id"]
    slow_seen = [
        m for m in slow.recv_until(is_idle_of(msg_id), timeout=120) if m["parent_header"].get("msg_id") == msg_id
    ]
    assert stream_text(slow_seen) == FLOOD_TEXT
    # the socket's buffers take several MB before the server sees the client fall behind
    assert_merged_after_high_water(
        [m["content"]["text"] for m in slow_seen if m["header"]["msg_type"] == "stream"], 24_000_000
    )


def test_a_client_too_slow_past_the_limit_is_closed_and_others_keep_going():
    with running_service(SMALL_LIMIT) as service:
        (kernel,) = service.request("GET", "api/kernels")[2]
        fast = ChannelsClient(service, kernel["id"], "v1")
        slow = ChannelsClient(service, kernel["id"], "v1")
        slow.execute("pass")
        fast.execute("pass")
        _, outputs = fast.execute(PACED_FLOOD, timeout=120)
        assert stream_text(outputs) == FLOOD_TEXT
        try:
            code, reason = close_of(slow, 60)
            assert code == 1008 and "too slow" in reason
        except (websocket.WebSocketConnectionClosedException, ConnectionResetError):
            pass  # the close handshake timed out (the client reads nothing) and the server dropped it
        assert "client too slow" in service.output()
        wait_until(
            lambda: service.request("GET", f"api/kernels/{kernel['id']}")[2]["connections"] == 1,
            15,
            "the slow client let go",
        )
        _, outputs = ChannelsClient(service, kernel["id"]).execute("print('ok')")
        assert stream_text(outputs) == "ok\n"


def test_a_socketio_client_that_stops_polling_is_closed_past_the_limit():
    with running_service(SMALL_LIMIT) as service:
        (kernel,) = service.request("GET", "api/kernels")[2]
        status, _, body = service.request("GET", "/socket.io/?EIO=4&transport=polling", raw_path=True)
        sid = json.loads(body[1:])["sid"]
        url = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
        connect = f'40/iopub/{kernel["id"]},{{"token":"{service.token}"}}'
        assert service.request("POST", url, connect, raw_path=True)[0] == 200
        wait_until(lambda: b"40/iopub" in service.request("GET", url, raw_path=True)[2], 10, "the namespace joined")
        fast = ChannelsClient(service, kernel["id"], "v1")
        _, outputs = fast.execute(PACED_FLOOD, timeout=120)
        assert stream_text(outputs) == FLOOD_TEXT
        assert service.request("GET", url, raw_path=True)[0] == 400, "the slow session should be gone"
        assert "client too slow" in service.output()
        assert service.request("GET", f"api/kernels/{kernel['id']}")[2]["connections"] == 1


def test_a_slow_socketio_poller_gets_everything_merged(service, kernel):
    """A polling client that does not poll during a flood gets all output, in fewer messages."""
    status, _, body = service.request("GET", "/socket.io/?EIO=4&transport=polling", raw_path=True)
    url = f"/socket.io/?EIO=4&transport=polling&sid={json.loads(body[1:])['sid']}"
    namespace = f"/iopub/{kernel}"
    assert service.request("POST", url, f'40{namespace},{{"token":"{service.token}"}}', raw_path=True)[0] == 200
    assert f"40{namespace}" in service.request("GET", url, raw_path=True)[2].decode()
    fast = ChannelsClient(service, kernel, "v1")
    try:
        reply, _ = fast.execute(PACED_FLOOD, timeout=120)
    finally:
        fast.close()
    msg_id = reply["parent_header"]["msg_id"]
    seen, deadline = [], time.monotonic() + 60
    while not any(m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle" for m in seen):
        assert time.monotonic() < deadline, "the poller never got the idle status"
        payload = service.request("GET", url, raw_path=True)[2].decode()
        for packet in payload.split("\x1e"):
            if packet.startswith(f"42{namespace},"):
                msg = json.loads(packet[len(namespace) + 3 :])[1]
                if msg["parent_header"].get("msg_id") == msg_id:
                    seen.append(msg)
    assert stream_text(seen) == FLOOD_TEXT
    assert_merged_after_high_water([m["content"]["text"] for m in seen if m["header"]["msg_type"] == "stream"])


def assert_merged_after_high_water(texts: list[str], behind_after: int = 8_000_000) -> None:
    """Once the client is behind, stream output waits merged in runs of up to 1 MiB.

    The kernel itself batches its output more on a busy machine (up to 1 MB per message),
    so counting messages proves nothing. Instead: past the first `behind_after` bytes
    (more than what is written before the outbox holds back: 4 MiB, plus what the
    socket's buffers take), two consecutive stream messages never add up to less than a
    run could have held. Without merging, the flood's 10 kB writes would.
    """
    sent = 0
    for text, following in zip(texts, texts[1:-1], strict=False):  # the last message may be short
        sent += len(text)
        if sent > behind_after:
            assert len(text) + len(following) > 1_040_000, "stream output was not merged while the client was slow"


@pytest.fixture(scope="module")
def pinging_service():
    """A service that pings its websocket clients every two seconds."""
    with running_service("--KernelsService.websocket_ping_interval=2") as service:
        yield service


def test_a_stalled_reader_outlives_unanswered_pings_and_gets_everything(pinging_service):
    """A client that stops reading (a sleeping laptop, a slow link) sees our pings only
    behind the output queued before them; it must not be judged dead for that while
    output is still on its way to it (tornado's own ping timeout dropped it, silently)."""
    (kernel,) = pinging_service.request("GET", "api/kernels")[2]
    runner = ChannelsClient(pinging_service, kernel["id"], "v1")
    # Loopback would let the client's own receive buffer take tens of MB, out of the
    # service's sight; over a network, what the client has not read waits at the service.
    stalled = ChannelsClient(pinging_service, kernel["id"], receive_buffer=65536)
    try:
        stalled.execute("pass")
        # 20 MB: far more than the socket buffers hold, so output stays on its way to the client
        reply, _ = runner.execute(PACED_FLOOD.replace("6000", "2000"), timeout=120)
        time.sleep(8)  # the stall itself: four pings go unanswered
        seen = stalled.recv_until(is_idle_of(reply["parent_header"]["msg_id"]), timeout=120)
        flood = [m for m in seen if m["parent_header"].get("msg_id") == reply["parent_header"]["msg_id"]]
        assert stream_text(flood) == FLOOD_TEXT[: 2000 * 10_000]
        _, outputs = stalled.execute("print('still here')")
        assert stream_text(outputs) == "still here\n"
    finally:
        runner.close()
        stalled.close()


def test_a_client_that_answers_no_pings_is_closed_and_one_that_reads_is_kept(pinging_service):
    (kernel,) = pinging_service.request("GET", "api/kernels")[2]
    reader = ChannelsClient(pinging_service, kernel["id"])
    silent = ChannelsClient(pinging_service, kernel["id"])  # never reads, so never answers a ping
    try:
        reader.execute("pass")
        assert pinging_service.request("GET", f"api/kernels/{kernel['id']}")[2]["connections"] == 2
        _, outputs = reader.execute("import time; time.sleep(5); print('done')", timeout=60)
        assert stream_text(outputs) == "done\n"
        deadline = time.monotonic() + 30
        while pinging_service.request("GET", f"api/kernels/{kernel['id']}")[2]["connections"] != 1:
            assert time.monotonic() < deadline, "the silent client was never closed"
            reader.execute("pass")  # the reader keeps reading, so it answers pings
        assert "ping not answered" in pinging_service.output()
        _, outputs = reader.execute("print('kept')")
        assert stream_text(outputs) == "kept\n"
    finally:
        reader.close()
        silent.close()
