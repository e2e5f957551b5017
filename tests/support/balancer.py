"""HAProxy in front of replicas, with the project's own configuration
(`deploy/haproxy/haproxy.cfg`, as it is), on a free loopback port; stopped by its pid.
Addressed like our Service (port, base, token), so the tests' clients use it unchanged."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from kernels_service.testing.service import Service, free_port, http_request
from tests.support.paths import ROOT

CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"


class Balancer:
    """`haproxy -f deploy/haproxy/haproxy.cfg` before three replicas."""

    def __init__(self, replicas: list[Service]):
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        assert os.path.exists(haproxy), "HAProxy is not installed (apt-get install haproxy; .ci/run does)"
        assert len(replicas) == 3, "the configuration names three replicas"
        first = replicas[0]
        self.replicas = replicas  # the services behind it, as the configuration names them
        self.port = free_port()
        self.base, self.token = first.base, first.token
        self.log = tempfile.NamedTemporaryFile(prefix="haproxy-", suffix=".log", delete=False)
        env = {**os.environ, "KERNELS_LISTEN": f"127.0.0.1:{self.port}"}
        env.update({f"KERNELS_REPLICA_{i}": f"127.0.0.1:{r.port}" for i, r in enumerate(replicas, 1)})
        self.process = subprocess.Popen(
            [haproxy, "-db", "-f", str(CONFIG)], stdout=self.log, stderr=subprocess.STDOUT, env=env
        )
        deadline = time.monotonic() + 30
        while not self._answers():
            assert self.process.poll() is None, f"haproxy exited: {self.output()}"
            assert time.monotonic() < deadline, f"haproxy did not answer in 30 s: {self.output()}"
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            return http_request(self.port, "GET", "/api/health", None, token="")[0] == 200
        except OSError:
            return False

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    request = Service.request
    http_url = Service.http_url
    ws_url = Service.ws_url

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            return
        Path(self.log.name).unlink(missing_ok=True)
