"""Landlock (Linux 5.13+): a process restricts itself, and all it starts, for good.

What a kernel confined here can no longer do, beyond what its uid allows:
- read, list or execute anything under the paths hidden from it (every kernel's
  directory, the service's runtime, store and home), nor write anywhere but its own
  directory, `/dev`'s devices and `/dev/shm`: a file rule grants a directory and all
  below it, so everything else is granted read-only piece by piece around what is hidden
  (`readable_around`);
- trace, or read the memory and `/proc/<pid>/{environ,maps,fd}` of, any process outside
  its own Landlock domain (the service, other kernels): every ABI;
- signal a process outside its domain, or connect to an abstract unix socket bound
  outside it (another kernel's channels over ipc): ABI 6, Linux 6.12.

`abi_version` reads what the running Linux offers (0: no Landlock); what a rule or scope
of a later ABI would add is left out on an earlier one.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
from collections.abc import Callable, Iterable

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# Filesystem access rights (include/uapi/linux/landlock.h), with the ABI that added them.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15  # ABI 2, 3, 5
FS_BY_ABI = {1: (1 << 13) - 1, 2: REFER, 3: TRUNCATE, 5: IOCTL_DEV}
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # what a rule on a file may grant

# Scopes (ABI 6): what a domain may not reach outside itself.
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1
SIGNAL_SCOPING_ABI = 6

READ = EXECUTE | READ_FILE | READ_DIR
EVERYTHING = (1 << 16) - 1  # masked to what the ABI handles
DEVICES = READ | WRITE_FILE | TRUNCATE | IOCTL_DEV  # /dev: open devices, make nothing
SHARED_MEMORY = DEVICES | MAKE_REG | REMOVE_FILE  # /dev/shm: POSIX semaphores and shared memory


class LandlockError(OSError):
    """The running Linux refused to confine this process."""


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    return libc


def abi_version() -> int:
    """The Landlock ABI of the running Linux: 0 without Landlock (too old, or disabled)."""
    libc = _libc()
    version = libc.syscall(ctypes.c_long(SYS_CREATE_RULESET), None, ctypes.c_size_t(0),
                           ctypes.c_uint32(CREATE_RULESET_VERSION))  # fmt: skip
    return max(int(version), 0)


def handled_fs(abi: int) -> int:
    """The filesystem rights a ruleset of `abi` handles: all it knows."""
    return sum(bits for added, bits in FS_BY_ABI.items() if added <= abi) if abi >= 1 else 0


def scopes(abi: int) -> int:
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= SIGNAL_SCOPING_ABI else 0


def ruleset_attr(abi: int) -> bytes:
    """`struct landlock_ruleset_attr` as `abi` knows it: handled fs rights, handled network
    rights (none: kernels keep the network), then (ABI 6) scopes."""
    if abi >= SIGNAL_SCOPING_ABI:
        return struct.pack("=QQQ", handled_fs(abi), 0, scopes(abi))
    if abi >= 4:
        return struct.pack("=QQ", handled_fs(abi), 0)
    return struct.pack("=Q", handled_fs(abi))


def path_beneath_attr(allowed: int, parent_fd: int) -> bytes:
    """`struct landlock_path_beneath_attr` (packed: a u64, then an s32)."""
    return struct.pack("=Qi", allowed, parent_fd)


def is_below(path: str, directory: str) -> bool:
    """Whether `path` lies strictly below `directory` (both absolute and resolved)."""
    return path.startswith(directory.rstrip("/") + "/")


def entries(directory: str) -> list[tuple[str, bool]]:
    """Each entry of `directory`: its path, and whether it is a symbolic link."""
    with os.scandir(directory) as found:
        return sorted((entry.path, entry.is_symlink()) for entry in found)


def readable_around(hidden: Iterable[str], *, listdir: Callable[[str], list[tuple[str, bool]]] = entries,
                    realpath: Callable[[str], str] = os.path.realpath) -> list[str]:  # fmt: skip
    """The fewest paths whose rules grant everything but the `hidden` paths and all below
    them: from `/`, a directory holding nothing hidden is granted whole; one above a hidden
    path is not (its rule would reach the hidden one), but each of its entries is looked at
    in turn (`listdir`: `entries`). A link is taken where it leads: one into a hidden
    directory, or above one, is left out. Entries made later under a directory above a
    hidden one are not granted."""
    hidden_paths = sorted({realpath(path) for path in hidden if path})

    def touches(path: str) -> bool:
        return any(path == secret or is_below(path, secret) or is_below(secret, path) for secret in hidden_paths)

    granted: list[str] = []

    def walk(directory: str) -> None:
        if not touches(directory):
            granted.append(directory)
            return
        if directory in hidden_paths or any(is_below(directory, secret) for secret in hidden_paths):
            return
        try:
            found = listdir(directory)
        except OSError:
            return
        for path, is_link in found:
            if not is_link:
                walk(path)
            elif not touches(target := realpath(path)):
                granted.append(target)

    walk("/")
    return list(dict.fromkeys(granted))


def confine(rules: Iterable[tuple[str, int]], abi: int) -> None:
    """Restrict this process (and all it starts) to `rules`, (path, rights) pairs, under
    every scope `abi` has. Paths that do not exist are left out. LandlockError if the
    running Linux refuses."""
    libc = _libc()
    attr = ruleset_attr(abi)
    ruleset = libc.syscall(ctypes.c_long(SYS_CREATE_RULESET), ctypes.c_char_p(attr), ctypes.c_size_t(len(attr)),
                           ctypes.c_uint32(0))  # fmt: skip
    if ruleset < 0:
        raise _error("landlock_create_ruleset")
    try:
        for path, rights in rules:
            _add_rule(libc, ruleset, path, rights & handled_fs(abi))
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _error("prctl(PR_SET_NO_NEW_PRIVS)")
        if libc.syscall(ctypes.c_long(SYS_RESTRICT_SELF), ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
            raise _error("landlock_restrict_self")
    finally:
        os.close(ruleset)


def _add_rule(libc: ctypes.CDLL, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # gone meanwhile, or never there: nothing to grant
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS
        if not rights:
            return
        attr = path_beneath_attr(rights, fd)
        done = libc.syscall(ctypes.c_long(SYS_ADD_RULE), ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH),
                            ctypes.c_char_p(attr), ctypes.c_uint32(0))  # fmt: skip
        if done != 0:
            raise _error(f"landlock_add_rule({path})")
    finally:
        os.close(fd)


def _error(call: str) -> LandlockError:
    code = ctypes.get_errno() or errno.EINVAL
    return LandlockError(code, f"{call}: {os.strerror(code)}")
