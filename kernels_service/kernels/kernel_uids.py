"""A uid of its own for each local kernel, where the service may hand one out (root, or
CAP_SETUID and CAP_SETGID): as systemd's `DynamicUser` does, from a range no account and
no running process uses.

A kernel of its own uid cannot signal, trace or read the memory of the service (root) or
of another kernel, and cannot read or write another kernel's files: each kernel gets a
directory of its own, `<root>/<uid>` (0700, its uid's), holding its connection file (its
keys), its ipc sockets, its home and its temporary directory. The root directory is the
service's (0711: anyone may pass through, nobody may list it).

The directory is also how a uid is taken: `mkdir` either makes it or fails, atomically,
so two services on one machine (or one service and its kept kernels' next one) never
hand out one uid twice. A uid is free when no account has it, no process runs as it, and
it has no directory. Uids are handed out in turn, from a random place in the range, so
that a uid just given back is not the next one given: what its last kernel left behind
where every uid may write (`/tmp`, with its umask 077 closed to others anyway) is not
met again soon.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import random
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from kernels_service.kernels.errors import ConfigError, KernelNotStarted
from kernels_service.kernels.programs import with_service_python

log = logging.getLogger("kernels_service.kernels")

#: Between Debian's globally allocated system uids (60000-64999, few in use) and
#: systemd's DynamicUser range (61184-65519), and inside the 65536 uids a rootless
#: container maps.
DEFAULT_RANGE = (60000, 61183)
DEFAULT_ROOT = "/run/kernels-service"
#: Where the kernels' directories go: /run, else (a read-only root with a writable /tmp)
#: the temporary directory; a directory there that is not the service's is refused.
DEFAULT_ROOTS = (DEFAULT_ROOT, os.path.join(tempfile.gettempdir(), "kernels-service"))
CAP_SETGID, CAP_SETUID = 6, 7
STALE_AFTER = 60.0  # seconds: a directory younger than this may be another service's kernel being launched


def parse_uid_range(text: str) -> tuple[int, int]:
    """`LOW-HIGH` as two uids; ConfigError for anything else."""
    low, dash, high = text.strip().partition("-")
    try:
        first, last = int(low), int(high)
    except ValueError:
        first = last = -1
    if not dash or not 1 <= first <= last <= 2**32 - 2:
        raise ConfigError(f"--kernel-uids must be LOW-HIGH with 1 <= LOW <= HIGH < 4294967295, not {text!r}")
    return first, last


@dataclass(frozen=True)
class KernelAccount:
    """The uid (and gid, the same number) of one kernel, and its directory."""

    uid: int
    directory: str

    @property
    def home(self) -> str:
        return os.path.join(self.directory, "home")

    @property
    def tmp(self) -> str:
        return os.path.join(self.directory, "tmp")

    def as_info(self) -> dict[str, object]:
        """What a kept kernel's next service needs to give the uid back (provisioner info)."""
        return {"uid": self.uid, "directory": self.directory}

    @classmethod
    def from_info(cls, info: dict) -> KernelAccount:
        return cls(int(info["uid"]), str(info["directory"]))


def effective_capabilities() -> int:
    """This process's effective capability set (`CapEff` of /proc/self/status); 0 if unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def mapped_uids(uid_map: str) -> list[tuple[int, int]]:
    """The uid ranges of this user namespace (`/proc/self/uid_map`: inside, outside, count)
    as (first, last) pairs."""
    ranges = []
    for line in uid_map.splitlines():
        parts = line.split()
        if len(parts) == 3 and all(part.isdigit() for part in parts):
            first, count = int(parts[0]), int(parts[2])
            ranges.append((first, first + count - 1))
    return ranges


def why_no_uids(capabilities: int, uid_map: str, uid_range: tuple[int, int]) -> str | None:
    """Why this process cannot give kernels uids of `uid_range` (None: it can)."""
    needed = ((CAP_SETUID, "CAP_SETUID"), (CAP_SETGID, "CAP_SETGID"))
    missing = [name for bit, name in needed if not capabilities >> bit & 1]
    if missing:
        return f"the service lacks {' and '.join(missing)} (it runs as uid {os.getuid()} without them)"
    first, last = uid_range
    if not any(low <= first and last <= high for low, high in mapped_uids(uid_map)):
        return f"uids {first}-{last} are not mapped in this user namespace (/proc/self/uid_map)"
    return None


def read_uid_map() -> str:
    try:
        with open("/proc/self/uid_map") as uid_map:
            return uid_map.read()
    except OSError:
        return "0 0 4294967295"  # no user namespaces: every uid


def uids_in_use(proc: str = "/proc") -> set[int]:
    """Every uid a running process has (real, effective, saved or filesystem)."""
    found: set[int] = set()
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            with open(os.path.join(proc, entry, "status")) as status:
                for line in status:
                    if line.startswith("Uid:"):
                        found.update(int(value) for value in line.split()[1:])
                        break
        except (OSError, ValueError):
            continue  # it ended meanwhile
    return found


def has_account(uid: int) -> bool:
    """Whether a user or group of the machine has this number."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


