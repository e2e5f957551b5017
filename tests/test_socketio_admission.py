"""Which Engine.IO requests are taken, and as what: every rule of `admission`, no I/O.

These rules were the tornado handler's; the integration tests (test_conformance.py,
test_socketio_attacks.py) check that the handler does what they decide."""

from __future__ import annotations

import pytest

from kernels_service.socketio import admission
from kernels_service.socketio.admission import (
    BAD_METHOD,
    BAD_REQUEST,
    BAD_VERSION,
    FORBIDDEN,
    UNKNOWN_SID,
    UNKNOWN_TRANSPORT,
    EngineRequest,
    OpenSession,
    Poll,
    Post,
    Probe,
    Refuse,
    RefuseWebsocket,
)
from kernels_service.socketio.eio_codec import CLOSE, Packet
from kernels_service.socketio.engine import EngineConfig, EngineIOSession

POLLING_V4 = EngineIOSession("p4", 4, EngineConfig(), 0.0, "polling")
WEBSOCKET_V3 = EngineIOSession("w3", 3, EngineConfig(), 0.0, "websocket")
HAS_ONE = "session already has a websocket"
SESSIONS = {engine.sid: engine for engine in (POLLING_V4, WEBSOCKET_V3)}


def admit(method="GET", eio="4", transport="polling", sid=None, upgrade=False, origin=True, open_sessions=0):
    request = EngineRequest(method, eio, transport, sid, upgrade, origin)
    return admission.admit(request, SESSIONS.get, open_sessions, max_sessions=10)


@pytest.mark.parametrize(
    "request_, expected",
    [
        ({"eio": "5"}, Refuse(BAD_VERSION)),
        ({"eio": ""}, Refuse(BAD_VERSION)),
        ({"transport": "flashsocket"}, Refuse(UNKNOWN_TRANSPORT)),
        ({"method": "POST", "transport": "websocket", "sid": "p4"}, Refuse(UNKNOWN_TRANSPORT)),
        ({"origin": False}, Refuse(FORBIDDEN, 403)),
        ({"sid": "nobody"}, Refuse(UNKNOWN_SID)),
        ({"sid": "p4", "eio": "3"}, Refuse(UNKNOWN_SID)),  # a session of the other generation
        ({"method": "POST"}, Refuse(BAD_METHOD)),  # no session to post to
        ({"method": "POST", "eio": "3", "sid": "w3"}, Refuse(BAD_REQUEST)),  # a websocket session
        ({"method": "PUT", "sid": "p4"}, Refuse(BAD_METHOD)),
        ({"transport": "websocket"}, Refuse(BAD_REQUEST)),  # no Upgrade header
        ({"open_sessions": 10}, Refuse(BAD_REQUEST, 503, "Too many sessions")),
        ({"transport": "websocket", "upgrade": True, "open_sessions": 10}, RefuseWebsocket(1013, "too many sessions")),
        ({"transport": "websocket", "upgrade": True, "eio": "3", "sid": "w3"}, RefuseWebsocket(1008, HAS_ONE)),
        ({}, OpenSession(4, "polling")),
        ({"eio": "3", "transport": "websocket", "upgrade": True}, OpenSession(3, "websocket")),
        ({"sid": "p4"}, Poll(POLLING_V4)),
        ({"method": "POST", "sid": "p4"}, Post(POLLING_V4)),
        ({"transport": "websocket", "upgrade": True, "sid": "p4"}, Probe(POLLING_V4)),
    ],
)  # fmt: skip
def test_each_request_is_decided_by_the_rules(request_, expected):
    assert admit(**request_) == expected


def test_the_checks_come_in_the_reference_order():
    """Version before transport before origin before session id before method."""
    assert admit(eio="9", transport="x", origin=False, sid="nobody") == Refuse(BAD_VERSION)
    assert admit(transport="x", origin=False, sid="nobody") == Refuse(UNKNOWN_TRANSPORT)
    assert admit(origin=False, sid="nobody") == Refuse(FORBIDDEN, 403)
    assert admit(method="PUT", sid="nobody") == Refuse(UNKNOWN_SID)


def test_a_websocket_for_a_session_that_is_probed_already_is_refused():
    engine = EngineIOSession("p", 4, EngineConfig(), 0.0, "polling")
    request = EngineRequest("GET", "4", "websocket", "p", upgrade=True)
    assert admission.admit(request, {"p": engine}.get, 1, 10) == Probe(engine)
    engine.probe_opened()
    assert isinstance(admission.admit(request, {"p": engine}.get, 1, 10), RefuseWebsocket)


@pytest.mark.parametrize(
    "length, size", [(None, 0), ("1000", 1000), ("1001", 1001), ("12a", 1001), ("١٢", 1001), ("-1", 1001)]
)
def test_a_body_is_judged_by_its_announced_size_before_it_is_read(length, size):
    assert admission.announced_size(length, 1000) == size
    refusal = admission.payload_refusal(size, 1000)
    assert refusal == (Refuse(BAD_REQUEST, 413, "Payload too large") if size > 1000 else None)


def test_a_post_that_closed_its_session_is_a_400_unless_the_client_closed_it():
    engine = EngineIOSession("p", 4, EngineConfig(), 0.0, "polling")
    assert admission.after_post(engine) is None
    engine.receive(Packet(CLOSE), 0.1, "polling")
    assert admission.after_post(engine) is None
    broken = EngineIOSession("b", 4, EngineConfig(), 0.0, "polling")
    broken.close("too many messages waiting")
    assert admission.after_post(broken) == Refuse(BAD_REQUEST)
    assert (
        Refuse(BAD_REQUEST).text == "Bad request"
        and Refuse(BAD_REQUEST, 413, "Payload too large").text != "Bad request"
    )


def test_the_handler_takes_the_upgrade_for_websocket_decisions_only():
    assert admission.upgrades(OpenSession(4, "websocket")) and admission.upgrades(Probe(POLLING_V4))
    assert admission.upgrades(RefuseWebsocket(1008, HAS_ONE))
    assert not admission.upgrades(OpenSession(4, "polling")) and not admission.upgrades(Poll(POLLING_V4))
    assert not admission.upgrades(Refuse(BAD_REQUEST))
