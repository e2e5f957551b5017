"""Shared fixtures: one real service (base path `jupyter`) for the suite, with a leak check."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings
from xdist.scheduler import LoadScopeScheduling

from kernels_service.testing.channels import ChannelsClient
from kernels_service.testing.service import running_service

# CI runs the same examples every time (a property failure there is reproducible, never luck);
# elsewhere each run explores new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def service():
    """The service as a user starts it; stopped by SIGTERM at the end, leaving no process behind."""
    with running_service() as running:
        yield running


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL server of the tests' own (tests/support/postgres.py), for the suite."""
    from tests.support.postgres import postgres_cluster

    with postgres_cluster() as cluster:
        yield cluster


@pytest.fixture
def replica_runs(postgres):
    """Replicas to start (tests/support/replicas.py), on a database of their own; each
    stopped with SIGINT at the end, leaving no kernel process."""
    from tests.support.replicas import Replicas

    runs = Replicas(postgres, postgres.new_database())
    try:
        yield runs
    finally:
        runs.end()


@pytest.fixture(scope="module")
def shared_replicas(postgres):
    """Three replicas of one store, for the tests of a module that need no options of their own."""
    from tests.support.replicas import Replicas

    runs = Replicas(postgres, postgres.new_database())
    try:
        yield [runs.start() for _ in range(3)]
    finally:
        runs.end()


@pytest.fixture
def replicas(shared_replicas):
    """Three replicas of one store, with no kernel at the start of the test and none left after it."""
    from tests.support.replicas import without_kernels

    without_kernels(shared_replicas)
    yield shared_replicas
    without_kernels(shared_replicas)


@pytest.fixture
def kernel(service):
    """A fresh kernel of the shared service, shut down after the test."""
    kernel_id = service.start_kernel()
    yield kernel_id
    service.request("DELETE", f"api/kernels/{kernel_id}")


@pytest.fixture
def open_client(service):
    """Factory of websocket clients, all closed after the test."""
    clients = []

    def open_(kernel_id: str, protocol: str = "legacy") -> ChannelsClient:
        client = ChannelsClient(service, kernel_id, protocol)
        clients.append(client)
        return client

    yield open_
    for client in clients:
        client.close()


#: The test files that use the container engine: run on one worker, one after the other.
PODMAN_FILES = ("test_container_kernels.py", "test_image.py", "test_kubernetes.py")


class FileScheduling(LoadScopeScheduling):
    """pytest-xdist's scheduling, a work unit per test file, and one for every file that
    uses podman: a file's tests run on one worker, one after the other, and the podman
    files on one worker (they count one engine's containers and images).

    Not xdist's `loadgroup` marks: xdist (3.8) groups by rewriting a test's `_nodeid`,
    which pytest 9.2 no longer reads (a node's id is its `_id`), so the marks were ignored
    without a word and a file's tests ran on both workers at once (two of
    test_confinement's tests killed each other's processes of the same uid)."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return "podman" if path.rsplit("/", 1)[-1] in PODMAN_FILES else path


def pytest_xdist_make_scheduler(config, log):
    return FileScheduling(config, log)


def pytest_terminal_summary(terminalreporter):
    """Figures measured along the way (the image's size and build time)."""
    from tests.support.container import FIGURES

    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_sessionfinish(session, exitstatus):
    """In CI a skipped test is a failure: a missing tool must not pass quietly."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") and reporter is not None and reporter.stats.get("skipped"):
        reporter.write_line("CI: skipped tests count as failures", red=True)
        session.exitstatus = 1


#: How much of the shared service's log a failed test's report shows.
LOG_TAIL = 6000


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test of the shared service shows the end of that service's log: what the
    service did is most of what a CI failure has to tell."""
    report = yield
    service = item.funcargs.get("service") if hasattr(item, "funcargs") else None
    if report.failed and service is not None and hasattr(service, "output"):
        report.sections.append(("the service's log, last lines", service.output()[-LOG_TAIL:]))
    return report
