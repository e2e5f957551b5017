"""Kernels apart by default: code in one kernel attacks the service and another kernel,
from inside a real kernel of a real service (`--kernel-isolation`).

The service runs as root here (as in CI, and as the image may), so each local kernel gets
a uid of its own (`kernels/kernel_uids.py`); the kernels run the system's Python with our
ipykernel where every uid may read it (`tests/support/shared_python.py`). Every attempt
must fail, and afterwards the service and the other kernel must still answer. The same
attack against kernels that share the service's uid (`--kernel-isolation=none`, what
every earlier version did) reaches the other kernel: the attack can succeed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kernels_service.builder import build
from kernels_service.config import ServiceConfig
from kernels_service.hardening import KEPT_CAPABILITIES
from kernels_service.kernels.isolation import SHARED_UID_CAN
from kernels_service.kernels.kernel_uids import DEFAULT_ROOT, uids_in_use
from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import Service, descendants, identified, kill_left, running_service, tracebacks
from tests.support.attacks import MY_ADDRESSES, attack, knock_on_each, run_in_kernel, who
from tests.support.channels import interrupted_reply
from tests.support.node import run_node
from tests.support.paths import ROOT
from tests.support.shared_python import write_shared_kernelspec
from tests.support.waiting import wait_until

REQUIRED = "--kernel-isolation=required"


@pytest.fixture
def shared_python(tmp_path: Path) -> dict[str, str]:
    """The environment of a service whose `python3` kernelspec any uid may run."""
    write_shared_kernelspec(tmp_path / "jupyter")
    return {"JUPYTER_PATH": str(tmp_path / "jupyter")}


def test_one_kernel_reaches_neither_the_service_nor_another_kernel(shared_python):
    with running_service("--initial-kernels=2", "--pool-size=0", REQUIRED, env=shared_python) as service:
        first, second = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        attacker, victim = ChannelsClient(service, first), ChannelsClient(service, second)
        victim.execute("x = 'what the victim set'")
        victim.execute("import os; open(os.path.join(os.environ['HOME'], 'notes'), 'w').write('mine')")
        other, mine = who(victim), who(attacker)
        found = run_in_kernel(attacker, attack(other, service.pid, harmless=False))
        assert found == {**{name: "PermissionError" for name in found}, "ptrace the other": "Operation not permitted"}
        assert len(found) == 6 + 4 + 1 + 1 + 3 + 1 + 4, found
        channels = {**run_in_kernel(victim, MY_ADDRESSES)}
        assert run_in_kernel(attacker, knock_on_each(channels)) == ["CURVE: closed"] * 5
        # each kernel as a uid of its own, with no groups, its own private home and TMPDIR
        assert mine["uid"] != other["uid"] and mine["uid"] != 0 and other["uid"] != 0
        assert mine["gid"] == mine["uid"] and mine["groups"] == [] and mine["umask"] == 0o077
        assert mine["home"] == mine["cwd"] and mine["home"].startswith(DEFAULT_ROOT)
        for path in (other["home"], other["tmp"], os.path.dirname(other["connection_file"])):
            assert os.stat(path).st_mode & 0o777 == 0o700 and os.stat(path).st_uid == other["uid"], path
        assert os.stat(other["connection_file"]).st_mode & 0o777 == 0o600
        # afterwards the service and the victim answer, with what the victim had
        assert service.request("GET", "api/kernels")[0] == 200
        assert stream_text(victim.execute("print(x)")[1]) == "what the victim set\n"
        notes = "print(open(os.path.join(os.environ['HOME'], 'notes')).read())"
        assert stream_text(victim.execute(notes)[1]) == "mine\n"
        assert "planted" not in stream_text(victim.execute("print(os.listdir(os.environ['TMPDIR']))")[1])
        attacker.close()
        victim.close()
        assert "Kernel isolation: python3: own uid (from 60000-61183)" in service.output()
        assert not tracebacks(service.output())


def test_the_same_attack_reaches_kernels_that_share_the_services_uid(shared_python):
    """What `--kernel-isolation=none` (every earlier version) lets a kernel do: the attack
    above is not toothless. Harmless attempts only: signals and ptrace would work too."""
    options = ("--initial-kernels=2", "--pool-size=0", "--kernel-isolation=none")
    with running_service(*options, env=shared_python) as service:
        first, second = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        attacker, victim = ChannelsClient(service, first), ChannelsClient(service, second)
        other = who(victim)
        found = run_in_kernel(attacker, attack(other, service.pid, harmless=True))
        for reached in ("read its connection file", "read its /proc environ", "read its /proc maps", "list its home"):
            assert found[reached] == "done", found
        assert SHARED_UID_CAN in service.output(), "the start says what such kernels can do"
        attacker.close()
        victim.close()


@pytest.mark.parametrize("transport", ["auto", "ipc"])
def test_a_kernel_of_its_own_uid_is_interrupted_restarted_and_stopped_without_a_trace(shared_python, transport):
    options = ("--initial-kernels=1", "--pool-size=0", REQUIRED, f"--kernel-transport={transport}")
    with running_service(*options, env=shared_python) as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        client.execute("x = 41")
        before = who(client)
        interrupt = lambda: service.request("POST", f"api/kernels/{kernel}/interrupt")[0]  # noqa: E731
        reply = interrupted_reply(interrupt, client, service.output)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert stream_text(client.execute("print(x + 1)")[1]) == "42\n", "the interrupt killed the kernel"
        if transport == "ipc":
            sockets = run_in_kernel(client, MY_ADDRESSES)
            assert os.path.dirname(sockets["ip"]) == os.path.dirname(before["connection_file"])
        assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
        assert stream_text(client.execute("print('x' in dir())", timeout=60)[1]) == "False\n"
        after = who(client)
        assert after["uid"] == before["uid"] and after["pid"] != before["pid"], "a restart keeps the kernel's uid"
        client.close()
        assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
        assert not os.path.exists(os.path.dirname(before["connection_file"])), "the kernel's directory outlived it"
        assert before["uid"] not in uids_in_use()
        assert not descendants(service.pid)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_kept_kernel_keeps_its_uid_across_service_restarts(shared_python, tmp_path, signum):
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    options = ("--initial-kernels=1", "--pool-size=0", REQUIRED, "--keep-kernels", f"--kernel-store={store / 'k'}")
    first = Service(*options, env=shared_python)
    before: dict = {}
    kept_kernel: dict[int, int] = {}  # its process, once known
    try:
        (kernel,) = [k["id"] for k in first.request("GET", "api/kernels")[2]]
        client = ChannelsClient(first, kernel)
        client.execute("y = 'kept'")
        before.update(who(client))
        kept_kernel.update(identified([before["pid"]]))
        client.close()
        if signum == signal.SIGKILL:
            first.process.kill()
            first.process.wait(30)
        else:
            assert first.stop(signum) == 0, first.output()
        with running_service(*options, env=shared_python, port=first.port) as service:
            assert [k["id"] for k in service.request("GET", "api/kernels")[2]] == [kernel]
            client = ChannelsClient(service, kernel)
            assert stream_text(client.execute("print(y)")[1]) == "kept\n"
            assert who(client) == before, "the same process, uid and directory"
            assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
            assert who(client)["uid"] == before["uid"], "a taken-up kernel restarts as its own uid"
            client.close()
            assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
            assert not os.path.exists(os.path.dirname(before["connection_file"]))
    finally:
        if first.process.poll() is None:
            first.stop(signal.SIGINT)
        kill_left(kept_kernel)  # a failure left it running


def test_without_the_capabilities_required_isolation_refuses_to_start():
    """A service without CAP_SETUID/CAP_SETGID (root with its capabilities dropped, as a
    non-root user is) cannot give kernels uids: `required` says why and exits 1."""
    command = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--", sys.executable, str(ROOT / "kernels.py"),
               "--port=0", REQUIRED]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Cannot start: --kernel-isolation=required, but kernels are not kept apart" in output
    assert "lacks CAP_SETUID and CAP_SETGID" in output and "Traceback" not in output


def test_a_kernelspec_no_other_uid_can_run_is_said_and_refused_when_required(tmp_path):
    """The tests' own Python (under a private directory) cannot run as another uid: the
    start says so of that kernelspec; `required` refuses."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "python").symlink_to(sys.executable)
    from tests.support.kernelspecs import write_kernelspec

    write_kernelspec(tmp_path / "jupyter", "closed", [str(private / "python"), "-m", "ipykernel_launcher", "-f",
                                                      "{connection_file}"])  # fmt: skip
    env = {**os.environ, "JUPYTER_PATH": str(tmp_path / "jupyter")}
    command = [sys.executable, str(ROOT / "kernels.py"), "--port=0", REQUIRED, "--kernel-name=closed"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "closed: service's uid (its program" in output, output
    shown = subprocess.run([*command[:2], "--show-config-json"], capture_output=True, text=True, timeout=60, env=env)
    isolation = json.loads(shown.stdout)["kernelspec.closed.isolation"]["value"]
    assert isolation.startswith("closed: service's uid (its program") and "cannot be run by another uid" in isolation


@pytest.mark.parametrize("protocol", ["v1", "legacy"])
def test_jupyterlab_restarts_a_kernel_of_its_own_uid_5_times(shared_python, protocol):
    with running_service("--initial-kernels=1", "--pool-size=0", REQUIRED, env=shared_python) as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        result = run_node("jupyterlab_restarts.js", protocol, service.http_url(""), service.token, kernel, "5",
                          timeout=620)  # fmt: skip
        assert result["restarts"] == 5  # 20 in a row, each protocol: tests/test_restarts.py
        client = ChannelsClient(service, kernel)
        assert who(client)["uid"] != 0
        client.close()
        assert not tracebacks(service.output())


def test_pooled_and_culled_kernels_have_their_own_uids_and_leave_nothing(shared_python):
    options = ("--initial-kernels=0", "--pool-size=1", REQUIRED, "--cull-idle-timeout=2", "--cull-interval=1")
    with running_service(*options, env=shared_python) as service:
        wait_until(lambda: service.request("GET", "api/status")[2]["pool"] == 1, 60, "a pooled kernel")
        status, _, model = service.request("POST", "api/kernels", {})
        assert status == 201, model
        client = ChannelsClient(service, model["id"])
        handed = who(client)
        client.close()
        assert handed["uid"] != 0 and handed["home"].startswith(DEFAULT_ROOT)
        wait_until(lambda: model["id"] not in [k["id"] for k in service.request("GET", "api/kernels")[2]], 60,
                   "the idle kernel culled")  # fmt: skip
        wait_until(lambda: not os.path.exists(handed["home"]), 30, "the culled kernel's directory removed")
        assert handed["uid"] not in uids_in_use()


PRIVILEGES = r"""
import json, os
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
try:
    os.setuid(0)
    became_root = True
except PermissionError:
    became_root = False
print(json.dumps({"CapEff": status["CapEff"], "CapPrm": status["CapPrm"], "NoNewPrivs": status["NoNewPrivs"],
                  "became_root": became_root}))
"""


def root_capabilities() -> str:
    """What this (root) test process holds: the most a service it starts can keep."""
    return proc_status(os.getpid())["CapEff"]


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as status:
        return dict(line.rstrip("\n").split(":\t", 1) for line in status if ":\t" in line)


def test_the_root_service_keeps_only_what_it_needs_and_its_kernels_gain_nothing(shared_python):
    with running_service("--initial-kernels=1", "--pool-size=0", REQUIRED, env=shared_python) as service:
        kept = f"{sum(1 << number for number in KEPT_CAPABILITIES.values()) & int(root_capabilities(), 16):016x}"
        status = proc_status(service.pid)
        assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == kept, status
        assert status["CapInh"] == status["CapAmb"] == "0" * 16 and status["NoNewPrivs"] == "1", status
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        found = run_in_kernel(client, PRIVILEGES)
        client.close()
        assert found == {"CapEff": "0" * 16, "CapPrm": "0" * 16, "NoNewPrivs": "1", "became_root": False}


def test_building_a_service_leaves_the_capabilities_of_the_process_that_builds_it():
    """Only the service's own process (serving.serve) drops root's powers: a test or a
    tool that builds a service in its own process keeps its capabilities."""
    before = proc_status(os.getpid())
    server = build(ServiceConfig(port=0, initial_kernels=0, pool_size=0, token="t"))
    try:
        after = proc_status(os.getpid())
        assert (after["CapEff"], after["CapBnd"], after["NoNewPrivs"]) == (
            before["CapEff"], before["CapBnd"], before["NoNewPrivs"])  # fmt: skip
    finally:
        asyncio.run(server.stop(keep=False))
