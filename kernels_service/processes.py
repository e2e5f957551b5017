"""Which process a pid is: its start time, so that a pid the system gave to another
process since (pids are reused, 32768 of them on Linux's default) is never taken for the
one recorded. Only the standard library: the test helpers use it too."""

from __future__ import annotations


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
