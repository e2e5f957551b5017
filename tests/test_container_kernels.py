"""Kernels in containers: the service runs a kernelspec that names gateway_provisioners'
`docker-provisioner`, unchanged as `jupyter docker-spec install` writes it, against a real
engine (podman's Docker API, tests/support/podman_api.py), with the kernel image
`python docker/image.py build --kernel` makes.

Built and run when CI is set or KERNELS_TEST_IMAGE=1, like the image tests."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import TOKEN, Service, running_service, tracebacks
from tests.support.attacks import read_the_service, run_in_kernel
from tests.support.channels import interrupted_reply
from tests.support.container import WANTED, Engine, image_script
from tests.support.kernelspecs import install_confined_kernelspec, install_kernelspec
from tests.support.metrics import scrape, value
from tests.support.node import run_node
from tests.support.podman_api import DockerAPI, docker_api
from tests.support.waiting import wait_until

KERNEL_IMAGE = "localhost/kernels-service-kernel:latest"
SPEC = "container_python"
MISSING_SPEC = "container_missing"  # its image is nowhere (a pull tries the loopback only)
MISSING_IMAGE = "localhost/kernels-service-no-such-image:latest"
CONFINED_SPEC = "container_confined"  # written by kernels_service.containers.kernelspec, with limits
LIMITS = {"memory": 256 * 1024 * 1024, "pids": 200}
SILENT_SPEC = "container_silent"  # the service's image: its container never sends a kernel's connection info
SERVICE_IMAGE = "localhost/kernels-service:latest"
SILENT_TIMEOUT = 8  # its launch timeout, in seconds
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
        """The service's options and environment for container kernels, with an operator's
        secret in its environment that no kernel may see."""
        argv, env = self.api.service_options(self.jupyter_path)
        return argv, {**env, "DB_PASSWORD": SECRET}


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
    limits = ("--memory=256m", "--cpus=1", "--pids-limit=200", "--env=KERNEL_USERNAME=pool")
    install_confined_kernelspec(prefix, KERNEL_IMAGE, CONFINED_SPEC, *limits)
    install_confined_kernelspec(prefix, SERVICE_IMAGE, SILENT_SPEC)
    silent = prefix / "share" / "jupyter" / "kernels" / SILENT_SPEC / "kernel.json"
    spec = json.loads(silent.read_text())  # as an operator sets it: the provisioner's launch_timeout
    spec["metadata"]["kernel_provisioner"]["config"]["launch_timeout"] = SILENT_TIMEOUT
    silent.write_text(json.dumps(spec))
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
        reply = interrupted_reply(interrupt, client, lambda: service.output() + containers.api.kernel_logs())
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert stream_text(client.execute("print(x + 1)")[1]) == "42\n", "the interrupt cost the kernel"
        assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
        assert stream_text(client.execute("print('x' in dir())", timeout=120)[1]) == "False\n"
        client.close()
        assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
        assert containers.api.containers() == []


#: From inside a kernel: what confines its container (cgroup v1 or v2 files).
CONFINEMENT = r"""
import errno, json, os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
def first(*paths):
    for path in paths:
        if os.path.exists(path):
            return open(path).read().strip()
def try_write(path):
    try:
        with open(path, "w") as file:
            file.write("x")
        return "written"
    except OSError as error:
        return errno.errorcode[error.errno]
