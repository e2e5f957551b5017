"""The composition root: the service's parts made from a `ServiceConfig`, wired, started, stopped.

Every part is made here and nowhere else, in the order they depend on each other:
kernels (jupyter_client's manager, the environment kernels get, the registry, the
pool, the culler), the relay hub, the two doors (the tornado application and the
socket.io server) and the HTTP server. New parts (a kernel store, provisioner
settings) plug in here, in `build`. The command line (`app.py`) only turns options into
a `ServiceConfig`; tests and benchmarks can build and run a service in-process:

    service = build(ServiceConfig(port=0, token="t", initial_kernels=0))
    await service.start()
    ...
    await service.stop()
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.provisioning import KernelProvisionerFactory
from jupyter_core.paths import jupyter_data_dir, jupyter_runtime_dir
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application
from traitlets.config import Config

from kernels_service.access import AccessPolicy, remote_access_default, resolve_token
from kernels_service.config import ServiceConfig
from kernels_service.hardening import KEPT_CAPABILITIES, keep_only_capabilities
from kernels_service.kernels import KernelRegistry, isolation
from kernels_service.kernels.culler import Culler, CullPolicy
from kernels_service.kernels.directories import PrivateDir, connection_dir
from kernels_service.kernels.environment import KernelEnvironment, inherited_environment
from kernels_service.kernels.fleet import Fleet
from kernels_service.kernels.ipc import socket_dir
from kernels_service.kernels.keeper import KernelKeeper
from kernels_service.kernels.kernel_uids import KernelUids
from kernels_service.kernels.limits import kernel_limits
from kernels_service.kernels.manager import ServiceMultiKernelManager
from kernels_service.kernels.pool import KernelPool
from kernels_service.kernels.ports import PortPicker, default_port_range, ephemeral_range, parse_port_range
from kernels_service.kernels.provisioners.bubblewrap import PROVISIONER_NAME, check_bubblewrap
from kernels_service.kernels.provisioners.confined import PROVISIONER_NAME as CONFINED_PROVISIONER
from kernels_service.kernels.separation import Separation
from kernels_service.kernels.shutdown import let_go_of_kept, stop_all
from kernels_service.kernels.store import KernelStore, Replica, StoreUnavailable
from kernels_service.kernels.stores import POSTGRESQL_SCHEMES, make_store
from kernels_service.logs import jupyter_client_log
from kernels_service.metrics import ServiceState, watch_service
from kernels_service.relay import SERVICE_RESTARTING, RelayHub
from kernels_service.relay.replay import ReplayPolicy
from kernels_service.socketio.engine import EngineConfig
from kernels_service.socketio.handlers import engineio_routes
from kernels_service.socketio.kernel_namespaces import KernelNamespaces
from kernels_service.socketio.server import EngineServer
from kernels_service.web import make_web_app
from kernels_service.web.base import Services
from kernels_service.web.routes import normalise_base_path

log = logging.getLogger("kernels_service")

KERNEL_MANAGER_CLASS = "kernels_service.kernels.manager.ServiceKernelManager"


@dataclass
class KernelsServer:
    """A built service: its parts, and the HTTP server that serves them once started."""

    config: ServiceConfig
    services: Services
    socketio: EngineServer
    web_app: Application
    culler: Culler
    context: zmq.Context  # jupyter_client's ZeroMQ context, every kernel socket's
    store: KernelStore | None = None  # the kept kernels' store (--keep-kernels)
    directories: tuple[PrivateDir, ...] = ()  # the kernels' connection-file and ipc directories
    separation: Separation | None = None  # how local kernels are kept apart (uids of their own, Landlock)
    http: HTTPServer | None = None
    port: int = 0  # the port it listens on, once started (the one the system chose, for port 0)
    fleet: Fleet | None = None  # the replicas of a shared store, this one among them
    _background: tuple[asyncio.Task[None], ...] = ()

    async def start(self) -> None:
        """Listen, start the initial kernels (never from the pool), then the culler and the pool."""
        if self.store is not None:
            await self.store.open()  # StoreError (exit 1) before anything listens or runs
        sockets = bind_sockets(self.config.port, address=self.config.ip)
        self.port = sockets[0].getsockname()[1]
        self.http = HTTPServer(self.web_app, max_body_size=self.config.max_message_size)
        self.http.add_sockets(sockets)
        self._background = (asyncio.ensure_future(self.culler.run()),)
        taken = await self.services.registry.take_up_kept()
        if self.fleet is not None:
            self._background += (asyncio.ensure_future(self.fleet.run()),)
        for _ in range(max(0, self.config.initial_kernels - taken)):  # kernels taken up count as initial ones
            await self.services.registry.start()
        if self.services.pool is not None:
            self._background += (asyncio.ensure_future(self.services.pool.run()),)
        log.info("Serving at http://%s:%s%sapi/kernels", self.config.ip, self.port, self.services.base_path)

    async def stop(self, keep: bool = False) -> None:
        """Stop taking requests, close every client, stop every kernel (killing what does
        not stop in time), then drop the connections left. With `keep` (--keep-kernels and
        SIGTERM), the kernels kept are left running instead, with their sockets."""
        for task in self._background:
            task.cancel()
        self.services.drain.draining = True
        if self.fleet is not None:
            await self.fleet.settle()  # no kernel taken up behind the stop's back
        if keep and self.fleet is not None:
            await self.hand_over()  # still listening: the others take their clients' sessions from here
        if self.http is not None:
            self.http.stop()
        self.socketio.close_all()
        await self.services.hub.close_all(SERVICE_RESTARTING if keep else "service stopping")
        await stop_all(self.services.registry, keep=keep)
        self.context.destroy(linger=0)  # no socket may keep the process from exiting
        if self.store is not None:
            await release_leases(self.store, keep)
            await self.store.close()
        if self.http is not None:
            await self.http.close_all_connections()
        if not self.config.keep_kernels:  # kept kernels still use theirs
            for directory in self.directories:
                directory.remove()

    async def hand_over(self) -> None:
        """Drain a replica of a shared store (SIGTERM): every websocket client is told to
        come back (1012: through the balancer, to another replica) and its session is
        kept for the replica it comes back to (relay/handover.py); the kept kernels are
        let go of and their leases released at once, so that the other replicas take
        them over within a refresh instead of a lease time (kernels/fleet.py). It waits,
        at most HANDOVER_WAIT seconds, until every session was taken."""
        assert self.fleet is not None and self.store is not None
        hub = self.services.hub
        self.fleet.handing_over = True
        self.services.registry.refuse_starts()
        offered = hub.handover_offers()
        awaited = [(kernel_id, key) for kernel_id, key, connected in offered if connected]
        try:
            await self.store.offer_handovers([(kernel_id, key) for kernel_id, key, _ in offered], HANDOVER_WAIT)
        except StoreUnavailable:
            log.warning("The kernel store did not answer: %d websocket sessions are not handed over", len(offered))
            awaited = []
        hub.hand_over(awaited, SERVICE_RESTARTING)
        await let_go_of_kept(self.services.registry)
        await release_leases(self.store, keep=True)
        left = await hub.handovers_taken(HANDOVER_WAIT)
        log.info(
            "Kernels handed over to the other replicas; %d of %d connected websocket sessions taken",
            len(awaited) - left, len(awaited),
        )  # fmt: skip


#: Seconds a draining replica waits for its websocket clients to come back to another
#: replica and that replica to take their sessions (relay/handover.py).
HANDOVER_WAIT = 15.0


#: gateway_provisioners (0.5) waits for container kernels' connection information with a
#: tornado PeriodicCallback that, every 0.1 ms once its first kernel has launched, calls a
#: blocking `accept` with a timeout of GP_SOCKET_TIMEOUT (10 ms by default): the service's
#: event loop is then blocked nearly all the time, and a local kernel's round trip went from
#: 7 to 33 ms (benchmarks/bench_containers.py). At 0 the socket is non-blocking, and asyncio
#: waits for a connection instead. It reads the variable when it is imported, that is when
#: its first kernel starts, after this is set; an operator's own value is kept.
PROVISIONERS_SOCKET_TIMEOUT = ("GP_SOCKET_TIMEOUT", "0")


def build(config: ServiceConfig) -> KernelsServer:
    """Every part of a service, wired (nothing runs until `start`)."""
    config.check()
    os.environ.setdefault(*PROVISIONERS_SOCKET_TIMEOUT)
    if config.kernel_sandbox == "bubblewrap":
        check_bubblewrap()
    token = resolve_token(config.token, config.token_file, f"{config.ip}:{config.port}")
    runtime = connection_dir()
    directories: tuple[PrivateDir, ...] = (runtime,)
    try:
        sockets = socket_dir(runtime.path) if config.kernel_transport in ("auto", "ipc") else None
        directories += (sockets,) if sockets is not None else ()
        return build_parts(config, token, runtime, sockets)
    except BaseException:
        for directory in directories:
            directory.remove()
        raise


def build_parts(config: ServiceConfig, token: str, runtime: PrivateDir, sockets: PrivateDir | None) -> KernelsServer:
    """`build`, once the token and the kernels' directories are known."""
    separation, why_not_apart = kernel_separation(config, runtime, sockets)
    multi = build_multi_kernel_manager(config, runtime.path, sockets, separation)
    plan = isolation_plan(config, multi.kernel_spec_manager.get_all_specs(), separation, why_not_apart)
    isolation.report(plan, config.kernel_isolation)
    replica = replica_of(config)
    store = make_store(config.kernel_store or default_kernel_store(), replica) if config.keep_kernels else None
    registry = build_registry(config, multi, store)
    fleet = registry.join_fleet(store) if store is not None and store.shared else None
    hub = RelayHub(registry, ReplayPolicy(config.replay_window, config.replay_limit))
    pool = build_pool(config, registry, hub)
    services = Services(
        registry,
        hub,
        access_policy(config, token),
        normalise_base_path(config.base_path),
        client_queue_limit=config.client_queue_limit,
        ping_interval=config.websocket_ping_interval,
        pool=pool,
        metrics_no_auth=config.metrics_no_auth,
        replica_name=replica.name,
    )
    socketio = build_socketio(config, services)
    watch_service(ServiceState(registry.list, lambda: len(socketio.sessions), lambda: pool.ready if pool else 0))
    web_app = make_web_app(
        services,
        engineio_routes(socketio, ["/socket.io/", f"{services.base_path}socket.io/"]),
        websocket_max_message_size=config.max_message_size,
    )
    cull_policy = CullPolicy(config.cull_idle_timeout, config.cull_interval, config.cull_connected, config.cull_busy)
    directories = (runtime,) if sockets is None else (runtime, sockets)
    return KernelsServer(
        config,
        services,
        socketio,
        web_app,
        Culler(registry, cull_policy),
        multi.context,
        store,
        directories,
        separation,
        fleet=fleet,
    )


