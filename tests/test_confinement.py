"""Landlock and the seccomp filter, piece by piece (`kernels/confinement/`): the rules
around hidden paths, the structures the kernel takes (exact bytes), the filter's program,
what a process confined by `launch` can no longer do (run here, as root: Landlock and
the filter bind root too), the rooms, and the isolation plan on a Linux without
Landlock's scopes (simulated: the plan is a pure function of the ABI).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels_service.kernels.confinement import landlock, seccomp
from kernels_service.kernels.confinement.launch import CANNOT_CONFINE
from kernels_service.kernels.confinement.rooms import (
    LAUNCH,
    LandlockRooms,
    process_bound,
    why_no_landlock,
    why_no_user_namespace,
)
from kernels_service.kernels.errors import ConfigError
from kernels_service.kernels.isolation import LANDLOCK_WITHOUT_SCOPES_CAN, check_required, exposure, plan_isolation
from kernels_service.kernels.kernel_uids import STALE_AFTER, KernelAccount
from tests.support.attacks import fork_bomb
from tests.support.unprivileged import public_directory

# --- the rules around hidden paths ------------------------------------------------------

names = st.sampled_from(["a", "b", "c", "tmp", "home"])
trees = st.lists(st.lists(names, min_size=1, max_size=4).map(lambda parts: "/" + "/".join(parts)), max_size=12)


def fake_tree(files: list[str]) -> dict[str, list[str]]:
    """Each directory of a tree of `files` (absolute paths), and its entries."""
    tree: dict[str, set[str]] = {"/": set()}
    for path in files:
        parts = path.strip("/").split("/")
        for depth in range(len(parts)):
            parent = "/" + "/".join(parts[:depth])
            tree.setdefault(parent, set()).add(parts[depth])
            tree.setdefault(os.path.join(parent, parts[depth]), set())
    return {directory: sorted(entries) for directory, entries in tree.items()}


def related(path: str, hidden: str) -> bool:
    return path == hidden or landlock.is_below(path, hidden) or landlock.is_below(hidden, path)


@settings(max_examples=200, deadline=None)
@given(trees, st.data())
def test_the_rules_grant_everything_but_what_is_hidden(files, data):
    tree = fake_tree(files)
    paths = sorted(path for path in tree if path != "/")
    hidden = data.draw(st.lists(st.sampled_from(paths), max_size=3)) if paths else []
    listdir = lambda directory: [(os.path.join(directory, name), False) for name in tree[directory]]  # noqa: E731
    granted = landlock.readable_around(hidden, listdir=listdir, realpath=lambda path: path)
    for path in granted:  # no rule reaches a hidden path, nor sits above one
        assert not any(related(path, secret) for secret in hidden), (path, hidden)
    for path in tree:  # everything else is under a rule
        if not any(related(path, secret) for secret in hidden):
            assert any(path == rule or landlock.is_below(path, rule) for rule in granted), (path, granted)
    if not hidden:
        assert granted == ["/"]


def test_a_link_into_a_hidden_directory_is_not_granted():
    tree = {"/": ["tmp", "usr", "lib"], "/tmp": ["rooms", "link", "other"], "/tmp/rooms": [], "/tmp/other": [],
            "/usr": ["lib"], "/usr/lib": []}  # fmt: skip
    links = {"/tmp/link": "/tmp/rooms/kernel", "/lib": "/usr/lib"}
    listdir = lambda directory: [(os.path.join(directory, name), os.path.join(directory, name) in links)  # noqa: E731
                                 for name in tree[directory]]  # fmt: skip
    resolve = lambda path: links.get(path, path)  # noqa: E731
    granted = landlock.readable_around(["/tmp/rooms"], listdir=listdir, realpath=resolve)
    assert sorted(granted) == ["/tmp/other", "/usr", "/usr/lib"]
    hiding_a_link = landlock.readable_around(["/tmp/link"], listdir=listdir, realpath=resolve)
    assert sorted(hiding_a_link) == ["/tmp/other", "/usr", "/usr/lib"], "where it leads is hidden, and it too"


# --- what the kernel takes, byte for byte -----------------------------------------------


def test_the_ruleset_attr_of_each_abi():
    assert landlock.ruleset_attr(1) == struct.pack("<Q", 0x1FFF)
    assert landlock.ruleset_attr(3) == struct.pack("<Q", 0x7FFF)
    assert landlock.ruleset_attr(4) == struct.pack("<QQ", 0x7FFF, 0)
    assert landlock.ruleset_attr(5) == struct.pack("<QQ", 0xFFFF, 0)
    assert landlock.ruleset_attr(6) == struct.pack("<QQQ", 0xFFFF, 0, 3)
    assert landlock.ruleset_attr(7) == landlock.ruleset_attr(6)
    assert landlock.path_beneath_attr(landlock.READ, 5) == bytes([13, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0])


def test_one_call_of_the_filter_byte_for_byte():
    ld, jeq, ret = 0x20, 0x15, 0x06
    expected = [(ld, 0, 0, 0), (jeq, 0, 4, 302),  # prlimit64? else past the block (4 on)
                (ld, 0, 0, 16), (jeq, 0, 1, 0), (ret, 0, 0, 0x7FFF0000),  # pid 0: allow
                (ret, 0, 0, 0x00050001)]  # else EPERM  # fmt: skip
    block = seccomp.call_block(302, (((16, 0),),))
    assert b"".join(block) == b"".join(struct.pack("<HBBI", *fields) for fields in expected)


@pytest.mark.parametrize("machine", sorted(seccomp.ARCHITECTURES))
def test_every_jump_of_the_filter_lands_inside_it(machine):
    code = seccomp.program(machine)
    instructions = [struct.unpack("<HBBI", code[at : at + 8]) for at in range(0, len(code), 8)]
    assert len(code) % 8 == 0 and instructions[-1] == (0x06, 0, 0, 0x7FFF0000)
    for position, (opcode, true, false, _) in enumerate(instructions):
        if opcode & 0x07 == 0x05:  # a jump
            assert position + 1 + max(true, false) < len(instructions)
    with pytest.raises(KeyError):
        seccomp.program("mips")


# --- what a confined process can no longer do -------------------------------------------

CONFINED = r"""
import json, os, resource, sys, threading
import zmq
parent, hidden, own = int(sys.argv[1]), sys.argv[2], sys.argv[3]
found = {}
def attempt(name, action):
    try:
        action()
        found[name] = "done"
    except OSError as error:
        found[name] = type(error).__name__
