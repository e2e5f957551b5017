"""Code in a kernel, and other users of the machine, against the service: tried from where
they stand, through the real service and real kernels.

The tests run as root, and root reads every process's /proc files whatever the service
does (CAP_SYS_PTRACE). An operator runs the service as a user of its own, so the kernel
here is made that user's equal: the service is started with no capabilities at all
(`setpriv`), its kernels inherit none, and a kernel is then exactly a process of the
service's uid. The other user is `nobody`, by `setpriv` too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import (
    LAUNCHER,
    TOKEN,
    Service,
    descendants,
    identified,
    running_service,
    still_running,
)
from tests.support.attacks import (
    DRIVE_THE_OTHER,
    MY_ADDRESSES,
    SERVICE_FILES,
    knock_on_each,
    read_the_service,
    run_in_kernel,
)
from tests.support.paths import ROOT
from tests.support.shared_python import write_shared_kernelspec
from tests.support.waiting import wait_until

WITHOUT_PRIVILEGES = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--")
AS_NOBODY = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--")
SYSTEM_PYTHON = "/usr/bin/python3"  # one `nobody` may run (the tests' own may sit under /root)


def test_a_kernel_reads_nothing_of_the_service_and_finds_the_token_nowhere():
    """The token is this service's own: the tests' usual token may be on the command line
    of a client of another test run on the machine (a node script's argument), which the
    kernel would rightly find."""
    secret, token = "db-password-9876543210", f"token-of-this-test-{uuid.uuid4().hex}"
    with running_service(
        "--initial-kernels=1", launcher=(*WITHOUT_PRIVILEGES, *LAUNCHER), env={"DB_PASSWORD": secret}, token=token
    ) as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        found = run_in_kernel(client, read_the_service(token, secret))
        client.close()
    assert found["service"] == service.pid
    assert found["tried"] == dict.fromkeys(SERVICE_FILES, "denied"), found
    assert found["holding_a_secret"] == [], found
    assert found["uid"] == os.getuid()  # the service's uid, not another one


#: The service's dependencies: none may be loaded while the process is still dumpable.
DEPENDENCIES = ("tornado", "zmq", "jupyter_client", "jupyter_core", "traitlets", "kernels_service/app.py")


def test_every_start_of_the_service_is_undumpable_before_it_loads_anything_else(tmp_path: Path):
    """Until its prctl, any process of the service's uid may read the service's environment
    (a kernel of another service read a secret so, once, while a service started in CI).
    So each execve of the service (the entry point re-executes itself once, for its
    allocator) must make the process undumpable before it opens any of its dependencies.
    strace shows the order of the syscalls; `benchmarks/start_exposure.py` measures the
    window that remains (the interpreter's own start)."""
    assert shutil.which("strace"), "strace is missing (.ci/run installs Debian's strace)"
    trace = tmp_path / "trace"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONMALLOC"}  # as by default: re-executed
    subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=execve,prctl,openat", "-o", str(trace), *LAUNCHER, "--show-config"],
        env=env, cwd=ROOT, capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    lines = trace.read_text().splitlines()
    service = lines[0].split()[0]
    starts: list[list[str]] = []  # the service's syscalls, one list per execve
    for line in lines:
        pid, call = line.split(None, 1)
        if pid == service and call.startswith("execve(") and call.endswith("= 0"):
            starts.append([])
        elif pid == service and starts:
            starts[-1].append(call)
    assert len(starts) == 2, f"expected the start and its re-execution, got {len(starts)} execve"
    for number, calls in enumerate(starts, 1):
        made = [i for i, call in enumerate(calls) if call.startswith("prctl(PR_SET_DUMPABLE, SUID_DUMP_DISABLE)")]
        assert made, f"execve {number}: never made undumpable"
        early = [call for call in calls[: made[0]] if call.startswith("openat(") and opens_a_dependency(call)]
        assert early == [], f"execve {number}: opened while dumpable: {early[:3]}"


def opens_a_dependency(call: str) -> bool:
    return any(f"/{name}" in call for name in DEPENDENCIES)


@pytest.mark.parametrize("confinement", ["sandbox", "own uid"])
def test_no_process_the_service_starts_inherits_its_secrets(tmp_path: Path, confinement: str):
    """Every program the service runs (kernels, their sandbox, the sandbox's probe at start,
    the probe of whether a kernel's uid may run its program, the bounds' prlimit, what a
    kernel runs in turn) gets an environment chosen for it, never the service's: strace
    records the environment of every execve but the service's own, and none holds the
    token or the operator's secret."""
    assert shutil.which("strace"), "strace is missing (.ci/run installs Debian's strace)"
    secret, trace = "db-password-5432109876", tmp_path / "trace"
    tracing = ("strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=execve", "-v", "-s", "100000", "-o", str(trace))
    if confinement == "sandbox":
        options, env = ("--kernel-sandbox=bubblewrap",), {"DB_PASSWORD": secret}
    else:
        write_shared_kernelspec(tmp_path / "jupyter")
        options, env = (
            ("--kernel-isolation=required",),
            {"DB_PASSWORD": secret, "JUPYTER_PATH": str(tmp_path / "jupyter")},
        )
    service = Service("--initial-kernels=1", "--pool-size=1", *options, launcher=(*tracing, *LAUNCHER), env=env)
    try:
        kernel = service.start_kernel()
        client = ChannelsClient(service, kernel)
        reply, _ = client.execute("import subprocess; subprocess.run(['true'])", timeout=60)
        client.close()
        assert reply["content"]["status"] == "ok", reply["content"]
        assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
    finally:
        stop_traced(service)
    execs = [line for line in trace.read_text().splitlines() if " execve(" in line and line.endswith("= 0")]
    service_pid = execs[0].split()[0]
    others = [line for line in execs if line.split()[0] != service_pid]
    assert len(others) >= 4, others  # the probe, the kernels (in their sandboxes), a kernel's `true`
    leaked = [line[:300] for line in others if TOKEN in line or secret in line]
    assert leaked == [], leaked


def stop_traced(service: Service) -> None:
    """Stop a service run under strace: SIGTERM to the service itself (strace, signalled,
    would let go of it and leave it running), then strace ends with it."""
    (traced,) = children(service.pid)
    processes = identified(descendants(service.pid))
    os.kill(traced, signal.SIGTERM)
    assert service.process.wait(60) == 0, service.output()
    wait_until(lambda: not still_running(processes), 10, "every process gone")


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def kernel_processes(service: Service) -> list[int]:
    return [pid for pid in descendants(service.pid) if b"ipykernel" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def listening_tcp(pids: list[int]) -> list[str]:
    """The TCP addresses on which any of `pids` listens, as /proc/net/tcp writes them
    (`0100007F:1F90` is 127.0.0.1:8080); read as root."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                found.append(fields[1])
    return found


def as_nobody_knock_on(addresses: dict) -> list[str]:
    """What each channel of a kernel gave `nobody` (tests/support/attacks.py)."""
    result = subprocess.run(
        [*AS_NOBODY, SYSTEM_PYTHON, "-c", knock_on_each(addresses)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def loopback(port: int) -> str:
    return f"0100007F:{port:04X}"


def test_by_default_kernels_listen_on_the_loopback_behind_curve_and_another_user_gets_nothing():
    """ipykernel declares CurveZMQ, so by default (--kernel-transport=auto) its channels are
    loopback TCP ports that hang up on a peer that holds no key (kernels/transport.py)."""
    with running_service("--initial-kernels=2", "--pool-size=0") as service:
        kernels = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        expected = []
        for kernel in kernels:
            client = ChannelsClient(service, kernel)
            addresses = run_in_kernel(client, MY_ADDRESSES)  # it answered: all its sockets are bound
            client.close()
            assert addresses["transport"] == "tcp" and addresses["ip"] == "127.0.0.1"
            assert as_nobody_knock_on(addresses) == ["CURVE: closed"] * 5
            expected += [loopback(port) for port in (*addresses["ports"], addresses["pipe_port"])]
        assert sorted(listening_tcp(kernel_processes(service))) == sorted(expected)
        assert "without encryption" not in service.output()


def test_over_ipc_no_kernel_channel_listens_on_tcp_and_another_user_reaches_no_kernel_socket():
    """Over ipc a kernel's only TCP port is ipykernel's own IOPub pipe, on the loopback
    (see tests/support/attacks.py: it takes no reader, and no writer without its secret)."""
    with running_service("--initial-kernels=2", "--pool-size=0", "--kernel-transport=ipc") as service:
        kernels = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        pipes = []
        for kernel in kernels:
            client = ChannelsClient(service, kernel)
            addresses = run_in_kernel(client, MY_ADDRESSES)
            client.close()
            pipes.append(loopback(addresses["pipe_port"]))
            assert addresses["transport"] == "ipc"
            directory = Path(addresses["ip"]).parent
            assert directory.stat().st_mode & 0o777 == 0o700 and directory.stat().st_uid == os.getuid()
            assert as_nobody_knock_on(addresses) == ["PermissionError"] * 5
        pids = kernel_processes(service)  # each answered: all its sockets are bound
        assert len(pids) == 2 and sorted(listening_tcp(pids)) == sorted(pipes), pids
        sockets = [Path(f"{addresses['ip']}-{port}") for port in addresses["ports"]]
        assert all(path.is_socket() for path in sockets)
    assert not any(path.exists() for path in sockets), "a kernel's sockets outlived it"


CONNECTION_FILE = "import json, ipykernel.connect as c; print(json.dumps({'connection_file': c.get_connection_file()}))"


def test_without_a_sandbox_a_kernel_drives_another_with_its_key_and_not_without_it():
    """What docs/security.md says of the default mode: kernels of one service share its uid, so
    one can read another's connection file and run code in it; a message without the
    right key is dropped by the kernel itself (which logs it). --kernel-sandbox takes
    the first away (tests/test_sandbox.py)."""
    with running_service("--initial-kernels=2", "--pool-size=0") as service:
        first, second = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        attacker, victim = ChannelsClient(service, first), ChannelsClient(service, second)
        other = {**run_in_kernel(victim, MY_ADDRESSES), **run_in_kernel(victim, CONNECTION_FILE)}
        forged = DRIVE_THE_OTHER % {"other": json.dumps(other), "key": "not-the-key", "wait": 0}
        assert run_in_kernel(attacker, forged) == {"reply": None}
        wait_until(lambda: "Invalid Signature" in service.output(), 30, "the victim's refusal of the forged message")
        assert stream_text(victim.execute("print('stolen' in dir())")[1]) == "False\n"
        keyed = DRIVE_THE_OTHER % {"other": json.dumps(other), "key": None, "wait": 30}
        assert run_in_kernel(attacker, keyed) == {"reply": "ok"}
        assert stream_text(victim.execute("print('stolen' in dir())")[1]) == "True\n"
        attacker.close()
        victim.close()


def test_over_tcp_kernels_listen_on_the_loopback_only_and_any_user_can_connect():
    """What --kernel-transport=tcp costs, as docs/security.md says: loopback ports any user of
    the machine can reach (their messages still need the kernel's key)."""
    with running_service("--initial-kernels=1", "--pool-size=0", "--kernel-transport=tcp") as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        addresses = run_in_kernel(client, MY_ADDRESSES)  # it answered: all its sockets are bound
        client.close()
        listening = listening_tcp(kernel_processes(service))
        expected = [loopback(port) for port in (*addresses["ports"], addresses["pipe_port"])]
        assert sorted(listening) == sorted(expected), listening
        assert addresses["transport"] == "tcp"
        assert as_nobody_knock_on(addresses) == ["NULL: talked"] * 5


def test_a_runtime_directory_too_long_for_sockets_gets_a_private_short_one(tmp_path):
    runtime = tmp_path / ("deep-" * 12) / "runtime"  # connection files may live here, sockets may not
    options = ("--initial-kernels=1", "--pool-size=0", "--kernel-transport=ipc")
    with running_service(*options, env={"JUPYTER_RUNTIME_DIR": str(runtime)}) as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        addresses = run_in_kernel(client, MY_ADDRESSES)
        client.close()
        directory = Path(addresses["ip"]).parent
        assert len(f"{addresses['ip']}-{addresses['ports'][0]}") < 107
        assert directory != runtime and directory.stat().st_mode & 0o777 == 0o700
        assert list(runtime.glob("kernel-*.json")), "connection files stay in the runtime directory"
    assert not directory.exists(), "the service's own socket directory is removed when it stops"


def test_a_runtime_directory_others_may_enter_holds_no_socket(tmp_path):
    runtime = tmp_path / "shared"
    runtime.mkdir(mode=0o755)
    runtime.chmod(0o755)
    options = ("--initial-kernels=1", "--pool-size=0", "--kernel-transport=ipc")
    with running_service(*options, env={"JUPYTER_RUNTIME_DIR": str(runtime)}) as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        addresses = run_in_kernel(client, MY_ADDRESSES)
        client.close()
        assert addresses["transport"] == "ipc" and Path(addresses["ip"]).parent != runtime
        assert not [path for path in runtime.iterdir() if path.is_socket()]


# --- the token: never where other users can read it -----------------------------------


def command_line_of(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def write_token_file(tmp_path: Path, token: str, mode: int) -> Path:
    token_file = tmp_path / "token"
    token_file.write_text(token)
    token_file.chmod(mode)
    return token_file


def test_a_token_file_is_read_once_and_the_token_is_on_no_command_line(tmp_path):
    token_file = write_token_file(tmp_path, "file-token-0123456789\n", 0o600)
    with running_service(f"--token-file={token_file}", token=None) as service:
        service.token = "file-token-0123456789"
        assert service.request("GET", "api/kernels")[0] == 200
        assert service.request("GET", "api/kernels", token="wrong")[0] == 403
        for pid in [service.pid, *descendants(service.pid)]:
            assert b"file-token" not in command_line_of(pid)
        output = service.output()
    assert "file-token-0123456789" not in output and "on the command line" not in output
    assert "may be read by other users" not in output


def test_a_token_on_the_command_line_is_warned_of_and_never_logged():
    with running_service(f"--token={TOKEN}", token=None) as service:
        service.token = TOKEN
        assert service.request("GET", "api/kernels")[0] == 200
        output = service.output()
    assert "The token is on the command line, where every user of this machine can read it" in output
    assert TOKEN not in output


def test_a_token_file_others_may_read_is_used_with_a_warning(tmp_path):
    token_file = write_token_file(tmp_path, "shared-token-0123456789", 0o644)
    with running_service(f"--token-file={token_file}", token=None) as service:
        service.token = "shared-token-0123456789"
        assert service.request("GET", "api/kernels")[0] == 200
        assert f"The token file {token_file} may be read by other users (mode 644)" in service.output()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "cannot read the token file"),
        ("empty", "the token file"),
        ("directory", "cannot read the token file"),
        ("with --token", "give the token or a token file, not both"),
    ],
)
def test_a_token_file_that_cannot_be_used_stops_the_start(tmp_path, case, expected):
    token_file = tmp_path / "token"
    argv = [f"--token-file={token_file}"]
    if case == "empty":
        token_file.write_text("  \n")
    elif case == "directory":
        token_file.mkdir()
    elif case == "with --token":
        token_file.write_text("a-token")
        argv.append("--token=another")
    command = [sys.executable, str(ROOT / "kernels.py"), "--port=0", *argv]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and f"Cannot start: {expected}" in output, output
    assert "Serving at" not in output and "Traceback" not in output
