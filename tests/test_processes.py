"""Processes are known by pid and start time: the tests and benchmarks signal and wait on
processes they recorded earlier, and the system gives a pid to another process once it is
free (32768 of them by default). A recorded pid now someone else's must be left alone:
killing it killed another test's process (seen in CI with two workers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kernels_service.kernels.provisioners.kept import KeptKernelProvisioner
from kernels_service.kernels.provisioners.own_group import OwnGroupProvisioner
from kernels_service.processes import process_start
from kernels_service.testing.service import descendants, identified, kill_left, still_running
from tests.support.waiting import wait_until


def test_a_running_process_is_identified_by_its_start_and_killed_while_it_is_the_same():
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        recorded = identified([sleeper.pid])
        assert recorded == {sleeper.pid: process_start(sleeper.pid)}
        assert still_running(recorded) == [sleeper.pid]
        assert kill_left(recorded) == [sleeper.pid]
        assert sleeper.wait(10) == -9
        assert still_running(recorded) == [] and identified([sleeper.pid]) == {}
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_pid_that_is_another_process_now_is_not_signalled():
    """As after a reuse: the pid runs, but not the process recorded (another start time)."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        then = {other.pid: process_start(other.pid) - 1}  # the process the pid was before
        assert still_running(then) == []
        assert kill_left(then) == []
        assert other.poll() is None, "another process with the recorded pid was killed"
    finally:
        other.kill()
        other.wait()


def test_an_ended_process_is_not_running_before_and_after_it_is_reaped():
    ended = subprocess.Popen(["sleep", "0.2"])
    recorded = identified([ended.pid])
    assert still_running(recorded) == [ended.pid]
    os.waitid(os.P_PID, ended.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: a zombie
    assert still_running(recorded) == [] and process_start(ended.pid) is None
    assert ended.wait(10) == 0
    assert still_running(recorded) == []
    assert process_start(2**22 + 1) is None  # past any pid_max


#: A process that leads a group of its own and says which of SIGINT and SIGTERM reached
#: it, in order: it blocks them and waits for them; SIGRTMAX asks it to say "asked" (the
#: lowest-numbered pending signal is taken first, so any INT or TERM sent before it is said
#: before). A SIGKILL sent before the question ends it without an answer.
SIGNAL_WATCHER = """
import signal, sys
watched = {signal.SIGINT, signal.SIGTERM, signal.SIGRTMAX}
signal.pthread_sigmask(signal.SIG_BLOCK, watched)
print("ready", flush=True)
while True:
    got = signal.sigwait(watched)
    print("asked" if got == signal.SIGRTMAX else signal.Signals(got).name, flush=True)
"""

#: A kernel stand-in that leads a group of its own with a child in it.
KERNEL_WITH_A_CHILD = ["sh", "-c", "sleep 60 & wait"]


@contextmanager
def signal_watcher() -> Iterator[subprocess.Popen]:
    """A SIGNAL_WATCHER, ready; killed at the end."""
    command = [sys.executable, "-c", SIGNAL_WATCHER]
    watcher = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert watcher.stdout.readline() == "ready\n"
        yield watcher
    finally:
        watcher.kill()
        watcher.wait()


def signals_so_far(watcher: subprocess.Popen) -> list[str]:
    """The signals the watcher got until now; ["killed"] if it was killed (it ended)."""
    watcher.send_signal(signal.SIGRTMAX)
    said = []
    for _ in range(10):
        line = watcher.stdout.readline().strip()
        if line in ("asked", ""):
            return said if line else [*said, "killed"]
        said.append(line)
    raise AssertionError(f"the watcher says too much: {said}")


def assert_stopping_it_reaches_nothing_of(provisioner: OwnGroupProvisioner, watcher: subprocess.Popen) -> None:
    """An interrupt, a terminate and a kill of the provisioner's kernel: none reaches the watcher."""
    asyncio.run(provisioner.send_signal(signal.SIGINT))
    asyncio.run(provisioner.terminate())
    assert signals_so_far(watcher) == []
    asyncio.run(provisioner.kill())
    assert signals_so_far(watcher) == []


def assert_killed_with_its_group(provisioner: OwnGroupProvisioner, kernel: subprocess.Popen) -> None:
    """`kernel` (KERNEL_WITH_A_CHILD) and its child end when the provisioner kills it."""
    try:
        wait_until(lambda: len(descendants(kernel.pid)) == 1, 10, "the kernel's child")
        group = identified([kernel.pid, *descendants(kernel.pid)])
        asyncio.run(provisioner.kill())
        assert kernel.wait(10) == -9
        wait_until(lambda: not still_running(group), 10, "the kernel's group gone")
    finally:
        kernel.kill()
        kernel.wait()


def kept_provisioner_of(process: subprocess.Popen, start: int | None) -> KeptKernelProvisioner:
    """The provisioner a service takes a kept kernel up with: `process` as the stored pid
    and process group (jupyter_client's kernels lead their own), with the start time `start`."""
    provisioner = KeptKernelProvisioner(kernel_id="k1", kernel_spec=None, parent=None)
    info = {"kernel_id": "k1", "connection_info": {}, "ip": "127.0.0.1"}
    info |= {"pid": process.pid, "pgid": process.pid, "process_start": start}
    asyncio.run(provisioner.load_provisioner_info(info))
    return provisioner


async def launched(command: list[str]) -> OwnGroupProvisioner:
    """A kernel (`command`) launched as jupyter_client launches one: leading its own group."""
    provisioner = OwnGroupProvisioner(kernel_id="k1", kernel_spec=None, parent=None)
    await provisioner.launch_kernel(command)
    assert provisioner.pgid == provisioner.process.pid
    return provisioner


def clock_ticks() -> int:
    """Now, in the clock ticks after boot that /proc/<pid>/stat gives start times in."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def test_a_kept_kernel_whose_process_is_gone_signals_no_group_that_took_its_id():
    """As after a wrap: the stored pid and process group are another group's now. The
    service (root) stopping that kernel must not signal them (jupyter_client signals the
    stored group first)."""
    with signal_watcher() as other:
        assert_stopping_it_reaches_nothing_of(kept_provisioner_of(other, process_start(other.pid) - 1), other)


def test_a_kept_kernel_still_running_is_killed_with_its_group():
    kernel = subprocess.Popen(KERNEL_WITH_A_CHILD, start_new_session=True)
    assert_killed_with_its_group(kept_provisioner_of(kernel, process_start(kernel.pid)), kernel)


def test_a_launched_kernel_that_ended_signals_no_group_that_took_its_id():
    """A kernel the service launched (jupyter_client records its group at the launch)
    ended and was reaped; its group's id is another group's now (set here: a pid cannot
    be made to come round on purpose). Interrupting, terminating or killing that kernel
    signals nothing of the other group."""
    with signal_watcher() as other:
        # the kernel starts a clock tick later at least, as a pid's later process always does
        wait_until(lambda: clock_ticks() > process_start(other.pid), 5, "a clock tick")
        provisioner = asyncio.run(launched(["sleep", "60"]))
        provisioner.process.kill()
        provisioner.process.wait(10)
        provisioner.pgid = other.pid  # the id came round to another group
        assert_stopping_it_reaches_nothing_of(provisioner, other)


def test_a_launched_kernel_is_killed_with_its_group():
    provisioner = asyncio.run(launched(KERNEL_WITH_A_CHILD))
    assert_killed_with_its_group(provisioner, provisioner.process)
