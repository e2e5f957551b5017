"""Where local kernels' ipc sockets live: a private directory with a short, absolute path.

Over `ipc` a kernel's five channels are unix sockets, reached only through their
directory: one that is the service's own uid's alone (0700) keeps every other user of
the machine away from every kernel, where loopback TCP ports let anyone on the machine
subscribe to any kernel's output. Unix socket paths are limited to 107 bytes, and a
kernel's socket is named after its connection file (`kernel-<uuid>-ipc-<n>`, 55 bytes at
most), so Jupyter's runtime directory is used only where it is private and short
enough; elsewhere (a test's deep temporary directory, a runtime directory others may
enter) a fresh private directory under the temporary directory is made, and removed
when the service stops.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile

from kernels_service.kernels.directories import PrivateDir

log = logging.getLogger("kernels_service.kernels")

MAX_SOCKET_PATH = 107  # sun_path's 108 bytes, less the terminating NUL
#: `/kernel-<uuid>-ipc-<n>`, or a sandboxed kernel's `/sandbox-<uuid>/ipc-<n>`, n up to 5 digits
LONGEST_SOCKET_NAME = max(len("/kernel-") + 36 + len("-ipc-"), len("/sandbox-") + 36 + len("/ipc-")) + 5


def socket_dir(preferred: str) -> PrivateDir:
    """`preferred` (Jupyter's runtime directory) if private and short enough, else a
    fresh private directory under the first temporary directory that is short enough."""
    if is_private(preferred) and fits(preferred):
        return PrivateDir(preferred, temporary=False)
    for parent in (tempfile.gettempdir(), "/tmp"):
        if os.path.isdir(parent) and fits(os.path.join(parent, "kernels-xxxxxxxx")):
            path = tempfile.mkdtemp(prefix="kernels-", dir=parent)  # 0700, ours
            log.info("Kernel sockets (ipc) in %s (%s is not private or too long for them)", path, preferred)
            return PrivateDir(path, temporary=True)
    raise OSError("no temporary directory has a path short enough for unix sockets")


def is_private(path: str) -> bool:
    """Whether `path` is a directory of this process's uid that no other user may enter."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o077


def fits(directory: str) -> bool:
    """Whether a kernel socket's path in `directory` stays within the unix socket limit."""
    return len(os.path.abspath(directory).encode()) + LONGEST_SOCKET_NAME <= MAX_SOCKET_PATH