def replica_of(config: ServiceConfig) -> Replica:
    """This service as the other replicas of a shared store know it: its name (by default
    `<hostname>:<port>`, the same again after a restart) and where they reach it."""
    name = config.replica_name or f"{socket.gethostname()}:{config.port}"
    address = config.replica_url
    if not address:
        host = config.ip
        if host in ("", "0.0.0.0", "::"):
            host = host_address()
        host = f"[{host}]" if ":" in host else host
        address = f"http://{host}:{config.port}{normalise_base_path(config.base_path)}"
    return Replica(name=name, address=address, lease_time=config.lease_time)


def host_address() -> str:
    """This host's address as others see it (a service bound to all of them)."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


async def release_leases(store: KernelStore, keep: bool) -> None:
    """A service that stops leaving its kernels running lets go of their leases at once,
    so that another replica (or its own next start) takes them without waiting."""
    if not (keep and store.shared):
        return
    try:
        await store.release()
    except StoreUnavailable:
        log.warning("The kernel store did not answer: the kept kernels' leases run out by themselves")


def kernel_separation(
    config: ServiceConfig, runtime: PrivateDir | None, sockets: PrivateDir | None, *, prepare: bool = True
) -> tuple[Separation | None, str]:
    """How local kernels are kept apart (kernels.isolation), hiding from Landlock-confined
    kernels the service's runtime and ipc directories, Jupyter's runtime directory and the
    kept kernels' store."""
    hidden = [directory.path for directory in (runtime, sockets) if directory is not None]
    hidden += [jupyter_runtime_dir()]
    store = config.kernel_store or default_kernel_store()
    if not store.startswith(POSTGRESQL_SCHEMES):  # a database's files are not the service's to hide
        hidden.append(os.path.dirname(os.path.abspath(store)))
    policy, sandbox = config.kernel_isolation, config.kernel_sandbox
    return isolation.kernel_separation(
        policy, sandbox, config.kernel_uids, tuple(hidden), prepare=prepare, processes=config.kernel_process_limit
    )


