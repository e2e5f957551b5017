"""Which process a pid is: its start time, so that a pid the system gave to another
process since (pids are reused, 32768 of them on Linux's default) is never taken for the
one recorded. Only the standard library: the test helpers use it too."""

from __future__ import annotations

import os


def process_start(pid: int) -> int | None:
    """When the process `pid` started (clock ticks after boot, /proc/<pid>/stat field 22),
    or None if there is no such process, or it has ended (a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def group_still_ours(pgid: int, leader_start: int | None) -> bool:
    """Whether the process group `pgid`, which a process that started at `leader_start`
    led, may still be signalled as that process's: its leader is that process still, or
    no process holds the id (what is left of the group, if anything, is the leader's
    children: Linux gives a pid to no new process while a group still uses it). A live
    process of another start time, or a zombie, with that pid: not ours."""
    if not os.path.exists(f"/proc/{pgid}"):
        return True
    return leader_start is not None and process_start(pgid) == leader_start
