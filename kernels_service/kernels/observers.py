"""The parts told of kernels' lives (the relay hub is one), told in the order they were added."""

from __future__ import annotations

from kernels_service.kernels.record import KernelObserver, KernelRecord


class Observers:
    """Tells every observer of a kernel's start, stop, restart and death (`KernelObserver`)."""

    def __init__(self) -> None:
        self._observers: list[KernelObserver] = []

    def add(self, observer: KernelObserver) -> None:
        self._observers.append(observer)

    async def started(self, record: KernelRecord) -> None:
        for observer in self._observers:
            await observer.kernel_started(record)

    async def stopping(self, record: KernelRecord, reason: str) -> None:
        for observer in self._observers:
            await observer.kernel_stopping(record, reason)

    def restarting(self, record: KernelRecord, automatic: bool) -> None:
        for observer in self._observers:
            observer.kernel_restarting(record, automatic)

    def restarted(self, record: KernelRecord) -> None:
        for observer in self._observers:
            observer.kernel_restarted(record)

    def died(self, record: KernelRecord) -> None:
        for observer in self._observers:
            observer.kernel_died(record)
