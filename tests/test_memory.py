"""Memory a burst of connections takes is given back: the allocator the service runs
under, and the heap trim after a burst (kernels_service/memory.py). The figures are
measured by benchmarks/bench_memory.py; these tests check the mechanism."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import websocket

from kernels_service import memory
from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import descendants, running_service, tracebacks
from tests.support.waiting import until_true, wait_until


def environment_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def test_the_service_runs_under_the_system_allocator_and_its_kernels_do_not():
    with running_service() as service:
        environment = environment_of(service.pid)  # as the re-executed process started: same PID
        assert environment.get("PYTHONMALLOC") == "malloc"
        (kernel,) = service.request("GET", "api/kernels")[2]
        client = ChannelsClient(service, kernel["id"])
        _, outputs = client.execute("import os; print(sorted(k for k in os.environ if 'MALLOC' in k))")
        client.close()
        assert stream_text(outputs) == "[]\n"
        for pid in descendants(service.pid):
            assert "PYTHONMALLOC" not in environment_of(pid)


def test_an_allocator_the_operator_chose_is_kept():
    with running_service("--initial-kernels=0", env={"PYTHONMALLOC": "pymalloc"}) as service:
        environment = environment_of(service.pid)
        assert environment["PYTHONMALLOC"] == "pymalloc"
        assert "KERNELS_SERVICE_SYSTEM_MALLOC" not in environment
        assert service.request("GET", "api/kernels")[0] == 200


def test_the_heap_is_trimmed_once_a_burst_of_sessions_and_websockets_ends():
    with running_service("--log-level=DEBUG") as service:
        (kernel,) = service.request("GET", "api/kernels")[2]
        sockets = []
        for _ in range(50):
            url = f"ws://127.0.0.1:{service.port}/socket.io/?EIO=4&transport=websocket&token={service.token}"
            sockets.append(websocket.create_connection(url, timeout=30))
            assert sockets[-1].recv().startswith("0{")
        clients = [ChannelsClient(service, kernel["id"]) for _ in range(10)]
        for sock in [*sockets, *(client.ws for client in clients)]:
            sock.close()
        wait_until(lambda: "Heap trimmed: resident memory" in service.output(), 60, "the heap trimmed")
        client = ChannelsClient(service, kernel["id"])  # and it serves on
        assert stream_text(client.execute("print('still here')")[1]) == "still here\n"
        client.close()
        assert not tracebacks(service.output())


@pytest.fixture
def counted_trims(monkeypatch):
    """The trimmer's policy alone: malloc_trim replaced by a counter."""
    trims: list[float] = []
    monkeypatch.setattr(memory, "MALLOC_TRIM", lambda pad: trims.append(time.monotonic()) or 1)
    return trims


def test_a_burst_of_releases_makes_one_trim_after_it(counted_trims):
    async def burst() -> None:
        trimmer = memory.HeapTrimmer(quiet=0.05, longest=10)
        for _ in range(1000):
            trimmer.released()
        await until_true(lambda: counted_trims, 10, "a trim")
        await asyncio.sleep(0.2)  # nothing more is due
        trimmer.released()  # a new burst, a new trim
        await until_true(lambda: len(counted_trims) == 2, 10, "a second trim")

    asyncio.run(burst())
    assert len(counted_trims) == 2


def test_releases_that_never_stop_still_trim_within_the_longest_wait(counted_trims):
    async def steady_stream() -> None:
        trimmer = memory.HeapTrimmer(quiet=0.2, longest=0.5)
        deadline = time.monotonic() + 3
        while not counted_trims and time.monotonic() < deadline:
            trimmer.released()  # more often than `quiet`: the burst never goes quiet
            await asyncio.sleep(0.01)

    asyncio.run(steady_stream())
    assert counted_trims, "a steady stream of releases was never trimmed"
