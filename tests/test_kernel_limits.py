"""A kernel cannot take what the others need (`kernels/limits.py`): bombs thrown from
inside real kernels of a real service. The bomb's kernel gets an error in itself (a
MemoryError, a failed fork, too many open files); afterwards the service starts a new
kernel and the other kernel still has its variables.

The service runs as root with kernels of their own uid (the shared Python of
tests/support/shared_python.py), and as root without any capability (`setpriv`, as a
non-root user runs it), where kernels share its uid."""

from __future__ import annotations

import pytest

from kernels_service.kernels.errors import ConfigError
from kernels_service.kernels.limits import KernelLimits, memory_available, parse_size
from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import LAUNCHER, running_service, tracebacks
from tests.support.attacks import FORK_BOMB, MEMORY_BOMB, run_in_kernel
from tests.support.shared_python import write_shared_kernelspec

WITHOUT_PRIVILEGES = ("setpriv", "--bounding-set=-all", "--inh-caps=-all", "--")

FILE_BOMB = r"""
import json
files, error = [], None
try:
    while len(files) < 100000:
        files.append(open("/dev/null"))
except OSError as raised:
    error = raised.strerror
opened = len(files)
for file in files:
    file.close()
print(json.dumps({"error": error, "opened": opened}))
"""


@pytest.fixture(params=["own uid", "service's uid"])
def service_options(request, tmp_path) -> dict:
    """How the service runs: as root with kernels of their own uid, or without privileges."""
    if request.param == "own uid":
        write_shared_kernelspec(tmp_path / "jupyter")
        return {"env": {"JUPYTER_PATH": str(tmp_path / "jupyter")}, "args": ("--kernel-isolation=required",)}
    return {"launcher": (*WITHOUT_PRIVILEGES, *LAUNCHER), "args": ()}


def bounded_service(service_options: dict, *bounds: str):
    options = {key: value for key, value in service_options.items() if key != "args"}
    return running_service("--initial-kernels=2", "--pool-size=0", *service_options["args"], *bounds, **options)


def survivors_answer(service, bomb_client: ChannelsClient, other: ChannelsClient) -> None:
    """After a bomb: its kernel answers, the other kept its variable, a new kernel starts."""
    assert stream_text(bomb_client.execute("print(6 * 7)")[1]) == "42\n", "the bomb's kernel died"
    assert stream_text(other.execute("print(kept)")[1]) == "still here\n"
    status, _, model = service.request("POST", "api/kernels", {})
    assert status == 201, model
    fresh = ChannelsClient(service, model["id"])
    assert stream_text(fresh.execute("print('new')", timeout=60)[1]) == "new\n"
    fresh.close()
    assert not tracebacks(service.output())


def two_clients(service) -> tuple[ChannelsClient, ChannelsClient]:
    first, second = [k["id"] for k in service.request("GET", "api/kernels")[2]]
    bomb, other = ChannelsClient(service, first), ChannelsClient(service, second)
    other.execute("kept = 'still here'")
    return bomb, other


#: Each bomb: its bound, its code, the error it must get, and what it took (key, low, high).
BOMBS = {
    "memory": ("--kernel-memory-limit=1G", MEMORY_BOMB, "MemoryError", "taken_mib", -1, 1024),
    "files": ("--kernel-open-files=300", FILE_BOMB, "Too many open files", "opened", 200, 300),
}


@pytest.mark.parametrize("kind", sorted(BOMBS))
def test_a_bomb_gets_its_error_in_its_kernel(service_options, kind):
    bound, code, error, taken, low, high = BOMBS[kind]
    with bounded_service(service_options, bound) as service:
        bomb, other = two_clients(service)
        found = run_in_kernel(bomb, code)
        assert found["error"] == error and low < found[taken] < high, found
        survivors_answer(service, bomb, other)
        bomb.close()
        other.close()


def test_a_fork_bomb_fails_in_its_kernel_where_it_has_a_uid_of_its_own(tmp_path):
    write_shared_kernelspec(tmp_path / "jupyter")
    options = ("--initial-kernels=2", "--pool-size=0", "--kernel-isolation=required", "--kernel-process-limit=100")
    with running_service(*options, env={"JUPYTER_PATH": str(tmp_path / "jupyter")}) as service:
        bomb, other = two_clients(service)
        found = run_in_kernel(bomb, FORK_BOMB)
        # the kernel's own threads count too: it could fork fewer than 100 processes
        assert found["error"] == "BlockingIOError" and 50 < found["forked"] < 100, found
        survivors_answer(service, bomb, other)
        bomb.close()
        other.close()


def test_sizes_and_the_memory_the_service_may_use():
    assert [parse_size(text, "--x") for text in ("0", "1024", "512M", "512mib", "4G", "1t")] == [
        0, 1024, 512 * 2**20, 512 * 2**20, 4 * 2**30, 2**40]  # fmt: skip
    for bad in ("", "G", "-1G", "lots", "1.5G", "4 GB"):
        with pytest.raises(ConfigError, match="--x must be a size in bytes"):
            parse_size(bad, "--x")
    meminfo = "MemTotal:       24683772 kB\nMemFree:  1 kB\n"
    assert memory_available(meminfo, ["", "max\n"]) == 24683772 * 1024
    assert memory_available(meminfo, ["2147483648\n"]) == 2**31, "a container's limit is what the service may use"
    bounds = KernelLimits(2**30, 0, 300, "/usr/bin/prlimit")
    assert bounds.describe() == "memory 1024 MiB, processes unbounded, 300 open files"
    command = bounds.command(["true"], own_uid=True)
    assert command == ["/usr/bin/prlimit", "--data=1073741824:1073741824", "--nofile=300:300", "--", "true"]
    assert KernelLimits(1, 2, 3, "").command(["true"], own_uid=True) == ["true"], "no prlimit: no bound"
    assert bounds.command(["/no/such/kernel"], own_uid=True) == ["/no/such/kernel"], "its launch fails as before"
