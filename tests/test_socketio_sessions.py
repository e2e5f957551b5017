"""Every transition of the sans-IO Engine.IO session and Socket.IO connection, no I/O at all."""

from __future__ import annotations

import itertools
import json

import pytest

from kernels_service.socketio.connection import (
    ConnectRequested,
    Disconnected,
    EventReceived,
    SessionEnds,
    SocketIOConnection,
)
from kernels_service.socketio.eio_codec import CLOSE, MESSAGE, NOOP, OPEN, PING, PONG, UPGRADE, Packet
from kernels_service.socketio.engine import (
    MAX_POLL_PACKETS,
    OVER_PROBE,
    TRANSITIONS,
    Closed,
    EngineConfig,
    EngineIOSession,
    EngineState,
    ProbeAnswered,
    Upgraded,
)
from kernels_service.socketio.errors import LocalProtocolError

CONFIG = EngineConfig(ping_interval=0.3, ping_timeout=0.2, max_payload=1000)


def session(version, transport="polling", now=0.0):
    return EngineIOSession("sid1", version, CONFIG, now, transport)


def test_open_packet_of_each_generation():
    (v4_open,) = session(4).take_outgoing()
    assert v4_open.type == OPEN and json.loads(v4_open.data) == {
        "sid": "sid1", "upgrades": ["websocket"], "pingInterval": 300, "pingTimeout": 200, "maxPayload": 1000
    }  # fmt: skip
    (v3_open,) = session(3, "websocket").take_outgoing()
    assert json.loads(v3_open.data)["upgrades"] == [] and json.loads(v3_open.data)["maxPayload"] == 1000


def test_v3_client_pings_and_server_answers_then_times_out_when_silent():
    engine = session(3)
    engine.take_outgoing()
    engine.receive(Packet(PING), now=0.2, over="polling")
    assert engine.take_outgoing() == [Packet(PONG)]
    assert engine.deadline() == 0.2 + 0.3 + 0.2
    engine.tick(0.69)
    assert not engine.closed
    engine.tick(0.7)
    assert engine.closed.reason == "ping timeout" and engine.take_outgoing() == [Packet(CLOSE)]


def test_v4_server_pings_and_closes_without_pong():
    engine = session(4)
    engine.take_outgoing()
    assert engine.deadline() == 0.3
    engine.tick(0.3)
    assert engine.take_outgoing() == [Packet(PING)] and engine.deadline() == 0.5
    engine.receive(Packet(PONG), now=0.4, over="polling")
    engine.tick(0.5)
    assert not engine.closed and engine.deadline() == 0.6
    engine.tick(0.6)
    assert engine.take_outgoing() == [Packet(PING)]
    engine.tick(0.8)
    assert engine.closed.reason == "ping timeout"


def test_v4_client_ping_is_not_answered():
    engine = session(4)
    engine.take_outgoing()
    engine.receive(Packet(PING), now=0.1, over="polling")
    assert engine.take_outgoing() == []


def test_probe_then_upgrade_moves_the_session_to_websocket():
    engine = session(4)
    engine.take_outgoing()
    assert engine.state is EngineState.POLLING and engine.probe_opened() and engine.state is EngineState.PROBING
    assert engine.receive(Packet(PING, "probe"), 0.1, OVER_PROBE) == [ProbeAnswered([Packet(PONG, "probe")])]
    assert engine.state is EngineState.UPGRADING and engine.on_polling
    assert engine.poll_requested() and engine.poll_answered() == [Packet(NOOP)]  # the poll ends at once
    assert engine.receive(Packet(UPGRADE), 0.1, OVER_PROBE) == [Upgraded()]
    assert engine.state is EngineState.WEBSOCKET and not engine.poll_requested()


