"""The image, built from the Dockerfile by docker/image.py and run as its users run it.

Built and run when CI is set or KERNELS_TEST_IMAGE=1 (podman, daemonless, or docker); a
machine where neither runs fails these tests with the reason. The Dockerfiles' lint is in
tests/test_dockerfiles.py."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import pytest

from kernels_service.hardening import KEPT_CAPABILITIES
from kernels_service.testing.channels import ChannelsClient, stream_text
from tests.support.attacks import (
    FORK_BOMB,
    MEMORY_BOMB,
    MY_ADDRESSES,
    MY_LISTENING_PORTS,
    SERVICE_FILES,
    attack,
    knock_on_each,
    read_the_service,
    run_in_kernel,
    who,
)
from tests.support.container import FIGURES, WANTED, Container, Engine, generated_token, image_script

needs_image = pytest.mark.skipif(not WANTED, reason="the image is built and run with CI set or KERNELS_TEST_IMAGE=1")
TOKEN = "image-token-0123456789"
SECRET = "db-password-9876543210"  # an operator's secret, given to the container with -e
MAX_IMAGE_MB = 300

pytestmark = [needs_image, pytest.mark.timeout(900)]


@dataclass
class Built:
    engine: Engine
    image: str
    derived: str


@pytest.fixture(scope="module")
def built() -> Built:
    """The image and the derived bash image, built once (the base and layers are cached)."""
    engine = Engine()
    script = image_script()
    started = time.monotonic()
    assert script.main(["build", "--derived"]) == 0, "docker/image.py build --derived failed (its output is above)"
    seconds = time.monotonic() - started
    size_mb = script.image_size(engine.command, script.IMAGE) / 1e6
    FIGURES.append(f"image {script.IMAGE}: {size_mb:.0f} MB; image and derived image built in {seconds:.0f} s")
    return Built(engine, script.IMAGE, script.DERIVED_IMAGE)


@pytest.fixture
def start(built):
    """Factory of running containers, all removed after the test."""
    containers: list[Container] = []

    def start_(*args: str, image: str | None = None, **kwargs) -> Container:
        container = Container(built.engine, image or built.image, *args, **kwargs)
        containers.append(container)
        container.wait_serving()
        return container

    yield start_
    for container in containers:
        container.remove()


def run_code(container: Container, code: str) -> str:
    """Execute `code` in the container's initial kernel over its websocket; its stdout."""
    status, _, kernels = container.request("GET", "api/kernels")
    assert status == 200 and len(kernels) == 1, (status, kernels)
    client = ChannelsClient(container, kernels[0]["id"])
    try:
        reply, outputs = client.execute(code, timeout=60)
        assert reply["content"]["status"] == "ok", reply
        return stream_text(outputs)
    finally:
        client.close()


def test_the_image_is_smaller_than_300_mb(built):
    size = image_script().image_size(built.engine.command, built.image)
    assert size < MAX_IMAGE_MB * 1e6, f"{size / 1e6:.0f} MB"


def test_rest_and_websocket_with_the_token_from_the_environment_under_a_base_path(start):
    container = start("--base-path=/krn/", token=TOKEN, base_path="/krn/")
    assert run_code(container, "print(6 * 7)") == "42\n"
    assert container.request("GET", "api/kernels", token="")[0] == 401
    assert container.request("POST", "api/kernels", {"name": "python3"})[0] == 201


def test_a_token_is_generated_and_printed_when_none_is_given(start):
    container = start()
    token = generated_token(container.logs())
    assert token, container.logs()
    container.token = token
    assert container.request("GET", "api/kernels")[0] == 200
    assert container.request("GET", "api/kernels", token="wrong")[0] == 403