attempt("read a hidden file", lambda: open(os.path.join(hidden, "secret")).read())
attempt("list a hidden directory", lambda: os.listdir(hidden))
attempt("write outside its own", lambda: open(os.path.join(os.path.dirname(own), "planted"), "w").close())
attempt("signal its parent", lambda: os.kill(parent, 0))
attempt("limit its parent's CPU time", lambda: resource.prlimit(parent, resource.RLIMIT_CPU, (1, 1)))
attempt("make its parent idle", lambda: os.sched_setscheduler(parent, os.SCHED_IDLE, os.sched_param(0)))
attempt("renice its parent", lambda: os.setpriority(os.PRIO_PROCESS, parent, 19))
attempt("renice its uid", lambda: os.setpriority(os.PRIO_USER, 0, 19))
attempt("pin its parent", lambda: os.sched_setaffinity(parent, {0}))
attempt("read its parent's limits", lambda: resource.prlimit(parent, resource.RLIMIT_CPU))
attempt("limit itself", lambda: resource.setrlimit(resource.RLIMIT_CORE, (0, 0)))
attempt("renice itself", lambda: os.nice(1))
attempt("pin itself", lambda: os.sched_setaffinity(0, os.sched_getaffinity(0)))
attempt("write in its own", lambda: open(os.path.join(own, "mine"), "w").write("x"))
attempt("read the system", lambda: open("/etc/hostname").read())
attempt("write a device", lambda: open("/dev/null", "w").write("x"))
attempt("start ZeroMQ threads", lambda: zmq.Context().socket(zmq.PUB).bind("tcp://127.0.0.1:*"))
attempt("start a thread", lambda: threading.Thread(target=lambda: None).start())
found["oom_score_adj"] = open("/proc/self/oom_score_adj").read().strip()
print(json.dumps(found))
"""


def confined_run(plan: dict, *args: str) -> subprocess.CompletedProcess:
    """Our Python, started by `launch` under `plan`, running CONFINED with `args`."""
    command = [sys.executable, "-I", "-S", LAUNCH, json.dumps(plan), sys.executable, "-c", CONFINED, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_confined_process_reaches_nothing_hidden_and_nothing_of_another_process(tmp_path):
    hidden, own = tmp_path / "hidden", tmp_path / "own"
    hidden.mkdir()
    own.mkdir()
    (hidden / "secret").write_text("s")
    plan = {"abi": landlock.abi_version(), "hidden": [str(hidden)], "own": str(own), "readable": []}
    before = os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0)
    result = confined_run(plan, str(os.getpid()), str(hidden), str(own))
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    refused = ["read a hidden file", "list a hidden directory", "write outside its own", "signal its parent",
               "limit its parent's CPU time", "make its parent idle", "renice its parent", "renice its uid",
               "pin its parent"]  # fmt: skip
    assert {name: found[name] for name in refused} == dict.fromkeys(refused, "PermissionError")
    allowed = [name for name in found if name not in refused and name != "oom_score_adj"]
    assert {name: found[name] for name in allowed} == dict.fromkeys(allowed, "done")
    assert found["oom_score_adj"] == "1000"
    assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0), os.sched_getaffinity(0)) == before
    assert not (tmp_path / "planted").exists() and (own / "mine").read_text() == "x"


def test_a_kernel_that_cannot_be_confined_does_not_run(tmp_path):
    """An ABI of 0 handles nothing: Linux refuses the ruleset, and the kernel never runs."""
    plan = {"abi": 0, "hidden": [], "own": str(tmp_path), "readable": []}
    result = confined_run(plan, "1", str(tmp_path), str(tmp_path))
    assert result.returncode == CANNOT_CONFINE and result.stdout == ""
    assert result.stderr.startswith("kernels-service: cannot confine the kernel: ") and "Traceback" not in result.stderr


# --- a room's kernel's processes, counted in a user namespace of its own -----------------

FORKS = fork_bomb(100)


@pytest.fixture
def public(tmp_path: Path):
    """A directory every uid may read (tmp_path's parents are private)."""
    directory = public_directory("confinement-")
    yield directory
    shutil.rmtree(directory)


def forks_as_another_uid(directory: Path, processes: int, hard_limit: int | None = None) -> dict:
    """A program that forks up to 100 processes, started by `launch` as a uid of no account
    that already runs 40 other processes (which a per-uid count would include), under the
    service's `hard_limit` of processes if given. The
    system's Python runs both, and the launcher is a copy any uid may read (ours may be
    under a private directory)."""
    uid = "61517"
    launcher, own, hidden = directory / "launcher", directory / "own", directory / "hidden"
    shutil.copytree(os.path.dirname(LAUNCH), launcher, ignore=shutil.ignore_patterns("__pycache__"))
    own.mkdir()
    hidden.mkdir()
    os.chown(own, int(uid), int(uid))
    os.chmod(launcher, 0o755)
    plan = {"abi": landlock.abi_version(), "hidden": [str(hidden)], "own": str(own), "readable": [],
            "processes": processes}  # fmt: skip
    as_uid = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    others = subprocess.Popen([*as_uid, "sh", "-c", "for i in $(seq 40); do sleep 60 & done; wait"])
    try:
        wait_for_processes_of(int(uid), 40)
        python = SYSTEM_PYTHON
        limit = [] if hard_limit is None else ["prlimit", f"--nproc={hard_limit}:{hard_limit}", "--"]
        command = [*as_uid, *limit, python, "-I", "-S", str(launcher / "launch.py"), json.dumps(plan)]
        command += [python, "-c", FORKS]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
    finally:
        subprocess.run(["pkill", "-KILL", "-U", uid])
        others.wait(30)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


#: Debian's Python, which any uid may run.
SYSTEM_PYTHON = "/usr/bin/python3"


def wait_for_processes_of(uid: int, count: int) -> None:
    deadline = time.monotonic() + 30
    while sum(1 for pid in os.listdir("/proc") if pid.isdigit() and owner(pid) == uid) < count:
        assert time.monotonic() < deadline, f"uid {uid} never ran {count} processes"
        time.sleep(0.05)


def owner(pid: str) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1


def test_a_rooms_kernel_forks_up_to_its_bound_whatever_else_its_uid_runs(public):
    """Linux counts RLIMIT_NPROC per uid and user namespace: in a namespace of its own, the
    kernel's count is its own (40 processes of its uid elsewhere do not count)."""
    assert why_no_user_namespace() is None, "this machine allows user namespaces (the test needs them)"
    found = forks_as_another_uid(public, 30)
    assert found == {"forked": 29, "error": "BlockingIOError"}, "its own process is the 30th"


def test_a_lower_hard_limit_of_the_service_stays_and_the_kernel_runs(public):
    """A service under a hard limit below the bound: the kernel runs (raising the limit
    would be refused, and the kernel would not), and that limit, which Linux checks
    against every process of the uid in the service's namespace, stays: here the uid's
    40 others are past it already, so the kernel may not fork at all."""
    assert forks_as_another_uid(public, 30, hard_limit=20) == {"forked": 0, "error": "BlockingIOError"}


def test_without_a_bound_the_same_program_forks_all_it_wants(public):
    assert forks_as_another_uid(public, 0) == {"forked": 100, "error": None}


def test_where_no_user_namespace_is_allowed_processes_are_unbounded_and_said(caplog):
    assert process_bound(512, lambda: "no user namespace of its own: Operation not permitted") == 0
    assert "processes are not bounded (no user namespace of its own: Operation not permitted)" in caplog.text
    assert process_bound(512, lambda: None) == 512
    assert process_bound(0, lambda: "never asked") == 0


# --- rooms --------------------------------------------------------------------------------


def test_a_starting_service_removes_the_rooms_of_kernels_that_are_gone(tmp_path):
    root = tmp_path / "rooms"
    rooms = LandlockRooms(str(root), 7, [])
    rooms.prepare()
    assert root.stat().st_mode & 0o777 == 0o700
    alive, gone, young, old = (rooms.take() for _ in range(4))
    rooms.launched(alive, os.getpid())
    Path(gone.directory + ".pid").write_text(f"{os.getpid()} 1\n")  # a pid reused since: another start time
    os.utime(old.directory, (time.time() - STALE_AFTER - 5,) * 2)
    rooms.prepare()
    assert [os.path.exists(room.directory) for room in (alive, gone, young, old)] == [True, False, True, False]
    assert not os.path.exists(gone.directory + ".pid")
    assert os.stat(alive.home).st_mode & 0o777 == 0o700 and os.stat(alive.tmp).st_mode & 0o777 == 0o700


def test_a_root_of_rooms_that_is_not_the_services_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "rooms").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="is not a directory of the service's uid"):
        LandlockRooms(str(tmp_path / "rooms"), 7, []).prepare()


