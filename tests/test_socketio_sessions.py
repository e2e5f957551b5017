"""Every transition of the sans-IO Engine.IO session and Socket.IO connection, no I/O at all."""

from __future__ import annotations

import asyncio
import json

from kernels_service.socketio.connection import ConnectRefused, Handshake, SocketIOConnection
from kernels_service.socketio.eio_codec import CLOSE, MESSAGE, NOOP, OPEN, PING, PONG, UPGRADE, Packet
from kernels_service.socketio.engine import EngineConfig, EngineSession

CONFIG = EngineConfig(ping_interval=0.3, ping_timeout=0.2, max_payload=1000)


def session(version, transport="polling", now=0.0):
    return EngineSession("sid1", version, CONFIG, now, transport)


def test_open_packet_of_each_generation():
    (v4_open,) = session(4).take_outgoing()
    assert v4_open.type == OPEN and json.loads(v4_open.data) == {
        "sid": "sid1", "upgrades": ["websocket"], "pingInterval": 300, "pingTimeout": 200, "maxPayload": 1000
    }  # fmt: skip
    (v3_open,) = session(3, "websocket").take_outgoing()
    assert json.loads(v3_open.data)["upgrades"] == [] and "maxPayload" not in json.loads(v3_open.data)


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
    assert engine.probed and engine.transport == "polling"
    engine.receive(Packet(UPGRADE), 0.1, "websocket")
    assert engine.transport == "websocket"


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
    assert engine.take_messages() == ["a", b"b", "c"]


# --- Socket.IO connection -------------------------------------------------------------------


class Recorder:
    """A namespace that records what happens and refuses `/private`."""

    def __init__(self):
        self.events = []

    def resolve(self, namespace):
        return self if namespace in ("/", "/custom", "/private") else None

    async def on_connect(self, socket, auth):
        if socket.namespace == "/private":
            raise ConnectRefused("Forbidden")

    def on_connected(self, socket, auth):
        socket.emit("auth", auth)

    def on_event(self, socket, event, args, ack_id):
        self.events.append((socket.namespace, event, args, ack_id))
        if ack_id is not None:
            socket.ack(ack_id, args)

    def on_disconnect(self, socket):
        self.events.append((socket.namespace, "disconnected"))


def connection(version):
    engine = EngineSession("sid1", version, CONFIG, 0.0, "websocket")
    engine.take_outgoing()
    namespaces = Recorder()
    conn = SocketIOConnection(engine, namespaces, Handshake({}, {}))
    conn.opened()
    return conn, engine, namespaces


def feed(conn, *messages):
    for message in messages:
        asyncio.run(conn.receive(message))
    return [p.data for p in conn.engine.take_outgoing()]


def test_protocol_4_joins_main_namespace_at_once():
    conn, engine, _ = connection(3)
    assert [p.data for p in engine.take_outgoing()] == ["0", '2["auth",{}]']
    assert feed(conn, "0/custom") == ["0/custom", '2/custom,["auth",{}]']


def test_protocol_5_joins_on_request_with_auth():
    conn, engine, _ = connection(4)
    assert engine.take_outgoing() == []
    out = feed(conn, '0/custom,{"token":"abc"}')
    assert out[0].startswith('0/custom,{"sid":"') and out[1] == '2/custom,["auth",{"token":"abc"}]'


def test_refused_and_unknown_namespaces_get_connect_errors():
    conn, _, _ = connection(4)
    assert feed(conn, "0/private,", "0/random,") == [
        '4/private,{"message":"Forbidden"}', '4/random,{"message":"Invalid namespace"}'
    ]  # fmt: skip
    conn3, engine3, _ = connection(3)
    engine3.take_outgoing()
    assert feed(conn3, "0/random") == ['4/random,"Invalid namespace"']


def test_binary_event_is_assembled_and_acked_with_attachments():
    conn, _, namespaces = connection(4)
    feed(conn, "0")
    out = feed(conn, '52-789["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x01", b"\x02")
    assert namespaces.events[-1] == ("/", "message", [b"\x01", b"\x02"], 789)
    assert out == ['62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]', b"\x01", b"\x02"]


def test_packet_for_a_namespace_not_joined_closes_the_session():
    conn, engine, _ = connection(4)
    feed(conn, '2/custom,["message"]')
    assert engine.closed and "not joined" in engine.closed.reason


def test_malformed_packets_close_the_session():
    for bad in ["4abc", "42{}", '42abc["m"]', b"\x00"]:
        conn, engine, _ = connection(4)
        feed(conn, "0")
        feed(conn, bad[1:] if isinstance(bad, str) else bad)
        assert engine.closed, bad


def test_disconnect_and_close_tell_the_namespace():
    conn, _, namespaces = connection(4)
    feed(conn, "0", "0/custom,")
    feed(conn, "1/custom,")
    assert ("/custom", "disconnected") in namespaces.events and "/custom" not in conn.sockets
    conn.closed()
    assert ("/", "disconnected") in namespaces.events and not conn.sockets