def test_every_poll_during_an_upgrade_is_answered_at_once():
    """The NOOP queued with the probe's answer may end a poll the client sent before it
    saw that answer (the two travel on different connections); the poll it sends next,
    which it then waits for before upgrading, must not wait for packets (CI saw three
    socket.io 2.x sessions hang 45 s so, until their ping timeout)."""
    engine = session(3)
    engine.take_outgoing()
    assert not engine.poll_answered_at_once()  # on polling, a poll waits for packets
    engine.probe_opened()
    engine.receive(Packet(PING, "probe"), 0.1, OVER_PROBE)
    assert engine.poll_requested() and engine.poll_answered() == [Packet(NOOP)]  # the probe's NOOP
    assert engine.poll_answered_at_once() and engine.poll_requested()
    assert engine.poll_answered() == [Packet(NOOP)]  # the next poll too, though nothing was queued
    engine.receive(Packet(UPGRADE), 0.2, OVER_PROBE)
    assert engine.state is EngineState.WEBSOCKET


def test_a_second_websocket_is_refused_while_a_probe_is_open_and_after_the_upgrade():
    engine = session(4)
    assert engine.probe_opened() and not engine.probe_opened()
    engine.transport_closed(OVER_PROBE)  # the probe went away before pinging: polling goes on
    assert engine.state is EngineState.POLLING and not engine.closed and engine.probe_opened()
    engine.receive(Packet(PING, "probe"), 0.1, OVER_PROBE)
    engine.receive(Packet(UPGRADE), 0.1, OVER_PROBE)
    assert not engine.probe_opened() and not session(4, "websocket").probe_opened()


def test_a_probe_ping_over_polling_or_the_sessions_own_websocket_is_a_plain_ping():
    polling = session(3)
    polling.take_outgoing()
    assert polling.receive(Packet(PING, "probe"), 0.1, "polling") == [] and polling.state is EngineState.POLLING
    assert polling.take_outgoing() == [Packet(PONG, "probe")]  # protocol 3 answers pings
    own = session(4, "websocket")
    assert own.receive(Packet(PING, "probe"), 0.1, "websocket") == [] and own.state is EngineState.WEBSOCKET


def test_every_transition_of_the_table_and_a_close_from_every_state():
    """The table is the only way the transport's state moves; a close ends every state."""
    assert set(TRANSITIONS.values()) | {state for state, _ in TRANSITIONS} == set(EngineState) - {EngineState.CLOSED}
    for state in EngineState:
        if state is EngineState.CLOSED:
            continue
        engine = session(4)
        engine.state = state
        assert engine.close("bye") == [Closed("bye")] and engine.state is EngineState.CLOSED
        assert engine.close("again") == [] and not engine.probe_opened()


def test_noop_owed_to_a_poll_that_never_came_goes_out_after_the_upgrade():
    engine = session(3)
    engine.take_outgoing()
    engine.probe_opened()
    engine.receive(Packet(PING, "probe"), 0.1, OVER_PROBE)
    engine.receive(Packet(UPGRADE), 0.1, OVER_PROBE)
    engine.send("hello")
    assert engine.take_outgoing() == [Packet(NOOP), Packet(MESSAGE, "hello")]


def test_a_client_too_slow_to_take_its_output_is_closed_with_that_reason():
    engine = EngineIOSession("s", 4, EngineConfig(max_outgoing_bytes=10), 0.0, "websocket")
    engine.take_outgoing()
    engine.send("x" * 10)
    assert not engine.closed
    engine.send("y")
    assert engine.closed.reason.startswith("client too slow") and engine.take_outgoing() == [Packet(CLOSE)]


def test_overlapping_polls_close_the_session_and_the_first_gets_close():
    engine = session(4)
    engine.take_outgoing()
    assert engine.poll_requested()
    assert not engine.poll_requested()
    assert engine.closed.reason == "overlapping polls" and engine.poll_answered() == [Packet(CLOSE)]


