"""Replicas of the service over one PostgreSQL database, for the tests of replicas and of
the balancer before them."""

from __future__ import annotations

import signal

from kernels_service.kernels.provisioners.kept import process_start
from kernels_service.testing.service import Service, descendants, tracebacks
from tests.support.postgres import Cluster
from tests.support.waiting import wait_until

QUIET = ("--initial-kernels=0", "--pool-size=0")


class Replicas:
    """Services on one database; each stopped with SIGINT at the end (their kernels with
    them), and no kernel process left."""

    def __init__(self, cluster: Cluster, database: str):
        self.cluster = cluster
        self.url = cluster.url(database)
        self.services: list[Service] = []

    def start(self, *args: str) -> Service:
        name = f"replica-{len(self.services)}"
        argv = (*QUIET, "--keep-kernels", f"--kernel-store={self.url}", f"--replica-name={name}", *args)
        service = Service(*argv, env=self.cluster.environment())
        self.services.append(service)
        return service

    def end(self) -> None:
        kernels: set[int] = set()
        for service in self.services:
            if service.process.poll() is None:
                kernels |= set(descendants(service.pid))
                assert service.stop(signal.SIGINT) == 0, service.output()
            assert tracebacks(service.output()) == [], service.output()
        left = [pid for pid in kernels if process_start(pid) is not None]
        assert left == [], f"kernel processes outlived their replicas: {left}"


def without_kernels(replicas: list[Service]) -> None:
    """Delete every kernel (through the first replica: the owners act), until no replica
    lists one; every replica must still run."""
    for replica in replicas:
        assert replica.process.poll() is None, f"a replica exited:\n{replica.output()[-3000:]}"
    for kernel in replicas[0].request("GET", "api/kernels")[2]:
        replicas[0].request("DELETE", f"api/kernels/{kernel['id']}")
    wait_until(lambda: all(r.request("GET", "api/kernels")[2] == [] for r in replicas), 30, "no kernel left")
