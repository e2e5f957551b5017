"""The registry's lifecycle rules, with jupyter_client replaced by a fake whose every
step waits for the test's word (an asyncio.Event): the orderings that race in real
life are forced here, one by one. The real thing is tested in test_restarts.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kernels_service.kernels import Busy, KernelRegistry, LimitReached, NoSuchKernel, Stopping
from kernels_service.kernels.environment import KernelEnvironment
from kernels_service.kernels.shutdown import stop_all


class FakeKernelManager:
    """One kernel: its process is `alive` from launch until shutdown or kill."""

    def __init__(self, kernel_id: str, gates: dict[str, asyncio.Event]):
        self.id = kernel_id
        self.gates = gates
        self.alive = True
        self.callbacks: dict[str, list] = {"restart": [], "dead": []}
        self.restarted: list = []
        self.calls: list[str] = []
        self.fail_shutdown = False
        self.provisioner = None

    def stop_restarter(self) -> None:
        self.restarter_stopped = True

    def add_restart_callback(self, callback, event: str) -> None:
        self.callbacks[event].append(callback)

    def on_restarted(self, callback) -> None:
        self.restarted.append(callback)

    async def restart_kernel(self, now: bool = False, newports: bool = False) -> None:
        self.calls.append(f"restart now={now}")
        assert newports, "a REST restart takes new ports (registry.restart)"
        await self.gates["restart"].wait()
        for callback in self.restarted:
            callback()

    async def interrupt_kernel(self) -> None:
        self.calls.append("interrupt")

    async def shutdown_kernel(self, now: bool = False) -> None:
        self.calls.append(f"kill now={now}")
        self.alive = False


class FakeMultiKernelManager:
    def __init__(self) -> None:
        self.gates = {name: asyncio.Event() for name in ("launch", "restart", "shutdown")}
        for gate in self.gates.values():
            gate.set()
        self.kernels: dict[str, FakeKernelManager] = {}
        self.launched: list[FakeKernelManager] = []
        self.kernel_spec_manager = self

    def get_kernel_spec(self, name: str) -> Any:
        return {"name": name}

    async def start_kernel(self, kernel_name: str, env: dict) -> str:
        await self.gates["launch"].wait()
        manager = FakeKernelManager(f"k{len(self.launched)}", self.gates)
        self.kernels[manager.id] = manager
        self.launched.append(manager)
        return manager.id

    def get_kernel(self, kernel_id: str) -> FakeKernelManager:
        return self.kernels[kernel_id]

    def list_kernel_ids(self) -> list[str]:
        return list(self.kernels)

    def remove_kernel(self, kernel_id: str) -> None:
        self.kernels.pop(kernel_id, None)

    async def shutdown_kernel(self, kernel_id: str, now: bool = False) -> None:
        manager = self.kernels[kernel_id]
        manager.calls.append(f"shutdown now={now}")
        if manager.fail_shutdown:
            raise RuntimeError("jupyter_client gave up halfway")
        await self.gates["shutdown"].wait()
        manager.alive = False
        del self.kernels[kernel_id]


def make_registry(max_kernels: int = 0) -> tuple[KernelRegistry, FakeMultiKernelManager]:
    multi = FakeMultiKernelManager()
    registry = KernelRegistry(multi, default_name="python3", environment=KernelEnvironment({}), max_kernels=max_kernels)  # type: ignore[arg-type]
    return registry, multi


async def running_kernel(registry: KernelRegistry):
    """A started kernel that has spoken (its first status came): past its start."""
    record = await registry.start()
    registry.record_status(record, "idle")
    return record


def waits_on_something_pending(task: asyncio.Task) -> bool:
    """Whether a task is done, or waits on a future nobody has resolved yet.

    `_fut_waiter` is asyncio's own record of what a task waits for (pure-Python and C
    tasks both have it); a task whose future is done is about to run again."""
    if task.done():
        return True
    waiter = task._fut_waiter  # noqa: SLF001 - the one place a task says what it waits on
    return waiter is not None and not waiter.done()


async def settle() -> None:
    """Return once every other task waits on a gate or is done: nothing left can run.

    A condition, not a count of loop turns; bounded so that a task that never waits
    (a busy loop) fails the test instead of hanging it."""
    for _ in range(1000):
        await asyncio.sleep(0)
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if all(waits_on_something_pending(task) for task in others):
            return
    raise AssertionError("tasks were still runnable after 1000 loop turns")


def run(test):
    return lambda: asyncio.run(test())


@run
async def test_max_kernels_slots_are_taken_before_the_launch_is_awaited():
    registry, multi = make_registry(max_kernels=3)
    multi.gates["launch"].clear()
    starts = [asyncio.ensure_future(registry.start()) for _ in range(10)]
    await settle()
    refused = [task for task in starts if task.done()]
    assert len(refused) == 7 and all(isinstance(task.exception(), LimitReached) for task in refused)
    multi.gates["launch"].set()
    await asyncio.gather(*starts, return_exceptions=True)
    assert len(registry.list()) == 3 and len(multi.launched) == 3


@run
async def test_a_restart_or_interrupt_while_a_restart_is_pending_is_busy():
    registry, multi = make_registry()
    record = await running_kernel(registry)
    multi.gates["restart"].clear()
    restart = asyncio.ensure_future(registry.restart(record.id))
    await settle()
    with pytest.raises(Busy, match="Kernel is restarting"):
        await registry.restart(record.id)
    with pytest.raises(Busy):
        await registry.interrupt(record.id)
    multi.gates["restart"].set()
    await restart
    interrupt = asyncio.ensure_future(registry.interrupt(record.id))
    await settle()
    assert not interrupt.done(), "an interrupt of a kernel that has not spoken yet waits for it"
    registry.record_status(record, "idle")
    await interrupt
    assert multi.kernels[record.id].calls == ["restart now=False", "interrupt"]


@run
async def test_a_delete_during_a_restart_waits_for_it_then_stops_the_new_kernel():
    registry, multi = make_registry()
    record = await running_kernel(registry)
    manager = multi.kernels[record.id]
    multi.gates["restart"].clear()
    restart = asyncio.ensure_future(registry.restart(record.id))
    await settle()
    delete = asyncio.ensure_future(registry.shutdown(record.id))
    await settle()
    assert not delete.done() and manager.alive, "the delete must wait for the restart"
    multi.gates["restart"].set()
    await asyncio.gather(restart, delete)
    assert not manager.alive and record.id not in multi.kernels
    with pytest.raises(NoSuchKernel):
        registry.get(record.id)


class StopWatcher:
    """An observer that notes what the registry answers at the moment clients are told."""

    def __init__(self, registry: KernelRegistry):
        self.registry = registry
        self.seen: list[tuple[bool, bool, int | None]] = []

    async def kernel_started(self, record) -> None:
        pass

    async def kernel_stopping(self, record, reason: str) -> None:
        try:
            found = self.registry.get(record.id) is record
        except NoSuchKernel:
            found = False
        self.seen.append((found, record in self.registry.list(), self.registry.free_slots()))


@run
async def test_a_going_kernel_is_not_found_once_its_clients_are_told_but_counts_until_it_is_gone():
    """REST agrees with the websockets: the moment clients are told, the kernel is a 404 and
    is not listed; until its process is gone, it still holds its `max_kernels` slot."""
    registry, multi = make_registry(max_kernels=1)
    watcher = StopWatcher(registry)
    registry.add_observer(watcher)  # type: ignore[arg-type]
    record = await running_kernel(registry)
    multi.gates["shutdown"].clear()
    delete = asyncio.ensure_future(registry.shutdown(record.id))
    await settle()
    assert watcher.seen == [(False, False, 0)]
    assert multi.kernels[record.id].alive and registry.free_slots() == 0
    with pytest.raises(LimitReached):
        await registry.start()
    with pytest.raises(NoSuchKernel):  # a second DELETE: the kernel is gone to clients already
        await registry.shutdown(record.id)
    multi.gates["shutdown"].set()
    await delete
    assert registry.list() == [] and registry.free_slots() == 1 and not multi.launched[0].alive


@run
async def test_a_failed_shutdown_kills_the_process_and_forgets_the_kernel():
    registry, multi = make_registry()
    record = await running_kernel(registry)
    manager = multi.kernels[record.id]
    manager.fail_shutdown = True
    await registry.shutdown(record.id)
    assert manager.calls == ["shutdown now=False", "kill now=True"] and not manager.alive
    assert registry.list() == [] and record.id not in multi.kernels


@run
async def test_a_kernel_that_has_not_spoken_yet_is_stopped_at_once():
    registry, multi = make_registry()
    record = await registry.start()  # no status reported: still starting
    await registry.shutdown(record.id)
    assert multi.launched[0].calls == ["shutdown now=True"]


@run
async def test_a_stop_during_a_launch_stops_that_kernel_too_and_starts_no_more():
    registry, multi = make_registry()
    multi.gates["launch"].clear()
    start = asyncio.ensure_future(registry.start())
    await settle()
    stop = asyncio.ensure_future(stop_all(registry))
    await settle()
    assert not stop.done(), "the stop waits for the launch in flight"
    multi.gates["launch"].set()
    await stop
    with pytest.raises(Stopping):
        await start
    assert [m.alive for m in multi.launched] == [False]
    with pytest.raises(Stopping):
        await registry.start()


@run
async def test_a_stop_that_cannot_finish_in_time_kills_what_is_left():
    registry, multi = make_registry()
    record = await running_kernel(registry)
    multi.gates["shutdown"].clear()  # jupyter_client's shutdown never returns
    killed = []

    class Provisioner:
        async def kill(self) -> None:
            killed.append(record.id)

        async def wait(self) -> None:
            return None

    multi.kernels[record.id].provisioner = Provisioner()
    await stop_all(registry, timeout=0.2)
    assert killed == [record.id] and registry.list() == []


@run
async def test_statuses_of_a_restarting_kernel_are_not_recorded_and_dead_stays_dead():
    registry, multi = make_registry()
    record = await registry.start()
    manager = multi.kernels[record.id]
    registry.record_status(record, "idle")
    for callback in manager.callbacks["restart"]:  # jupyter_client's auto-restarter: the kernel died
        callback()
    assert record.execution_state == "restarting"
    registry.record_status(record, "idle")  # the old process's last words
    assert record.execution_state == "restarting"
    with pytest.raises(Busy):
        await registry.restart(record.id)
    for callback in manager.restarted:
        callback()
    assert record.execution_state == "starting"
    registry.record_status(record, "idle")
    assert record.execution_state == "idle"
    for callback in manager.callbacks["dead"]:
        callback()
    registry.record_status(record, "idle")
    assert record.execution_state == "dead"


def test_an_interrupt_of_a_kernel_that_never_speaks_is_busy_after_a_while(monkeypatch):
    from kernels_service.kernels import registry as registry_module

    monkeypatch.setattr(registry_module, "INTERRUPT_WAITS_FOR_START", 0.05)

    async def interrupt_a_silent_kernel() -> list[str]:
        registry, multi = make_registry()
        record = await registry.start()
        with pytest.raises(Busy, match="Kernel is starting"):
            await registry.interrupt(record.id)
        return multi.kernels[record.id].calls

    assert asyncio.run(interrupt_a_silent_kernel()) == []
