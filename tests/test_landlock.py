"""Kernels apart under an unprivileged service: Landlock rooms (`kernels/confinement/`).

The service runs as a uid of no account, with no capability (`setpriv`, as an ordinary
user's `python kernels.py` does), so it cannot give kernels uids of their own: every
kernel shares its uid, and Landlock (with a seccomp filter) is what keeps them apart.
Code in one kernel attacks the service and another kernel, from inside a real kernel;
every attempt must fail, and afterwards the service and the other kernel must still
answer. The same attack against the same service with `--kernel-isolation=none`
reaches the other kernel: the attack can succeed.

Signal and abstract-socket scoping need Landlock ABI 6 (Linux 6.12); these tests need a
Linux that has it, and fail (never skip) on one that does not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernels_service.kernels.confinement import landlock
from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import Service, descendants, identified, kill_left, running_service, tracebacks
from tests.support.attacks import FORK_BOMB, MEMORY_BOMB, MY_ADDRESSES, attack, knock_on_each, run_in_kernel, who
from tests.support.channels import interrupted_reply
from tests.support.node import run_node
from tests.support.shared_python import write_shared_kernelspec
from tests.support.unprivileged import (
    SERVICE_UID,
    copy_of_the_service,
    owned_directory,
    public_directory,
    unprivileged_options,
)
from tests.support.waiting import wait_until

REQUIRED = "--kernel-isolation=required"


def rooms_of(unprivileged: dict) -> str:
    """The unprivileged service's root of rooms: in its home (it has no XDG_RUNTIME_DIR)."""
    return os.path.join(unprivileged["env"]["HOME"], ".local", "state", "kernels-service")


@pytest.fixture(scope="module")
def code() -> Iterator[Path]:
    assert landlock.abi_version() >= landlock.SIGNAL_SCOPING_ABI, "these tests need Linux 6.12 or later"
    copy = copy_of_the_service(public_directory("code-"))
    yield copy
    shutil.rmtree(copy)


@pytest.fixture
def unprivileged(code: Path) -> Iterator[dict]:
    """`Service` options for the unprivileged service: launcher and environment."""
    jupyter = public_directory("jupyter-")
    write_shared_kernelspec(jupyter)
    home = owned_directory(SERVICE_UID, "home-")
    yield unprivileged_options(code, jupyter, home)
    for directory in (jupyter, home):
        shutil.rmtree(directory)


def room_of(kernel: dict) -> str:
    """A kernel's room: its connection file's directory (WHO_AM_I's JSON)."""
    return os.path.dirname(kernel["connection_file"])


@pytest.mark.parametrize("transport", ["auto", "ipc"])
def test_one_kernel_reaches_neither_the_service_nor_another_kernel(unprivileged, transport):
    options = ("--initial-kernels=2", "--pool-size=0", REQUIRED, f"--kernel-transport={transport}")
    with running_service(*options, **unprivileged) as service:
        first, second = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        attacker, victim = ChannelsClient(service, first), ChannelsClient(service, second)
        victim.execute("x = 'what the victim set'")
        victim.execute("import os; open(os.path.join(os.environ['HOME'], 'notes'), 'w').write('mine')")
        other, mine = who(victim), who(attacker)
        found = run_in_kernel(attacker, attack(other, service.pid, harmless=False))
        assert found == {**{name: "PermissionError" for name in found}, "ptrace the other": "Operation not permitted"}
        assert len(found) == 6 + 4 + 1 + 1 + 3 + 1 + 4, found
        channels = run_in_kernel(victim, MY_ADDRESSES)
        knocked = run_in_kernel(attacker, knock_on_each(channels))
        if transport == "ipc":  # abstract sockets, which Landlock's scope keeps to their kernel
            assert channels["ip"].startswith("@" + room_of(other)) and knocked == ["PermissionError"] * 5
        else:
            assert knocked == ["CURVE: closed"] * 5
        # both as the service's uid, each in a room of its own under the service's root
        assert mine["uid"] == other["uid"] == SERVICE_UID and mine["groups"] == [] and mine["umask"] == 0o077
        assert room_of(mine) != room_of(other) and mine["home"] == mine["cwd"] == room_of(mine) + "/home"
        rooms = rooms_of(unprivileged)
        assert os.path.dirname(room_of(other)) == rooms and os.stat(rooms).st_mode & 0o777 == 0o700
        # afterwards the service and the victim answer, with what the victim had
        assert service.request("GET", "api/kernels")[0] == 200
        assert stream_text(victim.execute("print(x)")[1]) == "what the victim set\n"
        notes = "print(open(os.path.join(os.environ['HOME'], 'notes')).read())"
        assert stream_text(victim.execute(notes)[1]) == "mine\n"
        attacker.close()
        victim.close()
        assert f"Kernel isolation: python3: landlock (ABI {landlock.abi_version()})" in service.output()
        assert not tracebacks(service.output())