def test_a_poll_takes_at_most_sixteen_packets_and_the_next_the_rest():
    """python-engineio's client drops the connection on a payload of more than 16 packets."""
    assert MAX_POLL_PACKETS == 16
    engine = session(4)
    engine.take_outgoing()
    for n in range(40):
        engine.send(f"m{n:02}")
    answers = []
    while engine.has_outgoing():
        assert engine.poll_requested()
        answers.append([packet.data for packet in engine.poll_answered()])
        assert engine.outgoing_bytes() == 3 * (40 - sum(map(len, answers)))
    assert [len(answer) for answer in answers] == [16, 16, 8]
    assert sum(answers, []) == [f"m{n:02}" for n in range(40)]
    assert engine.poll_requested() and engine.poll_answered() == [Packet(NOOP)]


def test_a_closed_session_answers_its_last_poll_with_everything():
    engine = session(4)
    engine.take_outgoing()
    for n in range(20):
        engine.send(f"m{n}")
    engine.close("bye")
    assert engine.poll_answered() == [*(Packet(MESSAGE, f"m{n}") for n in range(20)), Packet(CLOSE)]


def test_abandoned_poll_ends_the_session():
    engine = session(4)
    engine.take_outgoing()
    engine.poll_requested()
    engine.poll_abandoned()
    assert engine.closed.reason == "poll request cancelled" and not engine.poll_requested()


def test_payload_limit_closes_the_session():
    engine = session(4)
    assert engine.payload_allowed(1000) == [] and not engine.closed
    assert engine.payload_allowed(1001) == [engine.closed] and "maxPayload" in engine.closed.reason


def test_inbox_is_bounded_by_count_and_bytes():
    config = EngineConfig(max_pending_messages=3, max_pending_bytes=10)
    engine = EngineIOSession("s", 4, config, 0.0, "websocket")
    for data in ["a", "b", "c"]:
        engine.receive(Packet(MESSAGE, data), 0.1, "websocket")
    assert not engine.closed and engine.next_message() == "a"
    engine.receive(Packet(MESSAGE, "d"), 0.1, "websocket")
    engine.receive(Packet(MESSAGE, "e"), 0.1, "websocket")
    assert engine.closed.reason == "too many messages waiting" and engine.next_message() is None
    big = EngineIOSession("s", 4, config, 0.0, "websocket")
    big.receive(Packet(MESSAGE, "x" * 11), 0.1, "websocket")
    assert big.closed.reason == "too many messages waiting"


def test_upgrade_without_probe_or_over_polling_is_a_protocol_error():
    engine = session(4)
    engine.receive(Packet(UPGRADE), 0.1, "polling")
    assert engine.closed and "unexpected" in engine.closed.reason


def test_client_close_answers_noop_and_ends():
    engine = session(3)
    engine.take_outgoing()
    engine.receive(Packet(CLOSE), 0.1, "polling")
    assert engine.closed and engine.take_outgoing() == [Packet(NOOP)]
    engine.send("late")
    assert engine.take_outgoing() == []


def test_messages_are_collected_in_order():
    engine = session(4, "websocket")
    for data in ["a", b"b", "c"]:
        engine.receive(Packet(MESSAGE, data), 0.1, "websocket")
    assert [engine.next_message() for _ in range(4)] == ["a", b"b", "c", None]


# --- Socket.IO connection -------------------------------------------------------------------


def connection(version, connect_timeout=1.0):
    """A connection whose socket ids are s1, s2, ... (the injected source)."""
    ids = (f"s{n}" for n in itertools.count(1))
    return SocketIOConnection(version, 0.0, connect_timeout, new_id=lambda: next(ids))


def test_protocol_4_asks_for_main_namespace_at_once():
    conn = connection(3)
    assert conn.opened() == [ConnectRequested("/", {})]
    assert conn.accept("/") == ("s1", ["0"])
    assert conn.receive("0/custom", 0.1) == [ConnectRequested("/custom", {})]
    assert conn.accept("/custom") == ("s2", ["0/custom"])
    assert conn.receive("0", 0.1) == [], "a client asking for / again is ignored"


