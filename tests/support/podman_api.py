"""A Docker-compatible API for the container tests: podman's own, on a unix socket the
test makes, with a network of the test's own.

`podman system service` serves the Docker API that gateway_provisioners' docker-provisioner
(the docker SDK) speaks; `DOCKER_HOST=unix://<socket>` points both at it. The kernels'
containers join a bridge network the test creates (its containers are the project's own
test hosts; the service reaches them there, and they reach the service at the bridge's
gateway address); nothing is sent anywhere else. Containers get the ulimits this machine
allows through the service's containers.conf (the Docker API call has none, and podman's
default nofile limit is refused here).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.container import Engine

CONTAINERS_CONF = '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=16384:16384"]\n'


@dataclass(frozen=True)
class DockerAPI:
    """Where the Docker API is and the network kernels' containers join."""

    engine: Engine
    docker_host: str  # unix://...
    network: str
    gateway: str  # the host's address on that network: where containers reach the service

    def service_options(self, jupyter_path: Path) -> tuple[list[str], dict[str, str]]:
        """The service's options and environment for container kernels whose kernelspecs
        are under `jupyter_path` (docs/deployment.md, Kernels in containers): where the engine is, the
        network, where kernels answer the service."""
        argv = ["--initial-kernels=0", "--kernel-env-inherit=DOCKER_HOST", "--kernel-env-inherit=DOCKER_NETWORK"]
        env = {
            "JUPYTER_PATH": str(jupyter_path),
            "DOCKER_HOST": self.docker_host,
            "DOCKER_NETWORK": self.network,  # for gateway_provisioners' launcher, which reads this name
            "GP_DOCKER_NETWORK": self.network,  # for the provisioner (and our launcher), which read this one
            "GP_RESPONSE_IP": self.gateway,
            "GP_RESPONSE_ADDR_ANY": "true",  # the bridge's address exists once a container joins it
        }
        return argv, env

    def containers(self, label: str = "component=kernel") -> list[str]:
        """Names of the containers (running or not) that carry `label` and joined this
        API's network: the engine's storage is the machine's, and another test run or a
        benchmark beside this one has kernels' containers of its own (seen: a run's
        leftover failed 13 tests of the next, and this one's cleanup removed them)."""
        filters = ["--filter", f"label={label}", "--filter", f"network={self.network}"]
        listed = self.engine("ps", "-a", *filters, "--format", "{{.Names}}").stdout
        return [name for name in listed.split() if name]

    def kernel_logs(self) -> str:
        """What the kernels' containers printed (a kernel's own stderr is not the service's)."""
        logs = (self.engine("logs", name, check=False) for name in self.containers())
        return "".join(result.stdout + result.stderr for result in logs)


@contextmanager
def docker_api(engine: Engine) -> Iterator[DockerAPI]:
    """podman's Docker API on a fresh socket and a fresh network; both gone afterwards,
    with any kernel container left (the tests assert there is none before that)."""
    folder = Path(tempfile.mkdtemp(prefix="podman-api-"))
    socket = folder / "docker.sock"
    (folder / "containers.conf").write_text(CONTAINERS_CONF)
    environment = {**os.environ, "CONTAINERS_CONF": str(folder / "containers.conf")}
    service = subprocess.Popen(
        [*engine.command, "system", "service", "--time=0", f"unix://{socket}"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    network = f"kernels-test-{os.getpid()}-{random.randrange(16**6):06x}"  # a crashed run's may remain
    try:
        deadline = time.monotonic() + 30
        while not socket.exists():
            assert service.poll() is None, "podman system service exited"
            assert time.monotonic() < deadline, "podman's API socket never appeared"
            time.sleep(0.05)
        create_network(engine, network)
        inspected = json.loads(engine("network", "inspect", network).stdout)[0]
        gateway = inspected["subnets"][0]["gateway"]
        yield DockerAPI(engine, f"unix://{socket}", network, gateway)
    finally:
        for name in DockerAPI(engine, "", network, "").containers():
            engine("rm", "-f", name, check=False)
        engine("network", "rm", "-f", network, check=False)
        os.killpg(service.pid, signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(service.pid, signal.SIGKILL)
            service.wait(10)


def create_network(engine: Engine, name: str, tries: int = 20) -> None:
    """A bridge network `name` on a random 10.231.x.0/24 subnet: another taken already (a
    test's network while a benchmark inside it makes its own) makes podman refuse it, so a
    refused subnet is tried again with another, a few times."""
    for _ in range(tries):
        made = engine("network", "create", "--subnet", f"10.231.{random.randrange(1, 250)}.0/24", name, check=False)
        if made.returncode == 0:
            return
    raise AssertionError(f"podman made no network in {tries} tries: {made.stderr}")
