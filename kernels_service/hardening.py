"""What keeps the service's secrets out of reach of the code its kernels run.

A kernel runs as the service's uid, and a process may read much of another process of
its own uid: `/proc/<pid>/environ` (the token, if it came from the environment), its
memory (`/proc/<pid>/mem`, ptrace), the files it has open. Linux drops that right for a
process that is not "dumpable" (`prctl(PR_SET_DUMPABLE, 0)`, as ssh-agent and gpg-agent
do): only a process with CAP_SYS_PTRACE (root, in practice) can then read it. What it
costs: the service leaves no core dump when it crashes, and a debugger or profiler
(gdb, py-spy) must run as root to attach to it. Kernels are not affected: `execve`
makes every new program dumpable again.

A token on the command line is readable by every user of the machine, whatever the
above (`/proc/<pid>/cmdline`, `ps`); the environment (`KERNELS_SERVICE_TOKEN`) or a
token file (`--token-file`, read once at start) is not.

Between its `execve` and the `prctl`, a process is dumpable: its environment can be read
by its uid's other processes (kernels of another service of that uid, say). So the entry
point (`launch.py`) makes the process undumpable before it loads anything else, and this
module imports only the standard library.
"""

from __future__ import annotations

import ctypes
import logging
import os
import stat
import sys
from collections.abc import Sequence

log = logging.getLogger("kernels_service")

PR_SET_DUMPABLE = 4  # <linux/prctl.h>
PR_GET_DUMPABLE = 3
TOKEN_OPTIONS = ("--token", "--KernelsService.token")


def make_undumpable() -> bool:
    """Make this process undumpable (Linux); whether it is now. Elsewhere, False."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        log.warning("Cannot make the service undumpable: %s", os.strerror(ctypes.get_errno()))
        return False
    return libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0


def token_on_command_line(argv: Sequence[str]) -> bool:
    """Whether `argv` (the service's arguments) gives the token itself."""
    return any(arg.split("=", 1)[0] in TOKEN_OPTIONS for arg in argv)


def read_token_file(path: str) -> str:
    """The token in the file at `path` (surrounding whitespace dropped); ConfigError if it
    cannot be read or is empty. A file that any user may read is used, with a warning (one
    its group may read is not warned of: container secrets are often mounted so)."""
    from kernels_service.kernels.errors import ConfigError  # here: the module loads before anything else

    try:
        with open(path, encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
            token = file.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the token file {path}: {error}") from None
    if not token:
        raise ConfigError(f"the token file {path} is empty")
    if mode & stat.S_IROTH:
        log.warning("The token file %s may be read by other users (mode %o): chmod 600 it", path, mode & 0o777)
    return token


#: What a root service that gives kernels uids of their own needs of root's power
#: (<linux/capability.h> numbers): make and give away the kernels' directories (CHOWN,
#: FOWNER: they are sticky once a kernel writes there), reach into them and remove them
#: (DAC_OVERRIDE, DAC_READ_SEARCH), launch kernels as their uids (SETUID, SETGID), signal
#: them (KILL), and a port below 1024 if asked (NET_BIND_SERVICE).
KEPT_CAPABILITIES = {"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "KILL": 5, "SETGID": 6,
                     "SETUID": 7, "NET_BIND_SERVICE": 10}  # fmt: skip
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
CAP_SETPCAP = 8
LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def keep_only_capabilities(kept: dict[str, int] = KEPT_CAPABILITIES) -> str | None:
    """Drop every capability but `kept`, from this process's effective, permitted,
    inheritable and bounding sets, and forbid it and what it runs to gain privileges again
    (no_new_privs: a setuid program such as `su` grants nothing); None if done, else why
    not. Linux keeps capabilities per thread: done where the process has one thread."""
    if not sys.platform.startswith("linux"):
        return "not Linux"
    threads = len(os.listdir("/proc/self/task"))
    if threads != 1:
        return f"the process already runs {threads} threads"
    libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/sys/kernel/cap_last_cap") as last_cap, open("/proc/self/status") as status:
        last = int(last_cap.read())
        permitted = next(int(line.split()[1], 16) for line in status if line.startswith("CapPrm:"))
    keep = {capability for capability in kept.values() if permitted >> capability & 1}
    for capability in range(last + 1):  # the bounding set first: dropping needs CAP_SETPCAP
        if capability not in keep and libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            if ctypes.get_errno() != 22:  # EINVAL: not a capability of this kernel
                return f"cannot drop capability {capability}: {os.strerror(ctypes.get_errno())}"
    mask = sum(1 << capability for capability in keep)
    data = (_CapData * 2)()
    for index in range(2):
        word = (mask >> (32 * index)) & 0xFFFFFFFF
        data[index].effective = data[index].permitted = word
        data[index].inheritable = 0
    if libc.capset(ctypes.byref(_CapHeader(LINUX_CAPABILITY_VERSION_3, 0)), data) != 0:
        return f"capset: {os.strerror(ctypes.get_errno())}"
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"no_new_privs: {os.strerror(ctypes.get_errno())}"
    return None
