"""Jupyter Server, unchanged, uses the service as its kernel gateway (`--gateway-url`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import Service, free_port
from tests.support.channels import interrupted_reply
from tests.support.waiting import wait_until

SERVER_TOKEN = "jupyter-server-token"


class JupyterServer:
    """`jupyter server --gateway-url=...` as a subprocess, addressed like our Service."""

    def __init__(self, gateway: Service):
        self.port = free_port()
        self.token = SERVER_TOKEN
        self.base = "/"
        self.root = tempfile.mkdtemp(prefix="gateway-root-")
        self.log = tempfile.NamedTemporaryFile(prefix="jupyter-server-", suffix=".log", delete=False)
        command = [
            sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
            "--ip=127.0.0.1", f"--port={self.port}",
            f"--ServerApp.root_dir={self.root}", f"--IdentityProvider.token={SERVER_TOKEN}",
            f"--gateway-url=http://127.0.0.1:{gateway.port}{gateway.base}",
            f"--GatewayClient.auth_token={gateway.token}", "--GatewayClient.request_timeout=60",
        ]  # fmt: skip
        env = {**os.environ, "JUPYTER_CONFIG_DIR": self.root, "JUPYTER_RUNTIME_DIR": self.root}
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self._wait()

    def _wait(self) -> None:
        wait_until(self._answers, 60, "jupyter server answering")

    def _answers(self) -> bool:
        assert self.process.poll() is None, Path(self.log.name).read_text()
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api", timeout=2)
            return True
        except OSError:
            return False

    request = Service.request
    ws_url = Service.ws_url

    def stop(self) -> None:
        """Stop the server; its root and log go with it unless it had to be killed."""
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return
        shutil.rmtree(self.root, ignore_errors=True)
        Path(self.log.name).unlink(missing_ok=True)


@pytest.fixture
def jupyter_server(service):
    server = JupyterServer(service)
    yield server
    server.stop()


def test_jupyter_server_drives_kernels_through_the_gateway(service, jupyter_server):
    status, _, specs = jupyter_server.request("GET", "api/kernelspecs")
    assert status == 200 and "python3" in specs["kernelspecs"], specs
    status, _, model = jupyter_server.request("POST", "api/kernels", {"name": "python3"})
    assert status == 201, model
    kernel_id = model["id"]
    assert service.request("GET", f"api/kernels/{kernel_id}")[0] == 200, "kernel is not on the gateway"

    client = ChannelsClient(jupyter_server, kernel_id)
    try:
        _, outputs = client.execute("print(6 * 7)")
        assert stream_text(outputs) == "42\n"

        interrupt = lambda: jupyter_server.request("POST", f"api/kernels/{kernel_id}/interrupt")[0]  # noqa: E731
        reply = interrupted_reply(interrupt, client, service.output)
        assert reply["content"]["ename"] == "KeyboardInterrupt"

        status, _, restarted = jupyter_server.request("POST", f"api/kernels/{kernel_id}/restart")
        assert status == 200 and restarted["id"] == kernel_id
    finally:
        client.close()
    client = ChannelsClient(jupyter_server, kernel_id)
    try:
        _, outputs = client.execute("print('after restart')")
        assert stream_text(outputs) == "after restart\n"
    finally:
        client.close()
    assert jupyter_server.request("DELETE", f"api/kernels/{kernel_id}")[0] == 204
    assert service.request("GET", f"api/kernels/{kernel_id}")[0] == 404