def test_a_confined_kernels_command_carries_its_plan(tmp_path):
    rooms = LandlockRooms(str(tmp_path / "rooms"), 7, ["/secret"], readable=["/opt/extra"], processes=300)
    account = KernelAccount(os.getuid(), str(tmp_path / "rooms" / "k"))
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"/srv/lib{os.pathsep}relative"}
    command = rooms.command(["python3", "-c", "pass"], account, env, "/kernelspecs/python3")
    assert command[:4] == [sys.executable, "-I", "-S", LAUNCH] and command[5:] == ["python3", "-c", "pass"]
    plan = json.loads(command[4])
    assert plan["abi"] == 7 and plan["own"] == account.directory and plan["hidden"] == [rooms.root, "/secret"]
    assert plan["processes"] == 300
    for readable in ("/opt/extra", "/kernelspecs/python3", "/srv/lib", os.path.realpath(sys.base_prefix)):
        assert readable in plan["readable"]
    assert "relative" not in plan["readable"]
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    linked = rooms.command([str(venv / "bin" / "python"), "-c", "pass"], account, env, "")
    readable = json.loads(linked[4])["readable"]
    assert str(venv) in readable, "the environment, which holds the packages"
    assert os.path.dirname(os.path.dirname(os.path.realpath(sys.executable))) in readable, "and the Python it leads to"
    missing = ["no-such-program-anywhere", "-f", "x"]
    assert rooms.command(missing, account, env, "") == missing, "left to fail its launch as it would unconfined"
    assert rooms.ipc_prefix(account) == "@" + account.directory + "/ipc"


