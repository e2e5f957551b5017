"""The seed client, enchannel-socketio-backend@0.1.0 from npm, unchanged against the service."""

from __future__ import annotations

from tests.support.node import run_node
from tests.support.service import Service


def test_enchannel_socketio_backend_flow():
    """spawn, connect (shell twice: two Engine.IO connections), input() over stdio, shutdown."""
    service = Service("--initial-kernels=0", token="")
    try:
        outcome = run_node("enchannel_flow.js", service.http_url())
        assert outcome["text"] == "Hello, Ada ✓\n"
        assert outcome["prompt"] == "Who? " and outcome["status"] == "ok"
        status, _, kernels = service.request("GET", "api/kernels")
        assert status == 200 and kernels == [], "shutdown did not stop the spawned kernel"
    finally:
        service.stop_and_check_no_leak()