def test_pid_1_is_tini_kernels_have_uids_of_their_own_and_none_restarts(start):
    """Run as `docker run IMAGE`: the service is root with only the capabilities it needs
    to keep kernels apart, each kernel a uid of its own with none."""
    container = start(token=TOKEN)
    assert int(run_code(container, "import os; print(os.getuid())")) in range(60000, 61184)
    processes = container.processes()
    assert [os.path.basename(p["args"][0]) for p in processes if p["pid"] == 1] == ["tini"], processes
    kernels = {p["pid"] for p in processes if "ipykernel_launcher" in p["args"]}
    assert len(kernels) == 2, processes  # the initial kernel and the pooled one
    (service,) = [p for p in processes if p["ppid"] == 1]
    kept, held = sum(1 << number for number in KEPT_CAPABILITIES.values()), int(service["capabilities"], 16)
    needed = sum(1 << KEPT_CAPABILITIES[name] for name in ("SETUID", "SETGID", "KILL", "CHOWN", "DAC_OVERRIDE"))
    assert held & ~kept == 0 and held & needed == needed, service  # what the engine gave, of what it needs
    assert (service["uid"], service["no_new_privs"]) == (0, "1"), service
    for process in processes:
        if process["pid"] in kernels:
            assert process["uid"] >= 60000 and process["capabilities"] == "0" * 16, process
    assert len({p["uid"] for p in processes if p["pid"] in kernels}) == 2, "each kernel a uid of its own"
    assert "Kernel isolation: python3: own uid (from 60000-61183)" in container.logs()
    time.sleep(5)  # a restart loop shows within seconds: kernels that die and come back
    later = {p["pid"] for p in container.processes() if "ipykernel_launcher" in p["args"]}
    assert later == kernels, container.logs()
    assert "restarted" not in container.logs() and "died" not in container.logs()
    assert not [p for p in container.processes() if p["state"] == "Z"], "zombies: tini reaps them"


def test_stop_exits_0_within_10_s_with_every_kernel_shut_down(start):
    container = start(token=TOKEN)
    container.request("POST", "api/kernels", {"name": "python3"})
    kernels = [k["id"] for k in container.request("GET", "api/kernels")[2]]
    exit_code, seconds = container.stop(timeout=10)
    assert exit_code == 0, (exit_code, container.logs())
    assert seconds < 10, seconds
    logs = container.logs()
    assert all(f"Kernel shutdown: {kernel}" in logs for kernel in kernels), logs
    assert "Traceback" not in logs, logs


@pytest.mark.parametrize(
    "options",
    [
        ("--user", "12345:0"),
        ("--read-only", "--tmpfs", "/tmp"),
        ("--user", "12345:0", "--read-only", "--tmpfs", "/tmp"),
    ],
    ids=["any-uid", "read-only", "any-uid-read-only"],
)
def test_an_arbitrary_uid_and_a_read_only_root_run_kernels(start, options):
    """Under `--user`, the service has no privilege and its kernels share its uid, each
    confined to a Landlock room of its own (the start says so); as root on a read-only
    root, kernels get their uids all the same."""
    container = start(token=TOKEN, options=options)
    uid = int(run_code(container, "import os; print(os.getuid())"))
    if "--user" in options:
        assert uid == 12345
        assert "Kernel isolation: python3: landlock (ABI" in container.logs(), container.logs()
    else:
        assert uid in range(60000, 61184), container.logs()
    assert container.request("POST", "api/kernels", {"name": "python3"})[0] == 201
    exit_code, _ = container.stop(timeout=10)
    assert exit_code == 0, container.logs()
    assert "Traceback" not in container.logs(), container.logs()


def test_the_original_images_shell_form_serves_under_its_base_path_and_stops_cleanly(start):
    container = start("sh", "-c", "/srv/kernels.py --base-path=/krn/", token=TOKEN, base_path="/krn/")
    assert run_code(container, "print('hi')") == "hi\n"
    kernels = [k["id"] for k in container.request("GET", "api/kernels")[2]]
    exit_code, _ = container.stop(timeout=10)
    assert exit_code == 143, container.logs()  # the shell's own status: it died of SIGTERM
    assert all(f"Kernel shutdown: {kernel}" in container.logs() for kernel in kernels), container.logs()


def test_the_healthcheck_is_declared_and_answers(start, built):
    inspected = built.engine("image", "inspect", "--format", "{{json .Config.Healthcheck}}", built.image).stdout
    assert "kernels-healthcheck" in inspected, inspected
    container = start("--base-path=/krn/", token=TOKEN, base_path="/krn/")
    assert container.exec("kernels-healthcheck", check=False).returncode == 0
    assert container.exec("env", "PORT=1", "kernels-healthcheck", check=False).returncode == 1
    if "podman" in built.engine.command[0]:  # the engine runs the image's own HEALTHCHECK
        checked = built.engine("healthcheck", "run", container.name, check=False)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_derived_bash_image_runs_a_bash_kernel(start, built):
    container = start(token=TOKEN, image=built.derived)
    assert [k["name"] for k in container.request("GET", "api/kernels")[2]] == ["bash"]
    assert "hello" in run_code(container, "echo hello")