def access_policy(config: ServiceConfig, token: str) -> AccessPolicy:
    """Who may talk to the service: the token, origins, and which `Host` headers are served."""
    remote = config.allow_remote_access
    if remote is None:
        remote = remote_access_default(token, config.ip)
    if not remote:
        log.info("Serving only requests to a local Host (%s, loopback addresses)", ", ".join(config.local_hostnames))
    return AccessPolicy(token, config.allow_origin, remote_access=remote, local_hostnames=config.local_hostnames)


def drop_root_powers(server: KernelsServer) -> None:
    """A root service that gives kernels uids keeps only what that takes (hardening). For
    the service's own process (`serving.serve`), never a process that builds one to test it."""
    if not isinstance(server.separation, KernelUids) or os.geteuid() != 0:
        return
    why_not = keep_only_capabilities()
    if why_not is None:
        log.info("The service keeps only the capabilities it needs: %s; no_new_privs", ", ".join(KEPT_CAPABILITIES))
    else:
        log.warning("The service keeps every capability of root: %s", why_not)


def isolation_plan(
    config: ServiceConfig, specs: dict[str, Any], separation: Separation | None, why_not_apart: str
) -> list[isolation.KernelspecIsolation]:
    """How each kernelspec's kernels will be kept apart (kernels.isolation); `specs`:
    jupyter_client's `get_all_specs()`. The start logs it, --show-config shows it."""
    return isolation.plan_isolation(
        specs,
        policy=config.kernel_isolation,
        sandbox=config.kernel_sandbox,
        transport=config.kernel_transport,
        separation=separation,
        why_not_apart=why_not_apart,
    )


