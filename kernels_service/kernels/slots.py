"""The `--max-kernels` count: kernels running plus launches in flight, against the limit.

A launch takes its slot before it is awaited (DESIGN decision 11), so that a burst of
starts cannot pass the limit while their kernels are still launching. This is the one
writer of the in-flight count; the registry tells it how many kernels it holds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from kernels_service.kernels.errors import LimitReached


class KernelSlots:
    """Slots under `limit` (0: no limit) for kernels running and being launched."""

    def __init__(self, limit: int = 0):
        self.limit = limit
        self._launching = 0  # launches in flight: each holds a slot
        self._no_launches = asyncio.Event()
        self._no_launches.set()

    def free(self, running: int) -> int | None:
        """Slots left with `running` kernels held (None: no limit)."""
        if not self.limit:
            return None
        return self.limit - running - self._launching

    @contextmanager
    def launching(self, running: int) -> Iterator[None]:
        """Hold a slot for one launch, for as long as the block runs; LimitReached if none
        is free. The kernel launched holds its own slot once the registry holds it."""
        if self.free(running) == 0:
            raise LimitReached(f"Maximum number of kernels ({self.limit}) reached")
        self._launching += 1
        self._no_launches.clear()
        try:
            yield
        finally:
            self._launching -= 1
            if not self._launching:
                self._no_launches.set()

    async def no_launches(self) -> None:
        """Return once no launch is in flight."""
        await self._no_launches.wait()