def test_the_same_attack_reaches_kernels_of_an_unprivileged_service_without_isolation(unprivileged):
    """What `--kernel-isolation=none` (every earlier version) lets such a kernel do. Harmless
    attempts only: signals and ptrace would work too."""
    with running_service("--initial-kernels=2", "--pool-size=0", "--kernel-isolation=none", **unprivileged) as service:
        first, second = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        attacker, victim = ChannelsClient(service, first), ChannelsClient(service, second)
        found = run_in_kernel(attacker, attack(who(victim), service.pid, harmless=True))
        for reached in ("read its connection file", "read its /proc environ", "read its /proc maps"):
            assert found[reached] == "done", found
        attacker.close()
        victim.close()


def test_a_confined_kernel_is_interrupted_restarted_and_stopped_without_a_trace(unprivileged):
    options = ("--initial-kernels=1", "--pool-size=0", REQUIRED, "--kernel-transport=ipc")
    with running_service(*options, **unprivileged) as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        client.execute("x = 41")
        before = who(client)
        interrupt = lambda: service.request("POST", f"api/kernels/{kernel}/interrupt")[0]  # noqa: E731
        reply = interrupted_reply(interrupt, client, service.output)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert stream_text(client.execute("print(x + 1)")[1]) == "42\n", "the interrupt killed the kernel"
        msg_id = client.send("shell", "execute_request", {"code": "print('x' + input('? '))", "allow_stdin": True})
        assert client.recv_until(lambda m: m["channel"] == "stdin")[-1]["content"]["prompt"] == "? "
        client.send("stdin", "input_reply", {"value": "yz"})
        assert stream_text(client.wait_for(msg_id)[1]) == "xyz\n", "stdin over the abstract sockets"
        assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
        assert stream_text(client.execute("print('x' in dir())", timeout=60)[1]) == "False\n"
        after = who(client)
        assert room_of(after) == room_of(before) and after["pid"] != before["pid"], "a restart keeps the room"
        client.close()
        assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
        assert not os.path.exists(room_of(before)) and not os.path.exists(room_of(before) + ".pid")
        assert not descendants(service.pid)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_kept_kernel_keeps_its_room_across_service_restarts(unprivileged, signum):
    home = Path(unprivileged["env"]["HOME"])
    options = ("--initial-kernels=1", "--pool-size=0", REQUIRED, "--keep-kernels", f"--kernel-store={home / 'k'}")
    first = Service(*options, **unprivileged)
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
        with running_service(*options, **unprivileged, port=first.port) as service:
            assert [k["id"] for k in service.request("GET", "api/kernels")[2]] == [kernel]
            client = ChannelsClient(service, kernel)
            assert stream_text(client.execute("print(y)")[1]) == "kept\n"
            assert who(client) == before, "the same process and room"
            assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
            assert room_of(who(client)) == room_of(before), "a taken-up kernel restarts in its room"
            client.close()
            assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
            assert not os.path.exists(room_of(before))
    finally:
        if first.process.poll() is None:
            first.stop(signal.SIGINT)
        kill_left(kept_kernel)  # a failure left it running


