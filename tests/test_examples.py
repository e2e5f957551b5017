"""The README's client examples are files in examples/, run here against the real service,
and the README shows them as they are."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from tests.support.service import ROOT

EXAMPLES = ROOT / "examples"


def run_example(command: list[str], service, cwd=EXAMPLES) -> str:
    """Run an example with the service's endpoint and token, as the README says; its stdout."""
    before = {k["id"] for k in service.request("GET", "api/kernels")[2]}
    result = subprocess.run(
        [*command, service.http_url()],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=cwd,
        env={**os.environ, "KERNELS_SERVICE_TOKEN": service.token},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    after = {k["id"] for k in service.request("GET", "api/kernels")[2]}
    assert after == before, "the example shuts its kernel down"
    return result.stdout


def test_the_python_websocket_example_prints_hello(service):
    assert run_example([sys.executable, str(EXAMPLES / "python_websocket.py")], service) == "hello\n"


def test_the_node_socketio_example_prints_hello(service):
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (EXAMPLES / "node_modules" / "socket.io-client").is_dir(), "run `npm ci --prefix examples` first"
    assert run_example([node, "socketio.mjs"], service) == "hello\n"


def test_the_readme_shows_the_example_files_as_they_are():
    readme = (ROOT / "README.md").read_text()
    for name in ("python_websocket.py", "socketio.mjs", "browser/index.html", "derived-bash/Dockerfile"):
        assert (EXAMPLES / name).read_text().strip() in readme, f"README.md does not show examples/{name} as it is"
