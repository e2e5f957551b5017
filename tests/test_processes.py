"""Processes are known by pid and start time: the tests and benchmarks signal and wait on
processes they recorded earlier, and the system gives a pid to another process once it is
free (32768 of them by default). A recorded pid now someone else's must be left alone:
killing it killed another test's process (seen in CI with two workers)."""

from __future__ import annotations

import os
import subprocess

from kernels_service.processes import process_start
from kernels_service.testing.service import identified, kill_left, still_running


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
