"""The client examples are files in examples/, run here against the real service, and the
README and docs/ show them as they are."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
import urllib.parse

from kernels_service.testing.service import Service, tracebacks
from tests.support.node import run_node
from tests.support.paths import ROOT
from tests.support.waiting import wait_until

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


#: Where each example is shown, as it is.
SHOWN_IN = {
    "python_websocket.py": ("docs/clients.md",),
    "socketio.mjs": ("README.md", "docs/clients.md"),
    "browser/index.html": ("docs/clients.md",),
    "derived-bash/Dockerfile": ("docs/deployment.md",),
}


def test_the_docs_show_the_example_files_as_they_are():
    for name, documents in SHOWN_IN.items():
        for document in documents:
            shown = (ROOT / document).read_text()
            assert (EXAMPLES / name).read_text().strip() in shown, f"{document} does not show examples/{name} as it is"


def test_the_browser_example_prints_hello_and_shuts_its_kernel_down_when_closed():
    """examples/browser/index.html, served as the README says, in headless Chromium."""
    assert shutil.which("chromium") or os.environ.get("CHROMIUM"), (
        "chromium is not installed (apt-get install chromium; see .ci/run)"
    )
    assert (EXAMPLES / "node_modules" / "socket.io-client" / "dist").is_dir(), "run `npm ci --prefix examples` first"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(EXAMPLES))
    pages = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=pages.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{pages.server_address[1]}"
    service = Service(f"--allow-origin={origin}", "--initial-kernels=0", "--pool-size=0")
    try:
        query = urllib.parse.urlencode({"endpoint": service.http_url(), "token": service.token})
        outcome = run_node("browser_example.js", f"{origin}/browser/index.html?{query}")
        assert outcome["output"] == "hello\n" and not outcome["errors"], outcome
        wait_until(lambda: service.request("GET", "api/kernels")[2] == [], 20, "the page shutting its kernel down")
        assert not tracebacks(service.output()), service.output()
    finally:
        pages.shutdown()
        service.stop_and_check_no_leak()
