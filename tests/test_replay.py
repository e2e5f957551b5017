"""Replay on reconnect: a client that leaves and comes back within the window gets what it
missed first, once, in order; past the limit or the window it is told, never a silent gap."""

from __future__ import annotations

import time

import pytest
import websocket

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import Service, running_service
from tests.support.metrics import scrape, value
from tests.support.node import run_node
from tests.support.waiting import wait_until

PRINTS = "import time\nfor i in range(2000):\n    print(i)\n    time.sleep(0.001)"
TEXT = "".join(f"{i}\n" for i in range(2000))


def of(msg_id: str, messages: list[dict]) -> list[dict]:
    return [m for m in messages if m["parent_header"].get("msg_id") == msg_id]


def leave(client: ChannelsClient, timeout: float = 30) -> list[dict]:
    """Close the websocket the polite way: send a close frame and read on until the
    service's, keeping what arrives meanwhile (it was on its way before the service knew)."""
    client.ws.send_close()
    kept, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kept.append(client.recv(deadline - time.monotonic()))
        except ConnectionError:
            return kept
    raise AssertionError("the service never closed")


def iopub_relayed(service: Service) -> float:
    return value(scrape(service), "kernels_service_messages_total", direction="from_kernel", channel="iopub")


def wait_for_output_while_away(service: Service, before: float, messages: int) -> None:
    """The kernel's iopub has produced `messages` more messages (read from the metrics):
    the client away has missed them, however slow the machine."""
    wait_until(lambda: iopub_relayed(service) >= before + messages, 60, "the kernel printing while the client was away")


def until_done(client: ChannelsClient, msg_id: str, timeout: float = 60) -> list[dict]:
    """Messages up to the request's idle status and its execute_reply, both."""

    def idle(m: dict) -> bool:
        return m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle"

    seen, deadline = [], time.monotonic() + timeout
    while not (any(m["channel"] == "shell" for m in of(msg_id, seen)) and any(idle(m) for m in of(msg_id, seen))):
        seen.append(client.recv(max(0.1, deadline - time.monotonic())))
    return seen


@pytest.mark.parametrize("protocol", ["legacy", "v1"])
def test_a_websocket_that_comes_back_gets_what_it_missed_once_in_order(service, kernel, protocol):
    first = ChannelsClient(service, kernel, protocol)
    first.execute("pass")
    msg_id = first.send("shell", "execute_request", {"code": PRINTS})
    seen = first.recv_until(lambda m: m["header"]["msg_type"] == "stream")
    before = iopub_relayed(service)
    on_its_way = leave(first)  # relayed after `before`, but before the service knew the client left
    seen += on_its_way
    wait_for_output_while_away(service, before + len(on_its_way), 2)  # away while the kernel prints
    back = ChannelsClient(service, kernel, protocol, session=first.session)
    try:
        after = until_done(back, msg_id)
        assert stream_text(of(msg_id, after)), "nothing was missed: the test did not test"
        seen += after
        assert stream_text(of(msg_id, seen)) == TEXT
        assert [m["header"]["msg_type"] for m in of(msg_id, seen) if m["channel"] == "shell"] == ["execute_reply"]
        with pytest.raises((TimeoutError, websocket.WebSocketTimeoutException)):  # and nothing twice
            back.recv_until(lambda m: m["parent_header"].get("msg_id") == msg_id, timeout=1)
    finally:
        back.close()


def test_another_session_id_gets_no_replay(service, kernel):
    first = ChannelsClient(service, kernel)
    first.execute("pass")
    msg_id = first.send("shell", "execute_request", {"code": "print('for the first only')"})
    first.ws.close()
    other = ChannelsClient(service, kernel)
    try:
        _, outputs = other.execute("print('mine')")
        assert stream_text(outputs) == "mine\n"
        with pytest.raises((TimeoutError, websocket.WebSocketTimeoutException)):
            other.recv_until(lambda m: m["parent_header"].get("msg_id") == msg_id, timeout=1)
    finally:
        other.close()


@pytest.mark.parametrize("generation", ["2", "4"])
def test_a_socketio_client_that_comes_back_gets_what_it_missed(service, kernel, generation):
    """socket.io clients of a kernel share one session: the next one to connect gets what
    the last one missed (Engine.IO 3 with socket.io-client 2, Engine.IO 4 with 4)."""
    outcome = run_node("replay_flow.js", generation, service.http_url(), service.token, kernel)
    assert outcome["text"] == TEXT
    assert outcome["replies"] == 1
    assert 0 < outcome["before"] < len(TEXT)


def test_past_the_limit_the_client_is_told_how_much_it_missed():
    with running_service("--replay-limit=2000") as service:
        (kernel,) = service.request("GET", "api/kernels")[2]
        first = ChannelsClient(service, kernel["id"])
        first.execute("pass")
        msg_id = first.send("shell", "execute_request", {"code": "import time; time.sleep(1)\n" + PRINTS})
        first.recv_until(lambda m: m["header"]["msg_type"] == "execute_input")
        before = iopub_relayed(service)
        leave(first)
        wait_for_output_while_away(service, before, 10)  # 10 messages: more than 2000 bytes
        back = ChannelsClient(service, kernel["id"], session=first.session)
        after = of(msg_id, until_done(back, msg_id))
        notices = [i for i, m in enumerate(after) if m["content"].get("name") == "stderr"]
        assert len(notices) == 1, [m["content"] for m in after if m["header"]["msg_type"] == "stream"]
        notice = after[notices[0]]["content"]["text"]
        assert "were dropped while this client was away" in notice and "more than the 2000 bytes kept" in notice
        # what was kept comes first, from the start; then the notice at the gap; then live output to the end
        kept, live = stream_text(after[: notices[0]]), stream_text(after[notices[0] + 1 :])
        assert kept and TEXT.startswith(kept) and len(kept) <= 2000
        assert live and TEXT.endswith(live) and len(kept) + len(live) < len(TEXT)
        back.close()


def test_past_the_window_the_client_is_told_its_output_was_dropped():
    with running_service("--replay-window=1") as service:
        (kernel,) = service.request("GET", "api/kernels")[2]
        first = ChannelsClient(service, kernel["id"])
        first.execute("pass")
        first.send("shell", "execute_request", {"code": "import time; time.sleep(0.5); print('missed')"})
        first.recv_until(lambda m: m["header"]["msg_type"] == "execute_input")
        before = iopub_relayed(service)
        leave(first)
        wait_for_output_while_away(service, before, 2)  # the output and the idle status
        wait_until(lambda: "did not come back within 1 s" in service.output(), 30, "the end of the replay window")
        back = ChannelsClient(service, kernel["id"], session=first.session)
        notice = back.recv_until(lambda m: m["header"]["msg_type"] == "stream", timeout=10)[-1]
        assert notice["content"]["name"] == "stderr"
        assert "did not come back within 1 s" in notice["content"]["text"]
        _, outputs = back.execute("print('live')")
        assert stream_text(outputs) == "live\n"
        back.close()
