"""Run the npm socket.io clients with node; a missing node or package fails, never skips."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
NODE_DIR = TESTS / "node"


def run_node(script: str, *args: str, timeout: float = 90) -> dict:
    """Run tests/node/<script> and return the JSON line it prints last."""
    node = shutil.which("node")
    assert node, "node is not installed: the socket.io client tests need it (see .ci/run)"
    assert (TESTS / "node_modules" / "socket.io-client-1").is_dir(), "run `npm ci` in tests/ first (see .ci/run)"
    result = subprocess.run(
        [node, str(NODE_DIR / script), *args], capture_output=True, text=True, timeout=timeout, cwd=TESTS
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{script} printed no result (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
    outcome = json.loads(lines[-1])
    assert result.returncode == 0 and outcome.get("ok"), f"{script} failed: {outcome}\n{result.stderr}"
    return outcome


def read_until_ready(client: subprocess.Popen) -> bool:
    """Read a node client's lines (JupyterLab prints its own, "Starting WebSocket: ...") up
    to its "ready"; False if it ends, or prints 20 lines, first."""
    for _ in range(20):
        line = client.stdout.readline()
        if line == "ready\n":
            return True
        if not line:
            return False
    return False