def test_protocol_5_joins_on_request_with_auth_and_a_socket_id():
    conn = connection(4)
    assert conn.opened() == []
    assert conn.receive('0/custom,{"token":"abc"}', 0.1) == [ConnectRequested("/custom", {"token": "abc"})]
    assert conn.accept("/custom") == ("s1", ['0/custom,{"sid":"s1"}']) and conn.joined == {"/custom": "s1"}


def test_refused_and_unknown_namespaces_get_connect_errors_in_both_generations():
    for version in (4, 3):
        conn = connection(version)
        conn.receive("0/private,", 0.1)
        assert conn.refuse("/private", "Forbidden") == ['4/private,{"message":"Forbidden"}']
        assert not conn.joined and not conn.connecting


def test_answering_a_connect_nobody_asked_for_is_our_own_error():
    """h11's LocalProtocolError: a bug of the service, not the client's doing."""
    conn = connection(4)
    with pytest.raises(LocalProtocolError):
        conn.accept("/")
    with pytest.raises(LocalProtocolError):
        conn.refuse("/", "no")
    conn.receive("0", 0.1)
    conn.accept("/")
    with pytest.raises(LocalProtocolError):
        conn.accept("/")  # answered already
    with pytest.raises(LocalProtocolError):
        conn.disconnect("/other", 0.2)


def test_a_connect_answered_after_the_session_ended_sends_nothing():
    conn = connection(4)
    conn.receive("0/custom,", 0.1)
    assert conn.session_closed(0.2) == []
    assert conn.accept("/custom") == (None, []) and conn.refuse("/custom", "late") == []
    assert conn.emit("/custom", "m") == [] and conn.receive('2/custom,["m"]', 0.3) == []


def test_protocol_4_text_is_ascii_only():
    conn = connection(3)
    conn.opened()
    conn.accept("/")
    assert conn.emit("/", "m", "é😀") == ['2["m","\\u00e9\\ud83d\\ude00"]']


def test_binary_event_is_assembled_and_acked_with_attachments():
    conn = connection(4)
    conn.receive("0", 0.0)
    conn.accept("/")
    assert conn.receive('52-789["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', 0.1) == []
    assert conn.receive(b"\x01", 0.1) == []
    assert conn.receive(b"\x02", 0.1) == [EventReceived("/", "message", [b"\x01", b"\x02"], 789)]
    assert conn.ack("/", 789, [b"\x01", b"\x02"]) == [
        '62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x01", b"\x02"
    ]  # fmt: skip


def test_packet_for_a_namespace_not_joined_ends_the_session():
    conn = connection(4)
    (ends,) = conn.receive('2/custom,["message"]', 0.1)
    assert isinstance(ends, SessionEnds) and "not joined" in ends.reason and conn.ended


def test_malformed_packets_end_the_session_and_leave_every_namespace():
    for bad in ["4abc", "42{}", '42abc["m"]', b"\x00", "42[NaN]", '42["\\ud800"]', "42" + "[" * 100000]:
        conn = connection(4)
        conn.receive("0", 0.0)
        conn.accept("/")
        events = conn.receive(bad[1:] if isinstance(bad, str) else bad, 0.1)
        assert isinstance(events[0], SessionEnds) and events[1:] == [Disconnected("/")], bad


def test_disconnects_and_the_connect_timeout():
    conn = connection(4, connect_timeout=1.0)
    assert conn.deadline() == 1.0
    conn.receive("0", 0.1)
    conn.accept("/")
    assert conn.deadline() is None
    assert conn.receive("1", 0.5) == [Disconnected("/")] and conn.deadline() == 1.5
    assert conn.tick(1.49) == []
    assert conn.tick(1.5) == [SessionEnds("no namespace joined in time")]


def test_server_side_disconnect_and_session_end():
    conn = connection(4)
    for namespace in ("/", "/custom"):
        conn.receive(f"0{namespace},", 0.0)
        conn.accept(namespace)
    assert conn.disconnect("/custom", 0.1) == ["1/custom,"]
    assert conn.session_closed(0.2) == [Disconnected("/")] and not conn.joined and conn.deadline() is None