print(json.dumps({
    "bounding_capabilities": int(status["CapBnd"], 16), "no_new_privileges": int(status["NoNewPrivs"]),
    "memory": first("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    "pids": first("/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"),
    "venv": try_write("/opt/kernels-service/x"), "tmp": try_write("/tmp/x"),
    "home": try_write(os.path.expanduser("~/x")),
    "uid": os.getuid(),
}))
"""


def test_a_confined_container_kernel_has_a_read_only_root_no_capabilities_and_its_limits(containers):
    """The kernelspec that kernels_service.containers.kernelspec writes runs the kernel with
    a read-only root (its /tmp and home writable), no capabilities, no privilege to gain,
    and the memory and process limits it names; a client cannot lift them (they are in
    the kernelspec's argv, not in its KERNEL_* variables)."""
    argv, env = containers.service_options()
    with running_service(*argv, env=env) as service:
        lifted = {**CLIENT, "KERNEL_MEMORY_LIMIT": "8g", "KERNEL_PIDS_LIMIT": "100000"}
        status, _, model = service.request("POST", "api/kernels", {"name": CONFINED_SPEC, "env": lifted})
        assert status == 201, model
        client = ChannelsClient(service, model["id"])
        found = run_in_kernel(client, CONFINEMENT)
        client.close()
        assert found["uid"] == 1000 and found["bounding_capabilities"] == 0 and found["no_new_privileges"] == 1, found
        assert (found["venv"], found["tmp"], found["home"]) == ("EROFS", "written", "written"), found
        assert (int(found["memory"]), int(found["pids"])) == (LIMITS["memory"], LIMITS["pids"]), found
        assert service.request("DELETE", f"api/kernels/{model['id']}")[0] == 204
        assert containers.api.containers() == []


def test_a_launch_that_times_out_is_a_503_that_says_so_and_its_container_is_removed(containers):
    """A container whose kernel never reports (an image pull or a queue that takes too
    long looks the same) is given up after the kernelspec's launch_timeout: the client is
    told so, the container is removed, and other clients are served meanwhile."""
    argv, env = containers.service_options()
    with running_service(*argv, env=env) as service:
        with ThreadPoolExecutor(1) as pool:
            silent = pool.submit(service.request, "POST", "api/kernels", {"name": SILENT_SPEC, "env": CLIENT})
            wait_until(lambda: containers.api.containers() != [], 60, "the silent kernel's container")
            assert service.request("GET", "api/kernels")[0] == 200  # not blocked by the pending launch
            status, _, body = silent.result(timeout=SILENT_TIMEOUT + 60)
        assert status == 503, body
        assert body["message"] == f"The {SILENT_SPEC} kernel did not start within its launch timeout; the log says why"
        wait_until(lambda: containers.api.containers() == [], 30, "the silent kernel's container removed")
        assert "launch timeout" in service.output() and tracebacks(service.output()) == []


def test_a_kernel_the_provisioner_refuses_is_a_403_with_its_reason(containers):
    argv, env = containers.service_options()
    with running_service(*argv, env=env) as service:
        status, _, body = service.request("POST", "api/kernels", {"name": SPEC, "env": {"KERNEL_USERNAME": "root"}})
        assert status == 403 and "'root'" in body["message"] and "KERNEL_USERNAME" in body["message"], body
        assert containers.api.containers() == [] and service.request("GET", "api/kernels")[2] == []


def test_a_container_killed_from_outside_comes_back_and_its_clients_go_on(containers):
    """`podman kill` of a kernel's container: its clients see `restarting`, the kernel comes
    back in a new container (the same kernel id) and runs their code again."""
    argv, env = containers.service_options()
    with running_service(*argv, env=env) as service:
        kernel = start_container_kernel(service)
        client = ChannelsClient(service, kernel)
        client.execute("x = 1", timeout=90)
        (name,) = containers.api.containers()
        first = container_id(containers, name)
        containers.api.engine("kill", name)
        client.recv_until(
            lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "restarting", 60
        )
        wait_until(lambda: container_id(containers, name) not in ("", first), 90, "a new container for the kernel")
        reply, outputs = client.execute("print('x' in dir())", timeout=120)
        assert reply["content"]["status"] == "ok" and stream_text(outputs) == "False\n"
        assert [k["id"] for k in service.request("GET", "api/kernels")[2]] == [kernel]
        client.close()
        assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
        assert containers.api.containers() == []


def container_id(containers: Containers, name: str) -> str:
    """The id of the container called `name` (a restarted kernel's has the same name), or ""."""
    return containers.api.engine("ps", "-q", "--no-trunc", "--filter", f"name=^{name}$", check=False).stdout.strip()


def test_container_kernels_are_pooled_limited_counted_and_culled(containers):
    """The pool keeps a container kernel ready (its kernelspec names the user, since the
    pool has no client), --max-kernels counts container kernels, metrics count them, and
    idle ones are culled with their containers."""
    argv, env = containers.service_options()
    options = [*argv, f"--kernel-name={CONFINED_SPEC}", "--pool-size=1", "--max-kernels=2",
               "--cull-idle-timeout=4", "--cull-interval=1"]  # fmt: skip
    spec = containers.jupyter_path / "kernels" / CONFINED_SPEC / "kernel.json"
    with running_service(*options, env=env) as service:
        wait_until(lambda: value(scrape(service), "kernels_service_pool_ready") == 1, 120, "a pooled container kernel")
        assert json.loads(spec.read_text())["env"].get("KERNEL_USERNAME") == "pool"
        first = service.request("POST", "api/kernels", {})
        second = service.request("POST", "api/kernels", {"name": CONFINED_SPEC, "env": CLIENT})
        assert (first[0], second[0]) == (201, 201), (first, second)
        third = service.request("POST", "api/kernels", {"name": CONFINED_SPEC, "env": CLIENT})
        assert third[0] == 503 and "max" in third[2]["message"].lower(), third
        assert value(scrape(service), "kernels_service_kernel_start_seconds_count", pooled="true") == 1
        idle = lambda: value(scrape(service), "kernels_service_kernels", state="idle") == 2  # noqa: E731
        wait_until(idle, 60, "both kernels counted idle")  # the launched one says so once it has started
        assert len(containers.api.containers()) >= 2
        wait_until(lambda: service.request("GET", "api/kernels")[2] == [], 60, "both kernels culled")
        assert "Culling kernel" in service.output()
        wait_until(lambda: len(containers.api.containers()) <= 1, 60, "the culled kernels' containers removed")
    assert containers.api.containers() == []


@pytest.mark.parametrize(("generation", "transports"), [("1", "polling"), ("4", "websocket")])
def test_socketio_clients_of_both_generations_run_the_whole_flow_on_a_container_kernel(
    containers, generation, transports
):
    """kernel-relay's flow (spawn, execute, input(), 1 MB of output, a comm with buffers,
    shutdown) with the npm socket.io client of each protocol generation, on kernels in
    containers (the confined kernelspec is the default: its env names the user), and both
    websocket protocols on one of them."""
    argv, env = containers.service_options()
    with running_service(*argv, f"--kernel-name={CONFINED_SPEC}", "--pool-size=0", env=env) as service:
        outcome = run_node("kernel_flow.js", generation, transports, service.http_url(), service.token, timeout=120)
        assert outcome["hello"] == "héllo wörld ✓ 🚀\n" and outcome["input"] == "ünïcode name? \n", outcome
        assert outcome["bigLength"] == 1_000_001 and outcome["comm"]["buffers"] == [[0, 1, 2, 255]], outcome
        assert outcome["spawned"] and outcome["shutdown"]
        kernel = service.start_kernel()
        for protocol in ("legacy", "v1"):
            client = ChannelsClient(service, kernel, protocol)
            assert stream_text(client.execute(f"print({protocol!r})", timeout=90)[1]) == f"{protocol}\n"
            client.close()
    assert containers.api.containers() == []


def polls_of(pid: int, seconds: int, timeout_ms: int) -> list[str]:
    """The poll(2) calls with a timeout of `timeout_ms` of the process `pid`, all its
    threads, in `seconds`, by strace: a socket call with a timeout of that many ms waits so
    (the event loop waits in epoll_wait; other sockets' timeouts are other numbers)."""
    traced = subprocess.run(
        ["timeout", str(seconds), "strace", "-f", "-qq", "-e", "trace=poll", "-p", str(pid)],
        capture_output=True, text=True, timeout=seconds + 30,
    )  # fmt: skip
    return [line for line in traced.stderr.splitlines() if re.search(rf"poll\(\[.*\], \d+, {timeout_ms}\)", line)]


#: gateway_provisioners' GP_SOCKET_TIMEOUT, 0.01 s, is its response socket's poll timeout.
GATEWAY_PROVISIONERS_SOCKET_TIMEOUT_MS = 10


@pytest.mark.parametrize(("socket_timeout", "busy"), [(None, False), ("0.01", True)], ids=["default", "polling"])
def test_the_service_waits_for_container_kernels_without_polling(containers, socket_timeout, busy):
    """gateway_provisioners' response manager polled a blocking accept every 0.1 ms once a
    container kernel had launched, which blocked the service's event loop nearly all the
    time (builder.PROVISIONERS_SOCKET_TIMEOUT). By default the idle service now makes no
    such 10 ms poll at all; with gateway_provisioners' own GP_SOCKET_TIMEOUT (0.01) given
    back, over 50 in 2 s: the count tells them apart."""
    assert shutil.which("strace"), "strace is missing (.ci/run installs Debian's strace)"
    argv, env = containers.service_options()
    if socket_timeout is not None:
        env["GP_SOCKET_TIMEOUT"] = socket_timeout
    with running_service(*argv, env=env) as service:
        kernel = start_container_kernel(service)
        calls = polls_of(service.pid, 2, GATEWAY_PROVISIONERS_SOCKET_TIMEOUT_MS)
        assert (len(calls) > 50) if busy else (calls == []), calls[:5]
        assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204


BASH_IMAGE = "localhost/kernels-service-bash-kernel:latest"
BASH_SPEC = "container_bash"


def test_the_derived_bash_image_is_a_kernel_image_too(containers):
    """`build --derived --kernel` also makes the bash image a kernel image; bash_kernel is
    built on ipykernel, so the image's Python launcher runs it (`--kernel-class`), and
    clients see a bash kernel."""
    assert image_script().main(["build", "--derived", "--kernel"]) == 0, "docker/image.py build failed (above)"
    prefix = containers.jupyter_path.parents[1]
    options = ("--kernel-class=bash_kernel.kernel.BashKernel", "--language=bash", "--display-name=Bash in a container")
    install_confined_kernelspec(prefix, BASH_IMAGE, BASH_SPEC, *options)
    argv, env = containers.service_options()
    with running_service(*argv, env=env) as service:
        status, _, model = service.request("POST", "api/kernels", {"name": BASH_SPEC, "env": CLIENT})
        assert status == 201, model
        client = ChannelsClient(service, model["id"], "v1")
        reply, outputs = client.execute("echo $((6 * 7)) $(id -u)", timeout=90)
        assert reply["content"]["status"] == "ok" and stream_text(outputs) == "42 1000\n", (reply, outputs)
        info, _ = client.wait_for(client.send("shell", "kernel_info_request", {}), 30)
        assert info["content"]["language_info"]["name"] == "bash", info["content"]
        client.close()
        assert service.request("DELETE", f"api/kernels/{model['id']}")[0] == 204
    assert containers.api.containers() == []


def test_bench_containers_runs_and_prints_every_figure(containers):
    """The benchmark stays runnable (its figures are in benchmarks/README.md; none is asserted here)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_containers.py"
    ran = subprocess.run([sys.executable, str(script), "--repeats=1", "--round-trips=20"],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for measure in ("start", "round trip"):
        for kind in ("local", "container", "confined"):
            assert re.search(rf"^{measure} +{kind} +median +[\d.]+ ms +\([\d.]+x local", ran.stdout, re.M), ran.stdout


def test_a_container_kernel_outlives_a_sigterm_with_keep_kernels_and_is_taken_up(containers, tmp_path):
    """--keep-kernels: SIGTERM leaves the kernel's container running; the next start takes
    it up (docker-provisioner finds it again by its kernel id) with its variables; SIGINT
    then stops it, container and all."""
    argv, env = containers.service_options()
    options = [*argv, "--keep-kernels", f"--kernel-store={tmp_path / 'store' / 'kernels.sqlite'}"]
    first = Service(*options, env=env)
    second = None
    try:
        kernel = start_container_kernel(first)
        client_run(first, kernel, "x = 42")
        assert first.stop(signal.SIGTERM) == 0, first.output()
        assert [name for name in containers.api.containers() if kernel in name], "the container ended with the service"
        second = Service(*options, env=env)
        assert [k["id"] for k in second.request("GET", "api/kernels")[2]] == [kernel], second.output()
        assert stream_text(client_run(second, kernel, "print(x)")) == "42\n"
        assert second.stop(signal.SIGINT) == 0, second.output()
        assert tracebacks(first.output() + second.output()) == []
    finally:
        for service in (first, second):
            if service is not None and service.process.poll() is None:
                service.stop(signal.SIGINT)
    wait_until(lambda: containers.api.containers() == [], 30, "the kernel's container removed")


#: The PATH of a service started from a virtual environment that is not activated (a
#: systemd unit running /opt/venv/bin/kernels-service): no `python` there is the service's.
BARE_PATH = "/usr/bin:/bin"
OTHER_PYTHON = "/usr/bin/python3"  # Debian's, without this package


def test_container_kernels_start_for_a_service_whose_venv_is_not_on_path(containers):
    """Both kernelspecs (gateway_provisioners' `python launch_docker.py`, and ours, written
    with the interpreter that wrote it) launch with the service's Python, whatever PATH says."""
    assert shutil.which("python", path=BARE_PATH) in (None, "/usr/bin/python")
    argv, env = containers.service_options()
    with running_service(*argv, env={**env, "PATH": BARE_PATH}) as service:
        for name in (SPEC, CONFINED_SPEC):
            status, _, model = service.request("POST", "api/kernels", {"name": name, "env": CLIENT})
            assert status == 201, (name, model, service.output()[-3000:])
            assert stream_text(client_run(service, model["id"], "print(6 * 7)")) == "42\n"
            assert service.request("DELETE", f"api/kernels/{model['id']}")[0] == 204
    assert containers.api.containers() == []


def test_a_launcher_that_fails_says_why_in_the_log_in_one_line(containers, tmp_path):
    """A kernelspec whose launcher runs with a Python that lacks this package: a 503, and
    the launcher's own error in the service's log, in one line that names the kernelspec
    (gateway_provisioners alone says "Check Enterprise Gateway log for more information")."""
    lacks = subprocess.run(
        [OTHER_PYTHON, "-c", "import kernels_service"], capture_output=True, timeout=60, cwd=tmp_path
    )
    assert lacks.returncode != 0, f"{OTHER_PYTHON} can import kernels_service: the test needs one that cannot"
    spec = json.loads((containers.jupyter_path / "kernels" / CONFINED_SPEC / "kernel.json").read_text())
    spec["argv"][0] = OTHER_PYTHON
    (tmp_path / "kernels" / "broken_launcher").mkdir(parents=True)
    (tmp_path / "kernels" / "broken_launcher" / "kernel.json").write_text(json.dumps(spec))
    argv, env = containers.service_options()
    env["JUPYTER_PATH"] = f"{tmp_path}:{env['JUPYTER_PATH']}"
    # started away from the checkout, as a service installed in a venv is: its working
    # directory does not hold the package, which the other Python would import from there
    with running_service(*argv, env={**env, "PATH": BARE_PATH}, cwd=tmp_path) as service:
        status, _, body = service.request("POST", "api/kernels", {"name": "broken_launcher", "env": CLIENT})
        assert status == 503, body
        assert service.request("POST", "api/kernels", {"name": SPEC, "env": CLIENT})[0] == 201  # the next is served
        output = service.output()
    said = [line for line in output.splitlines() if "Launcher of a broken_launcher kernel failed:" in line]
    assert len(said) == 1 and "No module named 'kernels_service'" in said[0], output
    assert tracebacks(output) == [], output
    assert containers.api.containers() == []
