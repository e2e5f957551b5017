"""Every transition of the sans-IO Engine.IO session and Socket.IO connection, no I/O at all."""

from __future__ import annotations

import json

from kernels_service.socketio.connection import ConnectRequested, Disconnected, EventReceived, SocketIOConnection
from kernels_service.socketio.eio_codec import CLOSE, MESSAGE, NOOP, OPEN, PING, PONG, UPGRADE, Packet
from kernels_service.socketio.engine import MAX_POLL_PACKETS, EngineConfig, EngineIOSession

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
    assert engine.receive(Packet(PING, "probe"), 0.1, "websocket") == [Packet(PONG, "probe")]
    assert engine.upgrading and engine.transport == "polling"
    assert engine.poll_requested() and engine.poll_answered() == [Packet(NOOP)]  # the poll ends at once
    engine.receive(Packet(UPGRADE), 0.1, "websocket")
    assert engine.transport == "websocket" and not engine.poll_requested()


def test_noop_owed_to_a_poll_that_never_came_goes_out_after_the_upgrade():
    engine = session(3)
    engine.take_outgoing()
    engine.receive(Packet(PING, "probe"), 0.1, "websocket")
    engine.receive(Packet(UPGRADE), 0.1, "websocket")
    engine.send("hello")
    assert engine.take_outgoing() == [Packet(NOOP), Packet(MESSAGE, "hello")]


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
    assert engine.payload_allowed(1000) and not engine.closed
    assert not engine.payload_allowed(1001) and "maxPayload" in engine.closed.reason


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
    engine = EngineIOSession("sid1", version, CONFIG, 0.0, "websocket")
    engine.take_outgoing()
    conn = SocketIOConnection(engine, 0.0, connect_timeout)
    return conn, engine


def sent(engine):
    return [p.data for p in engine.take_outgoing()]


def test_protocol_4_asks_for_main_namespace_at_once():
    conn, engine = connection(3)
    assert conn.opened() == [ConnectRequested("/", {})]
    assert conn.accept("/") and sent(engine) == ["0"]
    assert conn.receive("0/custom", 0.1) == [ConnectRequested("/custom", {})]
    conn.accept("/custom")
    assert sent(engine) == ["0/custom"]
    assert conn.receive("0", 0.1) == [], "a client asking for / again is ignored"


def test_protocol_5_joins_on_request_with_auth_and_a_socket_id():
    conn, engine = connection(4)
    assert conn.opened() == []
    assert conn.receive('0/custom,{"token":"abc"}', 0.1) == [ConnectRequested("/custom", {"token": "abc"})]
    sid = conn.accept("/custom")
    assert sent(engine) == [f'0/custom,{{"sid":"{sid}"}}'] and conn.joined == {"/custom": sid}


def test_refused_and_unknown_namespaces_get_connect_errors_in_both_generations():
    for version, expected in [(4, '4/private,{"message":"Forbidden"}'), (3, '4/private,{"message":"Forbidden"}')]:
        conn, engine = connection(version)
        conn.receive("0/private,", 0.1)
        conn.refuse("/private", "Forbidden")
        assert sent(engine) == [expected] and not conn.joined and not conn.connecting


def test_protocol_4_text_is_ascii_only():
    conn, engine = connection(3)
    conn.opened()
    conn.accept("/")
    engine.take_outgoing()
    conn.emit("/", "m", "é😀")
    assert sent(engine) == ['2["m","\\u00e9\\ud83d\\ude00"]']


def test_binary_event_is_assembled_and_acked_with_attachments():
    conn, engine = connection(4)
    conn.receive("0", 0.0)
    conn.accept("/")
    engine.take_outgoing()
    assert conn.receive('52-789["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', 0.1) == []
    assert conn.receive(b"\x01", 0.1) == []
    assert conn.receive(b"\x02", 0.1) == [EventReceived("/", "message", [b"\x01", b"\x02"], 789)]
    conn.ack("/", 789, [b"\x01", b"\x02"])
    assert sent(engine) == ['62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x01", b"\x02"]


def test_packet_for_a_namespace_not_joined_closes_the_session():
    conn, engine = connection(4)
    conn.receive('2/custom,["message"]', 0.1)
    assert engine.closed and "not joined" in engine.closed.reason


def test_malformed_packets_close_the_session_and_leave_every_namespace():
    for bad in ["4abc", "42{}", '42abc["m"]', b"\x00", "42[NaN]", '42["\\ud800"]', "42" + "[" * 100000]:
        conn, engine = connection(4)
        conn.receive("0", 0.0)
        conn.accept("/")
        events = conn.receive(bad[1:] if isinstance(bad, str) else bad, 0.1)
        assert engine.closed and events == [Disconnected("/")], bad


def test_disconnects_and_the_connect_timeout():
    conn, engine = connection(4, connect_timeout=1.0)
    assert conn.deadline() == 1.0
    conn.receive("0", 0.1)
    conn.accept("/")
    assert conn.deadline() is None
    assert conn.receive("1", 0.5) == [Disconnected("/")] and conn.deadline() == 1.5
    conn.tick(1.49)
    assert not engine.closed
    conn.tick(1.5)
    assert engine.closed.reason == "no namespace joined in time"


def test_server_side_disconnect_and_session_end():
    conn, engine = connection(4)
    for namespace in ("/", "/custom"):
        conn.receive(f"0{namespace},", 0.0)
        conn.accept(namespace)
    engine.take_outgoing()
    assert conn.disconnect("/custom", 0.1) and sent(engine) == ["1/custom,"]
    assert not conn.disconnect("/custom", 0.1)
    assert conn.session_closed(0.2) == [Disconnected("/")] and not conn.joined