# --- the plan where Landlock cannot do it all -----------------------------------------------


def spec(argv: list[str]) -> dict:
    return {"spec": {"argv": argv, "metadata": {}}, "resource_dir": "/k"}


def plan_with(abi: int, transport: str = "auto") -> list:
    rooms = LandlockRooms("/nonexistent", abi, [])
    return plan_isolation({"python3": spec(["python3"])}, policy="auto", sandbox="", transport=transport,
                          separation=rooms, why_not_apart="")  # fmt: skip


def test_landlock_without_its_scopes_is_said_and_refused_when_required():
    """Linux 6.1 to 6.11 (Debian 12's is 6.1): files and /proc are closed, signals are not."""
    (entry,) = plan_with(5)
    assert (entry.mechanism, entry.apart, entry.why) == ("landlock", False, "Landlock ABI 5, without signal scoping")
    assert exposure([entry]) == f"Kernels of python3 are not kept apart: code in one can {LANDLOCK_WITHOUT_SCOPES_CAN}"
    with pytest.raises(ConfigError, match="not kept apart: python3: landlock \\(Landlock ABI 5, without signal"):
        check_required([entry])
    (scoped,) = plan_with(6)
    assert scoped.apart and str(scoped) == "python3: landlock (ABI 6)"
    check_required([scoped])
    (plain_tcp,) = plan_with(7, transport="tcp")
    assert not plain_tcp.apart and "read every other kernel's output" in exposure([plain_tcp])


def test_where_landlock_cannot_be_used_the_service_says_why():
    assert why_no_landlock(7, 1000, True) is None
    assert "no Landlock" in why_no_landlock(0, 1000, True)
    assert "root's kernels" in why_no_landlock(7, 0, True)
    assert "architecture" in why_no_landlock(7, 1000, False)