def test_pooled_and_culled_kernels_have_rooms_and_leave_nothing(unprivileged):
    options = ("--initial-kernels=0", "--pool-size=1", REQUIRED, "--cull-idle-timeout=2", "--cull-interval=1")
    with running_service(*options, **unprivileged) as service:
        wait_until(lambda: service.request("GET", "api/status")[2]["pool"] == 1, 60, "a pooled kernel")
        status, _, model = service.request("POST", "api/kernels", {})
        assert status == 201, model
        client = ChannelsClient(service, model["id"])
        handed = who(client)
        client.close()
        assert os.path.dirname(room_of(handed)) == rooms_of(unprivileged)
        wait_until(lambda: model["id"] not in [k["id"] for k in service.request("GET", "api/kernels")[2]], 60,
                   "the idle kernel culled")  # fmt: skip
        wait_until(lambda: not os.path.exists(room_of(handed)), 30, "the culled kernel's room removed")


#: Each bomb: its bound, its code, and what the bomb's kernel must report. A room's kernel
#: counts its processes in a user namespace of its own: the service's and the other
#: kernel's processes of the same uid do not count, its own threads do.
BOMBS = {
    "memory": ("--kernel-memory-limit=512M", MEMORY_BOMB, lambda found: found["error"] == "MemoryError"
               and found["taken_mib"] <= 512),
    "fork": ("--kernel-process-limit=100", FORK_BOMB, lambda found: found["error"] == "BlockingIOError"
             and 50 < found["forked"] < 100),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_bomb_fails_in_its_kernel_and_the_others_keep_their_variables(unprivileged, kind):
    bound, code, expected = BOMBS[kind]
    with running_service("--initial-kernels=2", "--pool-size=0", REQUIRED, bound, **unprivileged) as service:
        first, second = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        bomber, bystander = ChannelsClient(service, first), ChannelsClient(service, second)
        bystander.execute("z = 'still here'")
        found = run_in_kernel(bomber, code)
        assert expected(found), found
        assert stream_text(bomber.execute("print(6 * 7)")[1]) == "42\n", "the bomb's kernel answers on"
        assert service.start_kernel()
        assert stream_text(bystander.execute("print(z)")[1]) == "still here\n"
        bomber.close()
        bystander.close()
        assert "processes are counted in a user namespace of its own" in service.output()


@pytest.mark.parametrize("protocol", ["v1", "legacy"])
def test_jupyterlab_restarts_a_confined_kernel_5_times(unprivileged, protocol):
    with running_service("--initial-kernels=1", "--pool-size=0", REQUIRED, **unprivileged) as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        room = room_of(who(client))
        client.close()
        result = run_node("jupyterlab_restarts.js", protocol, service.http_url(""), service.token, kernel, "5",
                          timeout=620)  # fmt: skip
        assert result["restarts"] == 5  # 20 in a row, each protocol: tests/test_restarts.py
        client = ChannelsClient(service, kernel)
        assert room_of(who(client)) == room, "every restart in the kernel's room"
        client.close()
        assert not tracebacks(service.output())


def test_show_config_names_landlock_for_an_unprivileged_service(unprivileged):
    """What --show-config says, from the service as it would run, making nothing on disk."""
    command = [*unprivileged["launcher"], "--show-config-json"]
    environment = {**os.environ, **unprivileged["env"]}
    home = unprivileged["cwd"]
    shown = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment, cwd=home)
    assert shown.returncode == 0, shown.stderr
    isolation = json.loads(shown.stdout)["kernelspec.python3.isolation"]["value"]
    assert isolation == f"python3: landlock (ABI {landlock.abi_version()})"
    assert not os.path.exists(rooms_of(unprivileged)), "--show-config makes nothing"