def build_multi_kernel_manager(
    config: ServiceConfig, runtime: str, sockets: PrivateDir | None, separation: Separation | None = None
) -> Any:
    """jupyter_client's manager of kernel managers, ours: kernels' connection files in
    `runtime`, their transport (ipc sockets in `sockets`), their ports, how they are kept
    apart, and provisioners."""
    multi = ServiceMultiKernelManager(
        log=jupyter_client_log(),
        config=kernel_manager_config(config, sockets),
        kernel_manager_class=KERNEL_MANAGER_CLASS,
        kernel_spec_manager=KernelSpecManager(config=config.jupyter_config),
        connection_dir=runtime,
    )
    limits = kernel_limits(config.kernel_memory_limit, config.kernel_process_limit, config.kernel_open_files)
    log.info("Each local kernel may take: %s", limits.describe())
    parts = {"port_picker": port_picker(config), "kernel_separation": separation, "kernel_limits": limits}
    given = {name: part for name, part in parts.items() if part is not None}
    if given:
        make_manager = multi.kernel_manager_factory  # jupyter_client's (it shares the ZeroMQ context)
        multi.kernel_manager_factory = lambda *args, **kwargs: make_manager(*args, **given, **kwargs)
    # jupyter_client's provisioner factory is a process-wide singleton, configured by
    # whoever makes it first (a kernelspec look-up, with no config): set it here
    factory = KernelProvisionerFactory.instance(parent=multi)
    if config.kernel_sandbox == "bubblewrap":
        factory.default_provisioner_name = PROVISIONER_NAME
    else:
        factory.default_provisioner_name = CONFINED_PROVISIONER
    return multi


def build_registry(config: ServiceConfig, multi: Any, store: KernelStore | None) -> KernelRegistry:
    """The registry over jupyter_client's manager, with the environment kernels get and
    the store of kept kernels (--keep-kernels)."""
    registry = KernelRegistry(
        multi,
        default_name=config.kernel_name or multi.default_kernel_name,
        environment=KernelEnvironment(
            inherited_environment(os.environ, config.kernel_env_inherit), config.allowed_kernel_env
        ),
        max_kernels=config.max_kernels,
    )
    if store is not None:
        registry.set_keeper(KernelKeeper(store, config.max_kernels or None))
    return registry


def default_kernel_store() -> str:
    """Where --keep-kernels keeps its kernels when --kernel-store does not say."""
    return os.path.join(jupyter_data_dir(), "kernels-service", "kernels.sqlite")


def kernel_manager_config(config: ServiceConfig, sockets: PrivateDir | None) -> Config:
    """jupyter_client's configuration as given, with the kernels' transport policy set on
    our manager class (it overrides any `--KernelManager.transport`)."""
    merged = copy.deepcopy(config.jupyter_config) if config.jupyter_config is not None else Config()
    merged.ServiceKernelManager.transport_policy = config.kernel_transport
    merged.ServiceKernelManager.keep = config.keep_kernels
    if sockets is not None:
        merged.ServiceKernelManager.ipc_dir = sockets.path
    return merged


def port_picker(config: ServiceConfig) -> PortPicker | None:
    """Where local TCP kernels get their ports: `--kernel-port-range`, else the band below
    the ephemeral range; None (jupyter_client's own way) where there is no such band."""
    if config.kernel_port_range:
        return PortPicker(parse_port_range(config.kernel_port_range))
    band = default_port_range(ephemeral_range())
    if band is None:
        log.warning("No room below the ephemeral port range: kernel ports are picked by jupyter_client")
        return None
    return PortPicker(band)


def build_pool(config: ServiceConfig, registry: KernelRegistry, hub: RelayHub) -> KernelPool | None:
    """The warm pool (None with pool_size 0); its kernelspecs must exist."""
    if config.pool_size == 0:
        return None
    names = [registry.default_name, *config.pool_kernelspecs]
    for name in names:
        registry.check_kernelspec(name)
    pool = KernelPool(registry, hub.wait_ready, config.pool_size, names)
    registry.set_pool(pool)
    return pool


def build_socketio(config: ServiceConfig, services: Services) -> EngineServer:
    """The Engine.IO server and kernel-relay's namespaces on it."""
    return EngineServer(
        KernelNamespaces(services.hub, services.policy, services.base_path, config.client_queue_limit),
        services.policy,
        EngineConfig(
            config.ping_interval,
            config.ping_timeout,
            config.max_http_buffer_size,
            max_outgoing_bytes=config.client_queue_limit,
        ),
        connect_timeout=config.connect_timeout,
        max_sessions=config.max_socketio_sessions,
        heap=services.heap,
    )
