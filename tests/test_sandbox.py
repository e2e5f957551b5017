"""--kernel-sandbox=bubblewrap: code in one kernel tries to reach another kernel and the
service, from inside a real sandboxed kernel; and the sandboxed kernel still does all a
kernel does (execute, interrupt by signal, restart, stop without a trace)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernels_service.kernels.provisioners.bubblewrap import program_home, sandbox_command
from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import descendants, running_service
from tests.support.attacks import MY_ADDRESSES, knock_on_each, run_in_kernel
from tests.support.channels import interrupted_reply
from tests.support.paths import ROOT

SANDBOX = "--kernel-sandbox=bubblewrap"

#: From one kernel: the other's connection file, the service's /proc, the
#: processes it can see, a write outside /tmp, and the runtime directory's listing.
REACH_THE_OTHER = r"""
import json, os
other = json.loads(%(other)r)
found = {}
try:
    open(other["connection_file"]).read()
    found["connection_file"] = "read"
except OSError as error:
    found["connection_file"] = type(error).__name__
try:
    open(f"/proc/{%(service)d}/cmdline").read()
    found["service_proc"] = "read"
except OSError as error:
    found["service_proc"] = type(error).__name__
found["processes"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
found["runtime_listing"] = sorted(os.listdir(os.path.dirname(other["connection_file"])))
try:
    open(os.path.join(%(cwd)r, "written-by-a-kernel"), "w").close()
    found["write_outside_tmp"] = "written"
except OSError as error:
    found["write_outside_tmp"] = type(error).__name__
print(json.dumps(found))
"""

WHERE_AM_I = r"""
import json, os, ipykernel.connect
print(json.dumps({"connection_file": ipykernel.connect.get_connection_file(), "cwd": os.getcwd(),
                  "home": os.environ["HOME"], "pid": os.getpid()}))
"""


def addresses_of(client: ChannelsClient) -> dict:
    return {**run_in_kernel(client, MY_ADDRESSES), **run_in_kernel(client, WHERE_AM_I)}


#: What each channel of another kernel gives a sandboxed kernel, per --kernel-transport:
#: its sockets are not in the sandbox (ipc), or its ports hang up without its key (curve)
KNOCKED = {"auto": ["CURVE: closed"] * 5, "ipc": ["FileNotFoundError"] * 5}


@pytest.mark.parametrize("transport", sorted(KNOCKED))
def test_a_sandboxed_kernel_reaches_no_other_kernel_nor_the_service(tmp_path, transport):
    options = ("--initial-kernels=2", "--pool-size=0", SANDBOX, f"--kernel-transport={transport}")
    with running_service(*options, cwd=tmp_path) as service:
        first, second = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        attacker, victim = ChannelsClient(service, first), ChannelsClient(service, second)
        other = addresses_of(victim)
        mine = addresses_of(attacker)
        outside = Path.home()  # the service's uid may write there; the sandbox may not
        code = REACH_THE_OTHER % {"other": json.dumps(other), "service": service.pid, "cwd": str(outside)}
        found = run_in_kernel(attacker, code)
        assert found["connection_file"] == "FileNotFoundError", found
        assert run_in_kernel(attacker, knock_on_each(other)) == KNOCKED[transport]
        assert found["service_proc"] == "FileNotFoundError", found
        own = {os.path.basename(mine["connection_file"])}
        if transport == "ipc":
            own.add(os.path.basename(os.path.dirname(mine["ip"])))
        assert set(found["runtime_listing"]) <= own and len(found["runtime_listing"]) >= 1, found
        assert found["write_outside_tmp"] == "OSError", found  # a read-only file system
        assert len(found["processes"]) <= 3 and mine["pid"] <= 3, found  # its own PID namespace
        assert mine["home"] == mine["cwd"] == "/tmp"
        assert not (outside / "written-by-a-kernel").exists()
        # the victim still answers its own client, and the attacker's messages reached nothing
        assert stream_text(victim.execute("print('still mine')")[1]) == "still mine\n"
        attacker.close()
        victim.close()


@pytest.mark.parametrize("transport", sorted(KNOCKED))
def test_a_sandboxed_kernel_is_interrupted_restarted_and_stopped_without_a_trace(transport):
    with running_service("--initial-kernels=1", "--pool-size=0", SANDBOX, f"--kernel-transport={transport}") as service:
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        client = ChannelsClient(service, kernel)
        client.execute("x = 41")
        interrupt = lambda: service.request("POST", f"api/kernels/{kernel}/interrupt")[0]  # noqa: E731
        reply = interrupted_reply(interrupt, client, service.output)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert stream_text(client.execute("print(x + 1)")[1]) == "42\n", "the interrupt killed the kernel"
        addresses = addresses_of(client)
        sockets = Path(addresses["ip"]).parent if transport == "ipc" else None
        assert service.request("POST", f"api/kernels/{kernel}/restart")[0] == 200
        assert stream_text(client.execute("print('x' in dir())", timeout=60)[1]) == "False\n"
        client.close()
        assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
        assert sockets is None or not sockets.exists(), "the kernel's own socket directory outlived it"
        assert not descendants(service.pid)


def test_without_bwrap_the_sandbox_stops_the_start_with_a_reason(tmp_path):
    command = [sys.executable, str(ROOT / "kernels.py"), "--port=0", SANDBOX]
    environment = {**os.environ, "PATH": str(tmp_path)}  # no bwrap, no env on it
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=environment)
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Cannot start: --kernel-sandbox=bubblewrap needs bwrap on PATH" in output
    assert "Traceback" not in output


def test_a_program_under_tmp_stays_visible_and_others_are_not_rebound(tmp_path):
    """The sandbox's /tmp is private, so a kernel whose virtual environment lives under
    /tmp (a CI clone) must still find it; a program elsewhere needs nothing."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    python = venv / "bin" / "python"
    python.write_text("")
    assert program_home(str(python)) == str(venv)
    command = sandbox_command([str(python), "-m", "ipykernel_launcher"], "/r/kernel-1.json", None, ["/r"])
    tmpfs = command.index("/tmp", command.index("--tmpfs"))
    assert command[tmpfs + 1 : tmpfs + 4] == ["--ro-bind", str(venv), str(venv)]
    elsewhere = sandbox_command(["/usr/bin/python3"], "/r/kernel-1.json", None, ["/r"])
    assert elsewhere.count("--ro-bind") == 1  # the root only
    assert elsewhere.count("--bind") == 1  # the connection file
