#!/usr/bin/env python3
"""The image's entry point, under tini.

Options, or nothing, start the service with them (`IMAGE --base-path=/krn/`): the entry
point becomes the service, which shuts its kernels down on SIGTERM and exits 0.

Anything else is a command, run as given, as in the original image
(`IMAGE sh -c "/srv/kernels.py --base-path=/krn/"`). A shell in between would take
SIGTERM and die at once, the service with it, its kernels killed rather than shut down.
So the command runs in a process group of its own, SIGTERM and SIGINT go to that whole
group, and the entry point waits (up to 10 s) for every process of the group to end
before it exits with the command's status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GROUP_GRACE_SECONDS = 10.0


def group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)  # PermissionError would also mean a process is there
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def run_command(argv: list[str]) -> int:
    """Run `argv` in its own process group, forward stop signals to the group, wait for it."""
    try:
        child = subprocess.Popen(argv, process_group=0)
    except OSError as error:
        print(f"kernels-entrypoint: cannot run {argv[0]!r}: {error}", file=sys.stderr)
        return 127

    def forward(signum: int, _frame: object) -> None:
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    status = child.wait()
    deadline = time.monotonic() + GROUP_GRACE_SECONDS
    while group_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return status if status >= 0 else 128 - status


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        os.execvp("kernels-service", ["kernels-service", *argv])
    return run_command(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
