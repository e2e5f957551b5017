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

The entry point starts as PID 1, and hands the container's environment past tini. PID 1
keeps its environment for the container's whole life, and every process of its uid, the
kernels among them, may read it in /proc/1/environ: the token and whatever secrets the
operator passed with `-e`. The service makes itself undumpable so that its own
environment cannot be read, but no program can do that for tini (each exec makes a
program dumpable again). So PID 1 writes its environment into a pipe and execs tini with
an empty one; tini's child, this script again, reads the environment back, which
empties the pipe (tini still holds its read end: an empty pipe).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

GROUP_GRACE_SECONDS = 10.0
TINI = "/usr/bin/tini"
ENVIRONMENT_FD = "--environment-fd="  # the first argument of the entry point under tini
F_SETPIPE_SZ = 1031  # <linux/fcntl.h>; a pipe of up to 1 MiB needs no privilege


def hand_environment_past_pid_1(argv: list[str]) -> None:
    """As PID 1: exec tini with an empty environment, and this script under it with the
    environment in a pipe. Returns only if the environment does not fit in one."""
    data = json.dumps(dict(os.environ)).encode()
    read_end, write_end = os.pipe()
    try:
        if len(data) > 65536:
            fcntl.fcntl(write_end, F_SETPIPE_SZ, len(data))
        if os.write(write_end, data) != len(data):
            raise OSError("short write")
    except OSError as error:
        print(f"kernels-entrypoint: the environment stays in PID 1's: {error}", file=sys.stderr)
        os.close(read_end)
        os.close(write_end)
        return
    os.close(write_end)
    os.set_inheritable(read_end, True)
    me = os.path.realpath(__file__)
    os.execve(TINI, [TINI, "--", me, f"{ENVIRONMENT_FD}{read_end}", *argv], {})


def take_environment(fd: int) -> None:
    """Under tini: the environment PID 1 handed over, read to its end."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    os.environ.clear()
    os.environ.update(json.loads(b"".join(chunks)))


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
    if os.getpid() == 1:
        hand_environment_past_pid_1(argv)
    if argv and argv[0].startswith(ENVIRONMENT_FD):
        take_environment(int(argv.pop(0)[len(ENVIRONMENT_FD) :]))
    if not argv or argv[0].startswith("-"):
        os.execvp("kernels-service", ["kernels-service", *argv])
    return run_command(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
