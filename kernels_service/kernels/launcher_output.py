"""What a provisioner's launcher wrote to stderr, kept so that a failed launch says why.

A provisioner other than the local one (gateway_provisioners' `docker-provisioner`, say)
runs its kernelspec's `argv` beside the service: a launcher that asks an engine for the
kernel and exits. When that launcher fails (no Docker API, a module missing from the
interpreter it runs with), the provisioner only says "Error occurred during launch ...
Check Enterprise Gateway log for more information": the launcher's own error is on its
stderr, and nothing read it. The launcher's stderr goes to a private temporary file
instead of a pipe (a pipe nobody reads blocks a chatty launcher, and breaks when the
service stops), and a failed launch or restart logs its last line, with the kernelspec.
"""

from __future__ import annotations

import logging
import tempfile
from typing import IO

log = logging.getLogger("kernels_service.kernels")

#: The most of a launcher's output read back after a failure (its end is what matters).
TAIL_BYTES = 16 * 1024


class LauncherOutput:
    """A launcher's stderr: a temporary file (unlinked: nothing else can open it) that
    every launch of one kernel appends to."""

    def __init__(self) -> None:
        # append mode: the launcher shares this open file, and with it the file's offset,
        # so without O_APPEND its writes would land wherever a read here left the offset
        self.file: IO[bytes] = tempfile.TemporaryFile(mode="a+b", prefix="kernel-launcher-")
        self._launch_began = 0

    def launch_begins(self) -> None:
        """Mark where the next launch's output starts."""
        self._launch_began = self.file.seek(0, 2)

    def last_line(self) -> str:
        """The last non-empty line the launcher wrote since its launch began ('' if none)."""
        end = self.file.seek(0, 2)
        self.file.seek(max(self._launch_began, end - TAIL_BYTES))
        text = self.file.read().decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def report_failure(self, kernelspec: str) -> None:
        """Log, in one line, what the launcher of a kernel of `kernelspec` said last (if it
        said anything: a launch refused before its launcher ran has nothing to add)."""
        said = self.last_line()
        if said:
            log.error("Launcher of a %s kernel failed: %s", kernelspec, said[:500])
