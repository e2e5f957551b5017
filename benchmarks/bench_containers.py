"""Kernels in containers against local kernels, through the service, in one run.

    python benchmarks/bench_containers.py [--repeats 5] [--round-trips 200]

Needs podman (as the container tests use it: its Docker API on a socket of the run's own,
and a network of its own) and builds the kernel image first if it is missing
(`python docker/image.py build --kernel`). For each kind of kernel:

* start: POST api/kernels, then a v1 websocket, until the kernel's first
  `kernel_info_reply` (as bench_start.py measures a local one);
* round trip: `execute_request` of `pass` until its reply and `idle`, on one websocket.

Kinds: a local ipykernel (the service's child), a container kernel as `jupyter
docker-spec install` writes its kernelspec, and one as `kernels_service.containers.
kernelspec` writes it (confined: read-only root, no capabilities, limits). They take
turns; medians, and ratios to the local kernel. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_relay import WebsocketPath  # noqa: E402
from kernels_service.testing.service import Service, descendants, identified, still_running  # noqa: E402
from tests.support.container import Engine, image_script  # noqa: E402
from tests.support.kernelspecs import install_confined_kernelspec, install_kernelspec  # noqa: E402
from tests.support.podman_api import docker_api  # noqa: E402

KERNEL_IMAGE = "localhost/kernels-service-kernel:latest"
WARM_UP = 20  # round trips not counted
#: name: (kernelspec, the client's environment); the client's variable keeps each start out of any pool.
KINDS = {
    "local": ("python3", {"KERNEL_BENCH_UNPOOLED": "1"}),
    "container": ("bench_container", {"KERNEL_USERNAME": "bench"}),
    "confined": ("bench_confined", {"KERNEL_USERNAME": "bench"}),
}


def progress(line: str) -> None:
    print(f"[bench_containers] {line}", file=sys.stderr, flush=True)


async def start(service: Service, kernelspec: str, env: dict[str, str]) -> tuple[float, str, WebsocketPath]:
    """Seconds from POST to the first kernel_info_reply; the kernel and its websocket."""
    started = time.perf_counter()
    status, _, model = service.request("POST", "api/kernels", {"name": kernelspec, "env": env})
    assert status == 201, model
    client = await WebsocketPath.connect(service, model["id"], "v1")
    await client.execute("pass", kernel_info=True)
    return time.perf_counter() - started, model["id"], client


async def round_trips(client: WebsocketPath, count: int) -> list[float]:
    for _ in range(WARM_UP):  # a kernel just started is still busy settling (imports, its first cells)
        await client.execute("pass")
    return [(await client.execute("pass")).seconds for _ in range(count)]


async def measure(service: Service, repeats: int, count: int) -> dict[str, dict[str, list[float]]]:
    figures = {kind: {"start": [], "round trip": []} for kind in KINDS}
    for repeat in range(repeats):
        for kind, (kernelspec, env) in KINDS.items():
            progress(f"{repeat + 1}/{repeats}: {kind}")
            seconds, kernel, client = await start(service, kernelspec, env)
            figures[kind]["start"].append(seconds)
            figures[kind]["round trip"] += await round_trips(client, count)
            client.close()
            assert service.request("DELETE", f"api/kernels/{kernel}")[0] == 204
    return figures


def report(figures: dict[str, dict[str, list[float]]]) -> None:
    for measure_name in ("start", "round trip"):
        local = statistics.median(figures["local"][measure_name])
        for kind, values in figures.items():
            median = statistics.median(values[measure_name])
            print(
                f"{measure_name:10} {kind:9} median {median * 1000:8.2f} ms"
                f"  ({median / local:.2f}x local, {len(values[measure_name])} samples)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--round-trips", type=int, default=200)
    args = parser.parse_args()
    engine = Engine()
    if engine("image", "exists", KERNEL_IMAGE, check=False).returncode != 0:
        progress("building the kernel image (docker/image.py build --kernel)")
        if image_script().main(["build", "--kernel"]) != 0:
            sys.exit("docker/image.py build --kernel failed")
    prefix = Path(tempfile.mkdtemp(prefix="bench-kernelspecs-"))
    install_kernelspec(prefix, KERNEL_IMAGE, KINDS["container"][0])
    install_confined_kernelspec(prefix, KERNEL_IMAGE, KINDS["confined"][0])
    with docker_api(engine) as api:
        argv, env = api.service_options(prefix / "share" / "jupyter")
        service = Service(*argv, "--pool-size=0", env=env)
        try:
            figures = asyncio.run(measure(service, args.repeats, args.round_trips))
        finally:
            children = identified(descendants(service.pid))
            service.stop()
            shutil.rmtree(prefix, ignore_errors=True)
        left = api.containers()
    report(figures)
    leaked = still_running(children)
    if leaked or left:
        sys.exit(f"left behind: processes {leaked}, containers {left}")


if __name__ == "__main__":
    main()
