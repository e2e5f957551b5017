"""Replicas of the service over one PostgreSQL database, for the tests of replicas and of
the balancer before them."""

from __future__ import annotations

import signal

from kernels_service.processes import process_start
from kernels_service.testing.service import Service, descendants, identified, kill_left, tracebacks
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

    def start(self, *args: str, name: str | None = None, port: int | None = None) -> Service:
        """A replica, named `replica-<n>` in start order unless `name` says (the same name
        again: an upgrade of that replica), on `port` if given (where a balancer sends)."""
        name = name or f"replica-{len(self.services)}"
        argv = (*QUIET, "--keep-kernels", f"--kernel-store={self.url}", f"--replica-name={name}", *args)
        service = Service(*argv, env=self.cluster.environment(), port=port)
        self.services.append(service)
        return service

    def kernel_processes(self) -> dict[int, int]:
        """The local kernels the store keeps (whoever owns them), running now: pid and start
        time (as the store has them: a pid given to another process since is not among them)."""
        pid_and_start = "(entry->'provisioner_info'->>'pid') || ':' || (entry->>'process_start')"
        query = f"SELECT {pid_and_start} FROM kernels_service_kernels"
        stored = [line.split(":") for line in self.cluster.sql(query, self.url.rsplit("/", 1)[1]).split()]
        return {int(pid): int(start) for pid, start in stored if process_start(int(pid)) == int(start)}

    def end(self) -> None:
        """Stop every replica with SIGINT and kill any kernel process left, whatever went
        wrong; then fail on what did (a bad exit, a traceback, a kernel that outlived
        them). Asserting first would leave the other replicas to the SIGTERM of the test
        program's exit, which, with --keep-kernels, leaves their kernels running."""
        kernels: dict[int, int] = {}
        wrong: list[str] = []
        try:
            kernels |= self.kernel_processes()  # taken over: no longer any live replica's child
        except AssertionError as error:
            if "does not exist" not in str(error):  # no schema yet is no fault; an unreadable store is
                wrong.append(f"the kernel store could not be read: {error}")
        for service in self.services:
            if service.process.poll() is None:
                kernels |= identified(descendants(service.pid))
                if service.stop(signal.SIGINT) != 0:
                    wrong.append(f"a replica exited with {service.process.returncode}:\n{service.output()[-3000:]}")
            if tracebacks(service.output()):
                wrong.append(f"a replica logged a traceback:\n{service.output()[-6000:]}")
        left = kill_left(kernels)
        if left:
            wrong.append(f"kernel processes outlived their replicas: {left}")
        assert not wrong, "\n".join(wrong)


def without_kernels(replicas: list[Service]) -> None:
    """Delete every kernel (through the first replica: the owners act), until no replica
    lists one; every replica must still run."""
    for replica in replicas:
        assert replica.process.poll() is None, f"a replica exited:\n{replica.output()[-3000:]}"
    for kernel in replicas[0].request("GET", "api/kernels")[2]:
        replicas[0].request("DELETE", f"api/kernels/{kernel['id']}")
    wait_until(lambda: all(r.request("GET", "api/kernels")[2] == [] for r in replicas), 30, "no kernel left")
