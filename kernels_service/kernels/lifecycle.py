"""One lifecycle operation of one kernel at a time.

Start, restart, interrupt and shutdown of one kernel must not overlap: jupyter_client
refuses to shut down a kernel it is restarting (and leaves it running), an interrupt
that lands between the old and the new process is lost, and six concurrent restarts
make five errors. So each kernel has a `Lifecycle`: an operation begins only when no
other is pending. A client's restart or interrupt that finds one pending is answered
409 (`Busy`) with what is pending; a shutdown waits its turn, since it must win in the
end. jupyter_client's auto-restarter cannot be refused: it is recorded as pending too
(`begin_automatic`), so requests meanwhile get 409 rather than racing it.
"""

from __future__ import annotations

import asyncio

from kernels_service.kernels.errors import Busy


class Lifecycle:
    """The pending lifecycle operation of one kernel, if any."""

    def __init__(self) -> None:
        self.pending: str | None = None  # "restarting", "interrupting", "shutting down"...
        self._idle = asyncio.Event()
        self._idle.set()

    def begin(self, operation: str) -> None:
        """Start `operation` now, or raise Busy if another is pending."""
        if self.pending is not None:
            raise Busy(f"Kernel is {self.pending}; try again when it is done")
        self._set(operation)

    def begin_automatic(self, operation: str) -> None:
        """Record an operation the service did not ask for (jupyter_client's auto-restart)."""
        self._set(operation)

    async def begin_when_idle(self, operation: str) -> None:
        """Wait until nothing is pending, then start `operation`."""
        while self.pending is not None:
            await self._idle.wait()
        self._set(operation)

    def end(self) -> None:
        self.pending = None
        self._idle.set()

    def _set(self, operation: str) -> None:
        self.pending = operation
        self._idle.clear()