class KernelUids:
    """Hands out uids of a range, each with its kernel's directory under `root`."""

    mechanism = "own uid"
    sets_oom_score = False  # the service does (kernels.limits)

    def __init__(self, uid_range: tuple[int, int] = DEFAULT_RANGE, root: str = DEFAULT_ROOT,
                 in_use: Callable[[], Iterable[int]] = uids_in_use):  # fmt: skip
        self.first, self.last = uid_range
        self.root = root
        self._in_use = in_use
        self._next = random.randint(self.first, self.last)
        self._unrunnable: dict[str, str | None] = {}  # program: why a kernel uid cannot run it

    def why_not_run(self, argv: list[str]) -> str | None:
        """Why a kernel of this argv cannot run as a uid of the range (None: it can); asked
        once per program."""
        program = with_service_python(argv)[0] if argv else ""
        if program not in self._unrunnable:
            self._unrunnable[program] = can_run_as(program, self.first) if program else "it has no argv"
        return self._unrunnable[program]

    def runs(self, argv: list[str]) -> bool:
        """Whether kernels of this argv get a uid of their own."""
        return self.why_not_run(argv) is None

    def prepare(self) -> None:
        """Make the root directory (0711, the service's) and give back the uids of kernels
        that are gone (a service that crashed, kernels killed with it): directories whose
        uid no process runs as. ConfigError if the root cannot be made."""
        try:
            os.makedirs(self.root, mode=0o711, exist_ok=True)
            info = os.lstat(self.root)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                raise ConfigError(f"{self.root} is not a directory of the service's uid")
            os.chmod(self.root, 0o711)
        except OSError as error:
            raise ConfigError(f"cannot make the kernels' directory {self.root}: {error}") from None
        running = set(self._in_use())
        for name in os.listdir(self.root):
            path = os.path.join(self.root, name)
            if name.isdigit() and int(name) not in running and time.time() - os.lstat(path).st_mtime > STALE_AFTER:
                log.info("Removing %s: the kernel of uid %s is gone", path, name)
                shutil.rmtree(path, ignore_errors=True)

    def take(self) -> KernelAccount:
        """A free uid and its new directory, home and temporary directory (all 0700, the
        uid's); KernelNotStarted if every uid of the range is taken."""
        running = set(self._in_use())
        size = self.last - self.first + 1
        for step in range(size):
            uid = self.first + (self._next - self.first + step) % size
            if uid in running or has_account(uid):
                continue
            directory = os.path.join(self.root, str(uid))
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                continue
            self._next = uid + 1 if uid < self.last else self.first
            account = KernelAccount(uid, directory)
            for own in (account.home, account.tmp):
                os.mkdir(own, 0o700)
                os.chown(own, uid, uid, follow_symlinks=False)
            os.chown(directory, uid, uid, follow_symlinks=False)
            return account
        raise KernelNotStarted(f"every kernel uid ({self.first}-{self.last}) is taken: see --kernel-uids")

    @staticmethod
    def give_back(account: KernelAccount) -> None:
        """Remove the kernel's directory (its uid is free again once its processes are gone)."""
        remove_account(account)

    @staticmethod
    def hand_over(path: str, account: KernelAccount) -> None:
        """Give a file the service just wrote in the kernel's directory (its connection
        file) to the kernel's uid; never through a link (the directory is the kernel's)."""
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid():
            os.chown(path, account.uid, account.uid, follow_symlinks=False)

    @staticmethod
    def launch_options(account: KernelAccount) -> dict[str, object]:
        """How the kernel's process is started (`subprocess.Popen`'s): as its uid, no
        groups, umask 077, in its home."""
        return {"user": account.uid, "group": account.uid, "extra_groups": [], "umask": 0o077, "cwd": account.home}

    @staticmethod
    def ipc_prefix(account: KernelAccount) -> str:
        """The prefix of the kernel's ipc socket paths: in its directory, closed to others."""
        return os.path.join(account.directory, "ipc")

    @staticmethod
    def command(command: list[str], account: KernelAccount, env: dict[str, str], resources: str) -> list[str]:
        """The kernel's command as it is: its uid is what keeps it apart."""
        return command

    @staticmethod
    def launched(account: KernelAccount, pid: int) -> None:
        """Nothing to record: a uid is in use while a process runs as it."""


def remove_account(account: KernelAccount) -> None:
    """Remove a kernel's directory, and the record of its process beside it, if any."""
    shutil.rmtree(account.directory, ignore_errors=True)
    try:
        os.remove(account.directory + ".pid")
    except OSError:
        pass


def can_run_as(program: str, uid: int) -> str | None:
    """Why a process of `uid` (no groups) could not run `program` (None: it could): every
    directory on the way must let it pass, and the file let it execute. Asked of a shell
    run as that uid, so that the kernel's own view decides, ACLs and all."""
    path = shutil.which(program) or program
    try:
        result = subprocess.run(
            ["/bin/sh", "-c", 'test -x "$1"', "sh", path],
            user=uid, group=uid, extra_groups=[], env={}, cwd="/", timeout=30, capture_output=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        return f"a process of uid {uid} cannot be started: {error}"
    if result.returncode != 0:
        return f"its program {path} cannot be run by another uid (a directory on its way is closed to others)"
    return None
