"""The service application: options, wiring, start, signals and a graceful stop.

Every option is a traitlets trait with help text, settable on the command line
(`--port=8001`), in a config file (`c.KernelsService.port = 8001`), and, for the few the
Docker image needs, from the environment through `ENVIRONMENT` (one table, one helper).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import sys
import tempfile
from copy import deepcopy

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.multikernelmanager import AsyncMultiKernelManager
from jupyter_core.paths import jupyter_runtime_dir
from jupyter_core.utils import ensure_dir_exists
from tornado.httpserver import HTTPServer
from tornado.log import enable_pretty_logging
from traitlets import Bool, Enum, Float, Integer, List, Unicode, default
from traitlets.config import Application
from traitlets.config.loader import KVArgParseConfigLoader

from kernels_service import __version__
from kernels_service.access import AccessPolicy
from kernels_service.effective_config import effective_configuration, format_configuration
from kernels_service.kernels import KernelRegistry, KernelsError
from kernels_service.kernels.culler import Culler, CullPolicy
from kernels_service.kernels.pool import KernelPool
from kernels_service.kernels.registry import sanitised_environment
from kernels_service.metrics import ServiceState, watch_service
from kernels_service.relay import RelayHub
from kernels_service.relay.replay import ReplayPolicy
from kernels_service.socketio.engine import EngineConfig
from kernels_service.socketio.handlers import engineio_routes
from kernels_service.socketio.kernel_namespaces import KernelNamespaces
from kernels_service.socketio.server import EngineServer
from kernels_service.web import make_web_app
from kernels_service.web.base import Services
from kernels_service.web.routes import normalise_base_path

log = logging.getLogger("kernels_service")

#: Options that may come from the environment (lower priority than config and CLI).
ENVIRONMENT = {
    "kernel_name": "KERNEL_NAME",
    "port": "PORT",
    "ip": "IP",
    "base_path": "BASE_PATH",
    "token": "KERNELS_SERVICE_TOKEN",
    "allow_origin": "ALLOW_ORIGIN",
    "pool_size": "KERNELS_POOL_SIZE",
}
#: Variables kernels never inherit from the service.
SECRET_VARIABLES = ("KERNELS_SERVICE_TOKEN", "JUPYTER_TOKEN", "JPY_API_TOKEN")
KERNEL_MANAGER_CLASS = "kernels_service.kernels.manager.ServiceKernelManager"


class KernelsService(Application):
    """Launch Jupyter kernels over HTTP, websockets and socket.io."""

    name = "kernels-service"
    version = __version__
    description = (
        "Run Jupyter kernels for web applications: the Jupyter REST API and kernel websocket, "
        "and kernel channels over socket.io (kernel-relay's namespaces, socket.io clients 1.x to 4.x)."
    )

    #: Options set from environment variables, with their variables (for --show-config).
    environment_sources: dict[str, str]

    log_level = Enum(
        (0, 10, 20, 30, 40, 50, "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"),
        default_value=logging.INFO,
        help="Set the log level by value or name (20 is INFO).",
    ).tag(config=True)
    port = Integer(8000, config=True, help="Port to listen on (env PORT).")
    ip = Unicode("127.0.0.1", config=True, help="Address to bind (env IP).")
    base_path = Unicode(
        "/",
        config=True,
        help="Path prefix of every route: jupyter, /jupyter and /jupyter/ are the same (env BASE_PATH).",
    )
    token = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Token clients must send (env KERNELS_SERVICE_TOKEN). Unset: a random one is "
        "generated and logged. Empty string: no token (local demos only).",
    )
    kernel_name = Unicode(
        config=True, help="Kernelspec of the initial kernel and the default for new ones (env KERNEL_NAME)."
    )
    initial_kernels = Integer(1, config=True, help="Kernels started at launch (0: none).")
    max_kernels = Integer(0, config=True, help="Most kernels running at once (0: no limit).")
    pool_size = Integer(
        1,
        config=True,
        help="Ready kernels kept for each pooled kernelspec, handed out by start requests that fit (0: no pool; "
        "env KERNELS_POOL_SIZE).",
    )
    pool_kernelspecs = List(
        Unicode(), config=True, help="Kernelspecs pooled besides the default one (--pool-kernelspecs=ir ...)."
    )
    cull_idle_timeout = Float(
        0, config=True, help="Shut down kernels idle for longer than this many seconds (0: never; Jupyter Server's)."
    )
    cull_interval = Float(
        300, config=True, help="Seconds between culling checks; dead kernels are reclaimed after one."
    )
    replay_window = Float(
        120,
        config=True,
        help="Seconds a client's session is kept after its last connection closes, with what it misses, for "
        "its return (websocket: same session_id; socket.io: any client of the kernel). 0: no replay.",
    )
    replay_limit = Integer(
        16 * 1024 * 1024, config=True, help="Bytes of output kept for one session while its clients are away."
    )
    metrics_no_auth = Bool(False, config=True, help="Serve <base>metrics without the token.")
    cull_connected = Bool(False, config=True, help="Cull idle kernels that still have clients connected.")
    cull_busy = Bool(False, config=True, help="Cull kernels that are busy (idle only in their activity).")
    allow_origin = Unicode(
        "",
        config=True,
        help="Origin allowed for cross-origin browsers, or * for any (env ALLOW_ORIGIN). Empty: same origin only.",
    )
    allowed_kernel_env = List(
        Unicode(), config=True, help="Variables a client may set in a new kernel's env, besides KERNEL_*."
    )
    max_message_size = Integer(64 * 1024 * 1024, config=True, help="Largest websocket message accepted, in bytes.")
    client_queue_limit = Integer(
        128 * 1024 * 1024,
        config=True,
        help="Bytes of output that may wait for one slow client (stream output merged) before "
        "that client is disconnected with a reason. Output is never dropped silently.",
    )
    max_http_buffer_size = Integer(
        1_000_000,
        config=True,
        help="Largest socket.io polling body or websocket message, in bytes (Engine.IO maxPayload, "
        "socket.io's maxHttpBufferSize). A larger polling body is refused with 413 before it is read.",
    )
    max_socketio_sessions = Integer(
        1000, config=True, help="Most Engine.IO sessions open at once; past it new ones get 503."
    )
    connect_timeout = Float(
        45.0,
        config=True,
        help="Seconds an Engine.IO session may stay without an authorized namespace before it is closed.",
    )
    ping_interval = Float(25.0, config=True, help="Engine.IO ping interval, in seconds.")
    ping_timeout = Float(20.0, config=True, help="Engine.IO ping timeout, in seconds: silent clients are dropped.")
    websocket_ping_interval = Integer(
        30,
        config=True,
        help="Seconds between websocket pings (0: off). A client that answers none for this long "
        "is closed, unless output is still on its way to it (slow clients are bounded by "
        "client_queue_limit instead).",
    )
    config_file = Unicode("", config=True, help="A traitlets config file (Python) to load.")

    aliases = {
        "port": "KernelsService.port",
        "ip": "KernelsService.ip",
        "base-path": "KernelsService.base_path",
        "token": "KernelsService.token",
        "kernel-name": "KernelsService.kernel_name",
        "initial-kernels": "KernelsService.initial_kernels",
        "max-kernels": "KernelsService.max_kernels",
        "pool-size": "KernelsService.pool_size",
        "pool-kernelspecs": "KernelsService.pool_kernelspecs",
        "replay-window": "KernelsService.replay_window",
        "replay-limit": "KernelsService.replay_limit",
        "cull-idle-timeout": "KernelsService.cull_idle_timeout",
        "cull-interval": "KernelsService.cull_interval",
        "allow-origin": "KernelsService.allow_origin",
        "max-http-buffer-size": "KernelsService.max_http_buffer_size",
        "max-socketio-sessions": "KernelsService.max_socketio_sessions",
        "connect-timeout": "KernelsService.connect_timeout",
        "config": "KernelsService.config_file",
        "log-level": "KernelsService.log_level",
    }

    flags = {
        **Application.flags,
        "cull-connected": ({"KernelsService": {"cull_connected": True}}, "Cull idle kernels with clients too."),
        "cull-busy": ({"KernelsService": {"cull_busy": True}}, "Cull busy kernels too."),
        "metrics-no-auth": ({"KernelsService": {"metrics_no_auth": True}}, "Serve <base>metrics without the token."),
    }

    @default("kernel_name")
    def _default_kernel_name(self) -> str:
        return AsyncMultiKernelManager().default_kernel_name

    def _create_loader(self, argv, aliases, flags, classes):  # type: ignore[no-untyped-def]
        return StrictArgumentLoader(argv, aliases, flags, classes=classes, log=self.log, subcommands=self.subcommands)

    def initialize(self, argv: list[str] | None = None) -> None:
        """Environment first, then the config file, then the command line (highest)."""
        self.environment_sources = apply_environment(self)
        self.parse_command_line(argv)
        if self.extra_args:
            print(f"{self.name}: error: unexpected arguments: {' '.join(self.extra_args)}", file=sys.stderr)
            self.exit(2)
        if self.config_file:
            command_line = deepcopy(self.config)
            self.load_config_file(self.config_file)
            self.update_config(command_line)
        enable_pretty_logging(logger=logging.getLogger())
        logging.getLogger().setLevel(self.log_level)

    def start(self) -> None:
        try:
            asyncio.run(self.serve())
        except KernelsError as error:
            log.error("Cannot start: %s", error)
            self.exit(1)

    def start_show_config(self) -> None:
        """--show-config(-json), which traitlets runs instead of start(): every option's
        effective value and its source (not only the config's, as traitlets would); no token."""
        configuration = effective_configuration(self, self.environment_sources)
        if self.show_config_json:
            print(json.dumps(configuration, indent=1, sort_keys=True))
        else:
            print(f"{self.name} {self.version}: effective configuration\n{format_configuration(configuration)}")

    async def serve(self) -> None:
        """Serve until SIGINT or SIGTERM, then stop every kernel."""
        cull_policy = self._cull_policy()
        services = self._make_services()
        socketio = self._make_socketio(services)
        pool = services.pool
        watch_service(
            ServiceState(services.registry.list, lambda: len(socketio.sessions), lambda: pool.ready if pool else 0)
        )
        app = make_web_app(
            services,
            engineio_routes(socketio, ["/socket.io/", f"{services.base_path}socket.io/"]),
            websocket_max_message_size=self.max_message_size,
        )
        server = HTTPServer(app, max_body_size=self.max_message_size)
        server.listen(self.port, address=self.ip)
        stop = stop_on_signals()  # before any kernel starts: a SIGTERM during a start must stop it too
        background = [asyncio.ensure_future(Culler(services.registry, cull_policy).run())]
        try:
            for _ in range(self.initial_kernels):  # the initial kernels do not come from the pool
                await services.registry.start()
            if pool is not None:
                background.append(asyncio.ensure_future(pool.run()))
            log.info("Serving at http://%s:%s%sapi/kernels", self.ip, self.port, services.base_path)
            await stop.wait()
            log.info("Interrupted...")
        finally:
            for task in background:
                task.cancel()
            server.stop()
            socketio.close_all()
            await services.hub.close_all("service stopping")
            await services.registry.shutdown_all()
            await server.close_all_connections()

    def _make_services(self) -> Services:
        """The registry, the relay hub, the pool and the policies the handlers share."""
        registry = self._make_registry()
        hub = RelayHub(registry, ReplayPolicy(self.replay_window, self.replay_limit))
        return Services(
            registry,
            hub,
            AccessPolicy(self._resolve_token(), self.allow_origin),
            normalise_base_path(self.base_path),
            client_queue_limit=self.client_queue_limit,
            ping_interval=self.websocket_ping_interval,
            pool=self._make_pool(registry, hub),
            metrics_no_auth=self.metrics_no_auth,
        )

    def _make_socketio(self, services: Services) -> EngineServer:
        return EngineServer(
            KernelNamespaces(services.hub, services.policy, services.base_path, self.client_queue_limit),
            services.policy,
            EngineConfig(
                self.ping_interval,
                self.ping_timeout,
                self.max_http_buffer_size,
                max_outgoing_bytes=self.client_queue_limit,
            ),
            connect_timeout=self.connect_timeout,
            max_sessions=self.max_socketio_sessions,
            heap=services.heap,
        )

    def _make_pool(self, registry: KernelRegistry, hub: RelayHub) -> KernelPool | None:
        """The warm pool (None with --pool-size=0); its kernelspecs must exist."""
        if self.pool_size < 0:
            raise KernelsError("--pool-size must not be negative")
        if self.pool_size == 0:
            return None
        names = [self.kernel_name, *self.pool_kernelspecs]
        for name in names:
            registry.check_kernelspec(name)
        pool = KernelPool(registry, hub.wait_ready, self.pool_size, names)
        registry.set_pool(pool)
        return pool

    def _cull_policy(self) -> CullPolicy:
        if self.cull_interval <= 0 or self.cull_idle_timeout < 0:
            raise KernelsError("--cull-interval must be positive and --cull-idle-timeout not negative")
        return CullPolicy(self.cull_idle_timeout, self.cull_interval, self.cull_connected, self.cull_busy)

    def _make_registry(self) -> KernelRegistry:
        multi = AsyncMultiKernelManager(
            parent=self,
            kernel_manager_class=KERNEL_MANAGER_CLASS,
            kernel_spec_manager=KernelSpecManager(parent=self),
            connection_dir=connection_dir(),
        )
        return KernelRegistry(
            multi,
            default_name=self.kernel_name,
            kernel_env=sanitised_environment(SECRET_VARIABLES),
            allowed_env=self.allowed_kernel_env,
            max_kernels=self.max_kernels,
        )

    def _resolve_token(self) -> str:
        if self.token is None:
            self.token = secrets.token_hex(24)
            log.info("Token (send as 'Authorization: token <token>' or ?token=): %s", self.token)
        elif not self.token:
            log.warning(
                "No token: anyone who can reach %s:%s can run code. Use only for local demos.",
                self.ip,
                self.port,
            )
        return self.token


class StrictArgumentLoader(KVArgParseConfigLoader):
    """Command-line parsing that refuses an option it does not know (exit 2 with a message)
    instead of warning and serving anyway: a mistyped `--prot=1` must not go unnoticed."""

    def _handle_unrecognized_alias(self, arg: str) -> None:
        self.parser.error(f"unrecognized option: {'-' if len(arg) == 1 else '--'}{arg}")


def connection_dir() -> str:
    """Where kernel connection files (they hold the kernels' HMAC keys) are written:
    Jupyter's runtime directory (`JUPYTER_RUNTIME_DIR`, else the user's), private. Where it
    cannot be made (an image run under a uid with no home), a fresh private temporary
    directory, with a warning, rather than a crash at start."""
    runtime = jupyter_runtime_dir()
    try:
        ensure_dir_exists(runtime, mode=0o700)
        return runtime
    except OSError as error:
        fallback = tempfile.mkdtemp(prefix="kernels-service-runtime-")
        log.warning("Cannot use the runtime directory %s (%s); connection files go to %s", runtime, error, fallback)
        return fallback


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    return stop


def apply_environment(app: Application) -> dict[str, str]:
    """Set each trait named in ENVIRONMENT from its variable, if that is set; the traits so
    set, with their variables."""
    applied = {}
    for trait_name, variable in ENVIRONMENT.items():
        if variable in os.environ:
            trait = app.traits()[trait_name]
            setattr(app, trait_name, trait.from_string(os.environ[variable]))
            applied[trait_name] = variable
    return applied


def main() -> None:
    """Parse the command line and serve until SIGINT/SIGTERM (started by `launch.main`)."""
    KernelsService.launch_instance()
