"""Kernels in containers: the service runs a kernelspec that names gateway_provisioners'
`docker-provisioner`, unchanged as `jupyter docker-spec install` writes it, against a real
engine (podman's Docker API, tests/support/podman_api.py), with the kernel image
`python docker/image.py build --kernel` makes.

Built and run when CI is set or KERNELS_TEST_IMAGE=1, like the image tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import TOKEN, running_service
from tests.support.attacks import read_the_service, run_in_kernel
from tests.support.channels import interrupted_reply
from tests.support.container import Engine, image_script
from tests.support.podman_api import DockerAPI, docker_api
from tests.test_image import WANTED

KERNEL_IMAGE = "localhost/kernels-service-kernel:latest"
SPEC = "container_python"
MISSING_SPEC = "container_missing"  # its image is nowhere (a pull tries the loopback only)
MISSING_IMAGE = "localhost/kernels-service-no-such-image:latest"
SECRET = "db-password-9876543210"
CLIENT = {"KERNEL_USERNAME": "alice"}  # as Jupyter Server's gateway client sends it

pytestmark = [
    pytest.mark.skipif(not WANTED, reason="built and run with CI set or KERNELS_TEST_IMAGE=1"),
    pytest.mark.timeout(900),
]


@dataclass(frozen=True)
class Containers:
    api: DockerAPI
    jupyter_path: Path

    def service_options(self) -> tuple[list[str], dict[str, str]]:
        """The service's options and environment for container kernels (README, Kernels in
        containers): where the engine is, the network, where kernels answer the service."""
        argv = ["--initial-kernels=0", "--kernel-env-inherit=DOCKER_HOST", "--kernel-env-inherit=DOCKER_NETWORK"]
        env = {
            "JUPYTER_PATH": str(self.jupyter_path),
            "DOCKER_HOST": self.api.docker_host,
            "DOCKER_NETWORK": self.api.network,  # for the launcher, which reads this name
            "GP_DOCKER_NETWORK": self.api.network,  # for the provisioner, which reads this one
            "GP_RESPONSE_IP": self.api.gateway,
            "GP_RESPONSE_ADDR_ANY": "true",  # the bridge's address exists once a container joins it
            "DB_PASSWORD": SECRET,
        }
        return argv, env


def install_kernelspec(prefix: Path, image: str, name: str) -> None:
    """`jupyter docker-spec install`, as an operator runs it."""
    command = [str(Path(sys.executable).with_name("jupyter")), "docker-spec", "install", f"--prefix={prefix}",
               f"--image-name={image}", f"--kernel-name={name}"]  # fmt: skip
    installed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout + installed.stderr


def start_container_kernel(service) -> str:
    """A container kernel of the service, started as a gateway client asks for one; its id."""
    status, _, model = service.request("POST", "api/kernels", {"name": SPEC, "env": CLIENT})
    assert status == 201, model
    return model["id"]


@pytest.fixture(scope="module")
def containers(tmp_path_factory) -> Iterator[Containers]:
    engine = Engine()
    assert image_script().main(["build", "--kernel"]) == 0, "docker/image.py build --kernel failed (output above)"
    prefix = tmp_path_factory.mktemp("kernelspecs")
    install_kernelspec(prefix, KERNEL_IMAGE, SPEC)
    install_kernelspec(prefix, MISSING_IMAGE, MISSING_SPEC)
    with docker_api(engine) as api:
        yield Containers(api, prefix / "share" / "jupyter")


def test_the_kernelspec_names_docker_provisioner_unchanged(containers):
    spec = json.loads((containers.jupyter_path / "kernels" / SPEC / "kernel.json").read_text())
    assert spec["metadata"]["kernel_provisioner"]["provisioner_name"] == "docker-provisioner"
    assert spec["metadata"]["kernel_provisioner"]["config"]["image_name"] == KERNEL_IMAGE


def test_a_container_kernel_runs_code_as_a_non_root_user_and_leaves_no_container(containers):
    argv, env = containers.service_options()
    with running_service(*argv, env=env) as service:
        kernel = start_container_kernel(service)
        assert [name for name in containers.api.containers() if kernel in name], "no container for the kernel"
        client = ChannelsClient(service, kernel, "v1")
        _, outputs = client.execute("import os, socket; print(os.getuid(), socket.gethostname())", timeout=90)
        uid, hostname = stream_text(outputs).split()
        assert uid == "1000" and hostname == f"alice-{kernel}"
        client.close()
        assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
        assert containers.api.containers() == [], "the kernel's container outlived its DELETE"


def test_a_container_kernel_has_no_secret_of_the_service_and_sigterm_removes_it(containers):
    argv, env = containers.service_options()
    with running_service(*argv, env=env) as service:
        kernel = start_container_kernel(service)
        client = ChannelsClient(service, kernel)
        found = run_in_kernel(client, read_the_service(TOKEN, SECRET))
        client.close()
        assert found["holding_a_secret"] == [] and found["uid"] == 1000, found
        environment = stream_text(client_run(service, kernel, "import os; print(sorted(os.environ))"))
        assert "DB_PASSWORD" not in environment and "KERNELS_SERVICE_TOKEN" not in environment
    assert containers.api.containers() == [], "a kernel's container outlived the service's SIGTERM"


def test_a_container_kernel_that_cannot_start_is_a_503_and_leaves_no_container(containers):
    argv, env = containers.service_options()
    with running_service(*argv, env=env) as service:
        status, _, body = service.request("POST", "api/kernels", {"name": MISSING_SPEC, "env": CLIENT})
        assert status == 503, body
        assert body["message"] == f"The {MISSING_SPEC} kernel could not be started; the service's log says why"
        assert service.request("GET", "api/kernels")[2] == []
        assert containers.api.containers() == [], "a failed start left its container"
        assert service.request("POST", "api/kernels", {"name": SPEC, "env": CLIENT})[0] == 201  # the next one starts
        assert f"Kernel of {MISSING_SPEC} not started" in service.output()
    assert containers.api.containers() == []


def client_run(service, kernel: str, code: str) -> list[dict]:
    client = ChannelsClient(service, kernel)
    try:
        reply, outputs = client.execute(code, timeout=90)
        assert reply["content"]["status"] == "ok", reply["content"]
        return outputs
    finally:
        client.close()


def test_a_container_kernel_is_interrupted_and_restarted_in_place(containers):
    """An interrupt goes to the kernel through the provisioner's listener in the container;
    a restart replaces the container (same kernel id, a fresh process) and the websocket
    client goes on."""
    argv, env = containers.service_options()
    with running_service(*argv, env=env) as service:
        kernel = start_container_kernel(service)
        client = ChannelsClient(service, kernel)
        client.execute("x = 41", timeout=90)
        interrupt = lambda: service.request("POST", f"api/kernels/{kernel}/interrupt")[0]  # noqa: E731
        reply = interrupted_reply(interrupt, client, service.output)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert stream_text(client.execute("print(x + 1)")[1]) == "42\n", "the interrupt cost the kernel"
        assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
        assert stream_text(client.execute("print('x' in dir())", timeout=120)[1]) == "False\n"
        client.close()
        assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
        assert containers.api.containers() == []
