"""Kernels kept apart on one machine, without a container engine: each in a bubblewrap sandbox.

Local kernels share the service's uid, so by default a kernel can read the others'
connection files (their keys), reach their ipc sockets and see their processes. With
`--kernel-sandbox=bubblewrap`, each kernel runs under Debian's `bwrap` (unprivileged
Linux namespaces), where it sees:
- the machine's files read-only, as its uid may read them, with Jupyter's runtime
  directory and the service's socket directory emptied (private tmpfs), but for its own
  connection file and its own socket directory;
- a private, writable `/tmp`, which is also its home and working directory (where the
  kernel's own program lives under `/tmp`, as a virtual environment may, that stays
  visible, read-only);
- a `/proc` of its own PID namespace: its own processes, not the service's nor any
  other kernel's.
It shares the network (a kernel may fetch packages), and nothing else is taken away.

This is a jupyter_client kernel provisioner, `bubblewrap-provisioner` (an entry point), a
`LocalProvisioner` whose launch command is wrapped: the plug a container provisioner
uses too. The service makes it the default provisioner of every kernelspec that names
none; a kernelspec may also name it itself.

Signals: jupyter_client interrupts a local kernel by sending SIGINT to its process
group, which holds bwrap and its init too, and either would die of it (taking the
kernel with it). So bwrap starts with SIGINT ignored (`env --ignore-signal=INT`, an
inherited disposition); the kernel sets its own handler, as ipykernel does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from kernels_service.kernels.errors import ConfigError
from kernels_service.kernels.provisioners.own_group import OwnGroupProvisioner

PROVISIONER_NAME = "bubblewrap-provisioner"
HOME = "/tmp"


class BubblewrapProvisioner(OwnGroupProvisioner):
    """A local kernel, launched inside its own bubblewrap sandbox."""

    own_sockets: str | None = None  # this kernel's socket directory, over ipc

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        manager = self.parent
        if manager.transport == "ipc" and self.own_sockets is None:
            shared = os.path.dirname(manager.ip)
            self.own_sockets = os.path.join(shared, f"sandbox-{self.kernel_id}")
            os.makedirs(self.own_sockets, mode=0o700, exist_ok=True)
            manager.ip = os.path.join(self.own_sockets, "ipc")
        launch = await super().pre_launch(**kwargs)
        hidden = {os.path.dirname(manager.connection_file)}
        if self.own_sockets is not None:
            hidden.add(os.path.dirname(self.own_sockets))
        launch["cmd"] = sandbox_command(launch["cmd"], manager.connection_file, self.own_sockets, sorted(hidden))
        return launch

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart)
        if not restart and self.own_sockets is not None:
            shutil.rmtree(self.own_sockets, ignore_errors=True)


def sandbox_command(command: list[str], connection_file: str, own_sockets: str | None, hidden: list[str]) -> list[str]:
    """`command` run in a sandbox that sees only its own connection file and sockets of
    the `hidden` directories."""
    wrapped = [
        "env", "--ignore-signal=INT", "bwrap",
        "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
        "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
    ]  # fmt: skip
    program = program_home(command[0])
    if is_within(program, "/tmp"):
        wrapped += ["--ro-bind", program, program]
    for directory in hidden:
        wrapped += ["--tmpfs", directory]
    # its own, writable: ipykernel rewrites it at start when it holds CurveZMQ keys (it
    # compares the file's text keys with its bytes ones); what a kernel writes there
    # reaches only itself (the service never reads it back)
    wrapped += ["--bind", connection_file, connection_file]
    if own_sockets is not None:
        wrapped += ["--bind", own_sockets, own_sockets]
    # ipykernel exits once its parent is no longer JPY_PARENT_PID (the service's pid), but
    # in the sandbox its parent is bwrap's init, PID 1, which ipykernel does not watch;
    # bwrap kills the sandbox when the service dies instead (--die-with-parent)
    wrapped += ["--setenv", "JPY_PARENT_PID", "1", "--setenv", "HOME", HOME, "--chdir", HOME, "--", *command]
    return wrapped


def program_home(program: str) -> str:
    """Where the kernel's program lives: its virtual environment's root if it is in one
    (a `pyvenv.cfg` beside its `bin`), else its own directory."""
    path = os.path.abspath(shutil.which(program) or program)
    directory = os.path.dirname(path)
    root = os.path.dirname(directory)
    return root if os.path.isfile(os.path.join(root, "pyvenv.cfg")) else directory


def is_within(path: str, directory: str) -> bool:
    return os.path.commonpath([os.path.abspath(path), directory]) == directory


def check_bubblewrap() -> None:
    """ConfigError unless `bwrap` runs here (on PATH, and allowed its namespaces)."""
    if shutil.which("bwrap") is None or shutil.which("env") is None:
        raise ConfigError("--kernel-sandbox=bubblewrap needs bwrap on PATH (Debian's bubblewrap package)")
    probe = sandbox_command(["true"], "/dev/null", None, [])
    try:
        # a probe gets no more of the service's environment than a kernel would
        probe_env = {"PATH": os.environ.get("PATH", os.defpath)}
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30, env=probe_env)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"--kernel-sandbox=bubblewrap: bwrap cannot run: {error}") from None
    if result.returncode != 0:
        said = result.stderr.strip() or f"exit status {result.returncode}"
        raise ConfigError(f"--kernel-sandbox=bubblewrap: bwrap cannot make a sandbox here: {said}")
