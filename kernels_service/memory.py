"""Give the heap back to the system once a burst of connections is over.

A burst of 2000 socket.io sessions or 300 websocket clients takes ~40 MB of small
objects. When they close, CPython frees every one of them (nothing leaks: the next
burst reuses the memory), but neither allocator hands the pages back on its own:

* pymalloc keeps a 1 MiB arena as long as one object in it lives, and the few
  long-lived objects made during a burst pin most of its arenas;
* glibc's malloc returns only the top of its heap, not the free pages in the middle.

So the service runs with `PYTHONMALLOC=malloc` (see `launch.py`) and, once releases
have stopped for `quiet` seconds (or `longest` seconds after the first one, while they
go on), collects the cycles a closed connection leaves (tornado's handler, stream and
futures refer to each other) and calls glibc's `malloc_trim(0)`, which returns every
free page of the heap. Measured by `benchmarks/bench_memory.py`. Elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import sys
import time
from collections.abc import Callable

from tornado.ioloop import IOLoop

log = logging.getLogger("kernels_service")
MB = 1024 * 1024


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


MALLOC_TRIM = _find_malloc_trim()


def resident_bytes() -> int:
    """This process's resident memory (Linux), 0 where /proc cannot tell."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class HeapTrimmer:
    """Trims the heap after a burst of releases: debounced, at most one trim per burst."""

    def __init__(self, quiet: float = 1.0, longest: float = 10.0):
        self.quiet = quiet
        self.longest = longest
        self._first: float | None = None  # first release of the burst waiting for a trim
        self._last = 0.0
        self._timer: object | None = None

    def released(self) -> None:
        """Many or large objects were just freed (a session or a websocket closed)."""
        if MALLOC_TRIM is None:
            return
        now = time.monotonic()
        self._last = now
        if self._first is None:
            self._first = now
        if self._timer is None:
            self._timer = IOLoop.current().call_later(self.quiet, self._due)

    def _due(self) -> None:
        self._timer = None
        now = time.monotonic()
        quiet_since = now - self._last
        if quiet_since < self.quiet and now - self._first < self.longest:
            self._timer = IOLoop.current().call_later(self.quiet - quiet_since, self._due)
            return
        self._first = None
        before = resident_bytes()
        gc.collect()  # a closed connection's handler, stream and futures are freed in cycles
        MALLOC_TRIM(0)
        log.debug("Heap trimmed: resident memory %.1f MB -> %.1f MB", before / MB, resident_bytes() / MB)


#: Set (with PYTHONMALLOC) by `run_under_system_malloc` for the process it re-executes.
_REEXECUTED = "KERNELS_SERVICE_SYSTEM_MALLOC"


def run_under_system_malloc() -> None:
    """Re-execute the service with `PYTHONMALLOC=malloc`, which `malloc_trim` needs.

    Nothing happens where there is no `malloc_trim`, or when the operator has chosen an
    allocator (any `PYTHONMALLOC`, even `pymalloc`). The re-executed process keeps the
    PID and arguments; it takes both variables out of its environment, so the kernels
    it starts run with Python's own allocator.
    """
    if os.environ.pop(_REEXECUTED, None) is not None:
        os.environ.pop("PYTHONMALLOC", None)
        return
    if MALLOC_TRIM is None or "PYTHONMALLOC" in os.environ:
        return
    os.environ.update({"PYTHONMALLOC": "malloc", _REEXECUTED: "1"})
    try:
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    except OSError:  # e.g. no executable path: serve with the allocator we have
        os.environ.pop("PYTHONMALLOC")
        os.environ.pop(_REEXECUTED)
