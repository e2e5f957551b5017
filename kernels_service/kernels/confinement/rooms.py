"""A room for each local kernel of an unprivileged service, confined by Landlock.

Where the service cannot give kernels uids of their own (it runs as an ordinary user, or
the image runs with `--user`), every kernel shares the service's uid, and only Landlock
keeps them apart (`landlock`, `seccomp`, applied by `launch` before the kernel's program
runs). Each kernel gets a room: a directory of its own under the service's root (0700),
holding its connection file, its home and its temporary directory. The kernel may write
in its room only, and may not read, list or execute anything under the paths the service
hides from every kernel: the root of all rooms, the service's runtime directory, its
kernel store, and its user's home (all but the Python installations and the kernelspec
the kernel runs from, which it reads again).

Over ipc, a kernel's sockets are abstract unix sockets named after its room: with
Landlock's scoping (ABI 6) no other kernel may connect to them, where a socket file
would be reachable by anyone who learns its path (`/proc/net/unix` lists them all).

Where Linux allows it, each kernel also has a user namespace of its own (the same uid,
mapped to itself), in which its processes are counted and bounded apart from the
service's (`launch.bound_processes`; the start says whether it can).

A room is known to be in use by the record beside it (`<room>.pid`: the kernel's pid and
start time), which the kernel cannot write; a service that starts removes the rooms
whose kernel is gone, and keeps those of kernels it kept (`--keep-kernels`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import site
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable

from kernels_service.kernels.confinement import landlock
from kernels_service.kernels.confinement.launch import PROBE
from kernels_service.kernels.errors import ConfigError
from kernels_service.kernels.kernel_uids import STALE_AFTER, KernelAccount, remove_account
from kernels_service.processes import process_start

log = logging.getLogger("kernels_service.kernels")

LAUNCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py")


#: The longest root whose rooms' ipc socket names fit a unix socket address (107 bytes):
#: `@<root>/tmpXXXXXXXX/ipc-<port>`, a port of up to 5 digits.
LONGEST_ROOT = 107 - len("@/tmpXXXXXXXX/ipc-65535")


def default_roots() -> tuple[str, ...]:
    """Where the rooms may go, in turn: the user's runtime directory (`XDG_RUNTIME_DIR`),
    the user's home (`~/.local/state`: hidden from kernels anyway, so it costs no rules),
    a directory of the uid's in the temporary directory (whose every other entry then
    needs a rule of its own)."""
    roots = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        roots.append(os.path.join(runtime, "kernels-service"))
    home = os.path.expanduser("~")
    if home not in ("", "/") and os.path.isabs(home):
        roots.append(os.path.join(home, ".local", "state", "kernels-service"))
    roots.append(os.path.join(tempfile.gettempdir(), f"kernels-service-{os.getuid()}"))
    return tuple(roots)


def python_installations() -> list[str]:
    """What the service's own Python needs to read (where its kernels' Python usually is)."""
    found = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    user_site = site.getusersitepackages() if site.ENABLE_USER_SITE else ""
    found += [user_site] if user_site and os.path.isdir(user_site) else []
    return list(dict.fromkeys(os.path.realpath(path) for path in found))


def program_installations(program: str, path: str | None) -> list[str]:
    """The installations a kernel's program belongs to: `<prefix>` of `<prefix>/bin/<program>`,
    as found and where its links lead (a virtual environment's `python` leads to the base
    Python's; the environment holds the packages)."""
    found = shutil.which(program, path=path)
    if found is None:
        return []
    found = os.path.abspath(found)
    return list(dict.fromkeys(os.path.dirname(os.path.dirname(place)) for place in (found, os.path.realpath(found))))


class LandlockRooms:
    """Rooms for kernels of the service's uid, each kernel confined to its own."""

    mechanism = "landlock"
    sets_oom_score = True  # `launch` makes the kernel the out-of-memory killer's first choice

    def __init__(self, root: str, abi: int, hidden: Iterable[str], readable: Iterable[str] = (), processes: int = 0):
        """`processes`: each kernel's bound on its processes and threads, in a user
        namespace of its own (`launch.bound_processes`); 0: none."""
        self.root = root
        self.abi = abi
        self.hidden = tuple(dict.fromkeys([root, *hidden]))
        self.readable = tuple(readable)
        self.processes = processes

    def why_not_run(self, argv: list[str]) -> str | None:
        return None  # the kernel runs as the service's uid: whatever the service may run

    def runs(self, argv: list[str]) -> bool:
        return True

    def prepare(self) -> None:
        """Make the root (0700, the service's) and remove the rooms of kernels that are gone.
        ConfigError if the root cannot be made."""
        try:
            os.makedirs(self.root, mode=0o700, exist_ok=True)
            info = os.lstat(self.root)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                raise ConfigError(f"{self.root} is not a directory of the service's uid")
            os.chmod(self.root, 0o700)
        except OSError as error:
            raise ConfigError(f"cannot make the kernels' directory {self.root}: {error}") from None
        for name in os.listdir(self.root):
            room = os.path.join(self.root, name)
            if os.path.isdir(room) and not self._in_use(room):
                log.info("Removing %s: its kernel is gone", room)
                self.give_back(KernelAccount(os.getuid(), room))

    def _in_use(self, room: str) -> bool:
        try:
            with open(room + ".pid") as record:
                pid, start = (int(field) for field in record.read().split())
        except (OSError, ValueError):
            return time.time() - os.lstat(room).st_mtime <= STALE_AFTER  # being launched, maybe
        return process_start(pid) == start

    def take(self) -> KernelAccount:
        """A new room, with its home and temporary directory."""
        account = KernelAccount(os.getuid(), tempfile.mkdtemp(dir=self.root))
        for own in (account.home, account.tmp):
            os.mkdir(own, 0o700)
        return account

    @staticmethod
    def give_back(account: KernelAccount) -> None:
        remove_account(account)

    @staticmethod
    def hand_over(path: str, account: KernelAccount) -> None:
        """Nothing to give: the kernel has the service's uid."""

    @staticmethod
    def launch_options(account: KernelAccount) -> dict[str, object]:
        return {"umask": 0o077, "cwd": account.home}

    @staticmethod
    def ipc_prefix(account: KernelAccount) -> str:
        """The prefix of the kernel's ipc socket names: abstract (`@`), named after its room."""
        return "@" + os.path.join(account.directory, "ipc")

    def command(self, command: list[str], account: KernelAccount, env: dict[str, str], resources: str) -> list[str]:
        """The kernel's command, started by `launch` with the kernel's plan: the hidden
        paths, what it reads again (Python installations, its program's, its PYTHONPATH,
        its kernelspec's `resources`), its room. A program not found is left to fail its
        launch as it would unconfined."""
        if not command or shutil.which(command[0], path=env.get("PATH")) is None:
            return command
        readable = [*self.readable, *python_installations(), resources]
        readable += program_installations(command[0], env.get("PATH"))
        readable += [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if os.path.isabs(entry)]
        plan = {"abi": self.abi, "hidden": list(self.hidden), "own": account.directory, "processes": self.processes,
                "readable": [path for path in dict.fromkeys(readable) if path]}  # fmt: skip
        return [sys.executable, "-I", "-S", LAUNCH, json.dumps(plan), *command]

    def launched(self, account: KernelAccount, pid: int) -> None:
        """Record which process the room is for (beside it: the kernel cannot write there)."""
        start = process_start(pid)
        if start is not None:
            with open(account.directory + ".pid", "w") as record:
                record.write(f"{pid} {start}\n")


def why_no_landlock(abi: int, euid: int, seccomp_supported: bool) -> str | None:
    """Why Landlock cannot confine this service's kernels (None: it can, maybe partly)."""
    if euid == 0:
        return "Landlock does not keep root's kernels from reading each other's /proc files"
    if abi < 1:
        return "this Linux has no Landlock (5.13+, enabled at boot)"
    if not seccomp_supported:
        return "no seccomp filter for this machine's architecture"
    return None


def why_no_user_namespace() -> str | None:
    """Why a kernel cannot have a user namespace of its own here (None: it can): asked of
    the launcher itself, in a child process, as a kernel's launch would do it."""
    try:
        probe = subprocess.run([sys.executable, "-I", "-S", LAUNCH, PROBE], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if probe.returncode == 0 else probe.stderr.strip() or f"exit {probe.returncode}"


def process_bound(processes: int, why_not: Callable[[], str | None] = why_no_user_namespace) -> int:
    """The bound on each room's kernel's processes: `processes`, where a kernel can have a
    user namespace of its own (Linux counts them for it alone there), else none (0), and
    the start says what that leaves open."""
    if processes <= 0:
        return 0
    why = why_not()
    if why is None:
        log.info("Each kernel's %d processes are counted in a user namespace of its own", processes)
        return processes
    log.warning(
        "Kernels' processes are not bounded (%s): they share the service's uid, and a fork bomb in one "
        "can leave that uid without processes for the service", why,
    )  # fmt: skip
    return 0


def landlock_rooms(hidden: Iterable[str], roots: Iterable[str] | None = None, *, prepare: bool = True,
                   processes: int = 0) -> tuple[LandlockRooms | None, str]:  # fmt: skip
    """Rooms under the first of `roots` that can be made (not made: --show-config), their
    kernels' processes bounded by `processes` where Linux allows it, or None and why not."""
    from kernels_service.kernels.confinement import seccomp

    abi = landlock.abi_version()
    why = why_no_landlock(abi, os.geteuid(), seccomp.supported())
    if why is not None:
        return None, why
    candidates = tuple(roots or default_roots())
    home = os.path.expanduser("~")
    hidden = [*hidden, *([home] if home not in ("/", "") else [])]
    failures = []
    bound = process_bound(processes)
    for root in candidates:
        if len(os.path.abspath(root).encode()) > LONGEST_ROOT:
            failures.append(f"{root} is too long for the kernels' socket names")
            continue
        rooms = LandlockRooms(root, abi, hidden, processes=bound)
        if not prepare:
            return rooms, ""
        try:
            rooms.prepare()
            return rooms, ""
        except ConfigError as error:
            failures.append(str(error))
    return None, "; ".join(failures)
