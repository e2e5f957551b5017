"""The seed client, enchannel-socketio-backend@0.1.0 from npm, unchanged against the service."""

from __future__ import annotations

from kernels_service.testing.service import running_service
from tests.support.node import run_node


def test_enchannel_socketio_backend_flow():
    """spawn, connect (shell twice: two Engine.IO connections), input() over stdio, shutdown."""
    with running_service("--initial-kernels=0", token="") as service:
        outcome = run_node("enchannel_flow.js", service.http_url())
        assert outcome["text"] == "Hello, Ada ✓\n"
        assert outcome["prompt"] == "Who? " and outcome["status"] == "ok"
        status, _, kernels = service.request("GET", "api/kernels")
        assert status == 200 and kernels == [], "shutdown did not stop the spawned kernel"