@pytest.mark.parametrize("token_from", ["environment", "file"])
def test_code_in_a_kernel_reads_nothing_of_the_service_and_no_port_talks_without_a_key(start, tmp_path, token_from):
    """tests/test_security.py's attacks, inside the container run as an operator runs it:
    the kernel runs as a uid of its own, the service as root. PID 1 (tini) holds no
    environment: the entry point handed it past (docker/entrypoint.py)."""
    if token_from == "file":
        secret = tmp_path / "token"
        secret.write_text(TOKEN)
        secret.chmod(0o640)  # the container's uid is in group 0, as container secrets are mounted
        options = ("-v", f"{secret}:/run/secrets/token:ro,Z", "-e", "KERNELS_SERVICE_TOKEN_FILE=/run/secrets/token")
        container = start(options=(*options, "-e", f"DB_PASSWORD={SECRET}"))
        container.token = TOKEN
    else:
        container = start(token=TOKEN, options=("-e", f"DB_PASSWORD={SECRET}"))
    found = json.loads(run_code(container, read_the_service(TOKEN, SECRET)))
    assert found["uid"] >= 60000 and found["tried"] == dict.fromkeys(SERVICE_FILES, "denied"), found
    assert found["holding_a_secret"] == [], found
    addresses = json.loads(run_code(container, MY_ADDRESSES))
    assert addresses["transport"] == "tcp" and addresses["ip"] == "127.0.0.1", addresses  # CurveZMQ by default
    assert json.loads(run_code(container, knock_on_each(addresses))) == ["CURVE: closed"] * 5
    listening = json.loads(run_code(container, MY_LISTENING_PORTS))
    assert listening == sorted([*addresses["ports"], addresses["pipe_port"]]), (listening, addresses)
    assert "may be read" not in container.logs() and TOKEN not in container.logs()


@pytest.mark.parametrize("options", [(), ("--user", "12345:0")], ids=["root", "any-uid"])
def test_in_the_image_one_kernel_reaches_neither_the_service_nor_another_kernel(start, options):
    """tests/test_kernel_isolation.py's attack, in the image run with the engine's defaults
    (kernels of their own uids), and tests/test_landlock.py's, run with `--user` (kernels of
    the service's uid, in Landlock rooms)."""
    container = start(token=TOKEN, options=options)
    (first,) = [k["id"] for k in container.request("GET", "api/kernels")[2]]
    status, _, second = container.request("POST", "api/kernels", {"name": "python3"})
    assert status == 201, second
    attacker, victim = ChannelsClient(container, first), ChannelsClient(container, second["id"])
    victim.execute("x = 'what the victim set'")
    found = run_in_kernel(attacker, attack(who(victim), 0, harmless=False))
    assert found == {**{name: "PermissionError" for name in found}, "ptrace the other": "Operation not permitted"}
    assert len(found) == 20, found
    assert stream_text(victim.execute("print(x)")[1]) == "what the victim set\n"
    attacker.close()
    victim.close()
    assert container.request("GET", "api/kernels")[0] == 200
    assert "Traceback" not in container.logs(), container.logs()


@pytest.mark.parametrize("options", [(), ("--user", "12345:0")], ids=["root", "any-uid"])
def test_in_the_image_a_memory_bomb_and_a_fork_bomb_fail_in_their_kernel(start, options):
    """As root, the kernel has a uid of its own; under `--user`, a Landlock room and a user
    namespace of its own (podman's default seccomp profile allows one): its processes
    are counted apart from the service's either way."""
    container = start("--kernel-memory-limit=512M", "--kernel-process-limit=100", token=TOKEN, options=options)
    (kernel,) = [k["id"] for k in container.request("GET", "api/kernels")[2]]
    client = ChannelsClient(container, kernel)
    client.execute("kept = 'still here'")
    memory = run_in_kernel(client, MEMORY_BOMB)
    assert memory["error"] == "MemoryError" and memory["taken_mib"] < 512, memory
    forks = run_in_kernel(client, FORK_BOMB)
    assert forks["error"] == "BlockingIOError" and forks["forked"] < 100, forks
    assert stream_text(client.execute("print(kept)")[1]) == "still here\n"
    client.close()
    assert container.request("POST", "api/kernels", {"name": "python3"})[0] == 201
    assert "Each local kernel may take: memory 512 MiB, 100 processes" in container.logs()
    if options:
        assert "Each kernel's 100 processes are counted in a user namespace of its own" in container.logs()


def test_the_kernel_sandbox_is_refused_in_the_container_with_a_reason(built):
    """bwrap is not in the image, and could not mount its /proc under the engine anyway
    (docs/security.md, Security model): the start fails with the reason, not a traceback."""
    options = ("--rm", *built.engine.run_options)
    result = built.engine("run", *options, built.image, "--kernel-sandbox=bubblewrap", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Cannot start: --kernel-sandbox=bubblewrap needs bwrap on PATH" in output and "Traceback" not in output
