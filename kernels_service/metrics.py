"""Prometheus metrics, served at `<base>metrics` (web/metrics.py) in the text format.

Counters and histograms are incremented where things happen (relayed messages, kernel
starts, culls, clients closed, HTTP requests); gauges of state (kernels by state,
connections, ready pooled kernels) are read from the service when scraped. One service
runs per process, so the metrics live in this module's own registry (not the global one).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kernels_service.protocol import KernelMessage

REGISTRY = CollectorRegistry(auto_describe=True)

MESSAGES = Counter("kernels_service_messages", "Kernel messages relayed", ["direction", "channel"], registry=REGISTRY)
BYTES = Counter("kernels_service_bytes", "Bytes of kernel messages relayed", ["direction"], registry=REGISTRY)
KERNEL_START = Histogram(
    "kernels_service_kernel_start_seconds",
    "Time to answer a kernel start request (pooled: taken from the warm pool)",
    ["pooled"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CULLED = Counter("kernels_service_culled", "Kernels culled", ["reason"], registry=REGISTRY)
CLIENTS_CLOSED = Counter(
    "kernels_service_clients_closed", "Clients the service closed, by reason", ["reason"], registry=REGISTRY
)
HTTP_REQUEST_DURATION = Histogram(  # Jupyter Server's name and labels
    "http_request_duration_seconds",
    "Duration of HTTP requests",
    ["method", "handler", "status_code"],
    registry=REGISTRY,
)

TO_KERNEL, FROM_KERNEL = "to_kernel", "from_kernel"
CHANNELS = {TO_KERNEL: ("shell", "stdin", "control"), FROM_KERNEL: ("shell", "iopub", "stdin", "control")}
_MESSAGES = {(d, c): MESSAGES.labels(d, c) for d, channels in CHANNELS.items() for c in channels}
_BYTES = {d: BYTES.labels(d) for d in (TO_KERNEL, FROM_KERNEL)}


def count_message(direction: str, message: KernelMessage) -> None:
    """One relayed message (an iopub message counts once, however many clients get it)."""
    child = _MESSAGES.get((direction, message.channel))
    if child is not None:
        child.inc()
    _BYTES[direction].inc(sum(map(len, message.parts)) + sum(map(len, message.buffers)))


def count_closed(reason: str) -> None:
    """A client closed by the service: "too slow", "bad input", "ping timeout", "culled"..."""
    CLIENTS_CLOSED.labels(reason).inc()


def closed_reason(relay_reason: str) -> str:
    """The metric's reason for a client closed because its kernel went."""
    return "culled" if relay_reason == "kernel culled" else "kernel gone"


def engineio_close_reason(reason: str) -> str | None:
    """The metric's reason for an Engine.IO session the service ended; None when the client
    ended it (or its transport went)."""
    if reason in ("client closed the session", "transport closed", "poll request cancelled", "server shutting down"):
        return None
    if reason.startswith("client too slow"):
        return "too slow"
    if reason in ("ping timeout", "no namespace joined in time"):
        return reason.replace("no namespace joined in time", "connect timeout")
    return "bad input"


class ConnectionCount:
    """Open kernel websockets (socket.io sessions are counted by their server)."""

    def __init__(self) -> None:
        self.websockets = 0


WEBSOCKETS = ConnectionCount()


class ServiceState(Collector):
    """Gauges read when scraped: kernels by execution state, connections by transport,
    ready pooled kernels."""

    def __init__(
        self, kernels: Callable[[], list[Any]], socketio_sessions: Callable[[], int], pool_ready: Callable[[], int]
    ):
        self._kernels = kernels
        self._socketio_sessions = socketio_sessions
        self._pool_ready = pool_ready

    def collect(self) -> Iterator[GaugeMetricFamily]:
        kernels = GaugeMetricFamily("kernels_service_kernels", "Clients' kernels by execution state", labels=["state"])
        states = Tally(record.execution_state for record in self._kernels())
        for state in sorted({"starting", "idle", "busy", "restarting", "dead", *states}):
            kernels.add_metric([state], states.get(state, 0))
        yield kernels
        connections = GaugeMetricFamily("kernels_service_connections", "Open client connections", labels=["transport"])
        connections.add_metric(["websocket"], WEBSOCKETS.websockets)
        connections.add_metric(["socketio"], self._socketio_sessions())
        yield connections
        yield GaugeMetricFamily("kernels_service_pool_ready", "Ready pooled kernels", value=self._pool_ready())


class WatchedService(Collector):
    """The one collector of service state in the registry: it reads the state of the
    service built last in this process (a process runs one service; tests build several)."""

    def __init__(self) -> None:
        self.state: ServiceState | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.state is not None:
            yield from self.state.collect()


WATCHED = WatchedService()
REGISTRY.register(WATCHED)


def watch_service(state: ServiceState) -> None:
    """Read this service's state on each scrape (its builder calls it once)."""
    WATCHED.state = state
