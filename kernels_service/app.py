"""The command line: the service's options, and nothing else.

Every option is a traitlets trait with help text, settable on the command line
(`--port=8001`), in a config file (`c.KernelsService.port = 8001`), and, for the few the
Docker image needs, from the environment through `ENVIRONMENT` (one table, one helper).
`start` turns them into a `ServiceConfig` and hands it to the composition root
(`serving.serve`), which builds, runs and stops the service.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from copy import deepcopy
from dataclasses import fields

from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.multikernelmanager import AsyncMultiKernelManager
from tornado.log import enable_pretty_logging
from traitlets import Bool, Enum, Float, Integer, List, Unicode, default
from traitlets.config import Application
from traitlets.config.loader import KVArgParseConfigLoader

from kernels_service import __version__
from kernels_service.builder import isolation_plan, kernel_separation
from kernels_service.config import ISOLATIONS, SANDBOXES, TRANSPORTS, ServiceConfig
from kernels_service.effective_config import effective_configuration, format_configuration, provisioner_settings
from kernels_service.hardening import token_on_command_line
from kernels_service.kernels import ConfigError, KernelsError
from kernels_service.kernels.provisioners.bubblewrap import PROVISIONER_NAME
from kernels_service.kernels.provisioners.confined import PROVISIONER_NAME as CONFINED_PROVISIONER
from kernels_service.serving import serve

log = logging.getLogger("kernels_service")

#: Every option's default, from the one place that holds them (ServiceConfig).
DEFAULTS = ServiceConfig()

#: Options that may come from the environment (lower priority than config and CLI).
ENVIRONMENT = {
    "kernel_name": "KERNEL_NAME",
    "port": "PORT",
    "ip": "IP",
    "base_path": "BASE_PATH",
    "token": "KERNELS_SERVICE_TOKEN",
    "token_file": "KERNELS_SERVICE_TOKEN_FILE",
    "allow_origin": "ALLOW_ORIGIN",
    "allow_remote_access": "ALLOW_REMOTE_ACCESS",
    "pool_size": "KERNELS_POOL_SIZE",
    "keep_kernels": "KERNELS_KEEP_KERNELS",
    "kernel_store": "KERNELS_KERNEL_STORE",
    "replica_name": "KERNELS_REPLICA_NAME",
    "replica_url": "KERNELS_REPLICA_URL",
}


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
    port = Integer(DEFAULTS.port, config=True, help="Port to listen on (env PORT).")
    ip = Unicode(DEFAULTS.ip, config=True, help="Address to bind (env IP).")
    base_path = Unicode(
        DEFAULTS.base_path,
        config=True,
        help="Path prefix of every route: jupyter, /jupyter and /jupyter/ are the same (env BASE_PATH).",
    )
    token = Unicode(
        DEFAULTS.token,
        allow_none=True,
        config=True,
        help="Token clients must send (env KERNELS_SERVICE_TOKEN; on the command line every user of the "
        "machine can read it). Unset: a random one is generated and logged. Empty string: no token (local "
        "demos only).",
    )
    token_file = Unicode(
        DEFAULTS.token_file,
        config=True,
        help="A file holding the token, read once at start (env KERNELS_SERVICE_TOKEN_FILE; e.g. a "
        "container secret). Not with --token.",
    )
    kernel_name = Unicode(
        DEFAULTS.kernel_name,
        config=True,
        help="Kernelspec of the initial kernel and the default for new ones (env KERNEL_NAME).",
    )
    initial_kernels = Integer(DEFAULTS.initial_kernels, config=True, help="Kernels started at launch (0: none).")
    max_kernels = Integer(DEFAULTS.max_kernels, config=True, help="Most kernels running at once (0: no limit).")
    pool_size = Integer(
        DEFAULTS.pool_size,
        config=True,
        help="Ready kernels kept for each pooled kernelspec, handed out by start requests that fit (0: no pool; "
        "env KERNELS_POOL_SIZE).",
    )
    pool_kernelspecs = List(
        Unicode(), config=True, help="Kernelspecs pooled besides the default one (--pool-kernelspecs=ir ...)."
    )
    cull_idle_timeout = Float(
        DEFAULTS.cull_idle_timeout,
        config=True,
        help="Shut down kernels idle for longer than this many seconds (0: never; Jupyter Server's).",
    )
    cull_interval = Float(
        DEFAULTS.cull_interval,
        config=True,
        help="Seconds between culling checks; dead kernels are reclaimed after one.",
    )
    replay_window = Float(
        DEFAULTS.replay_window,
        config=True,
        help="Seconds a client's session is kept after its last connection closes, with what it misses, for "
        "its return (websocket: same session_id; socket.io: any client of the kernel). 0: no replay.",
    )
    replay_limit = Integer(
        DEFAULTS.replay_limit, config=True, help="Bytes of output kept for one session while its clients are away."
    )
    metrics_no_auth = Bool(DEFAULTS.metrics_no_auth, config=True, help="Serve <base>metrics without the token.")
    cull_connected = Bool(
        DEFAULTS.cull_connected, config=True, help="Cull idle kernels that still have clients connected."
    )
    cull_busy = Bool(DEFAULTS.cull_busy, config=True, help="Cull kernels that are busy (idle only in their activity).")
    allow_origin = Unicode(
        DEFAULTS.allow_origin,
        config=True,
        help="Origin allowed for cross-origin browsers, or * for any (env ALLOW_ORIGIN). Empty: same origin only.",
    )
    allow_remote_access = Bool(
        DEFAULTS.allow_remote_access,
        allow_none=True,
        config=True,
        help="Serve requests whatever their Host header names. Unset: only where a token is required and "
        "--ip is not a loopback address; otherwise only a Host that is a loopback address or one of "
        "--local-hostnames is served (others get 403), so that a web page cannot reach the service by "
        "pointing a name of its own at 127.0.0.1 (DNS rebinding). Env ALLOW_REMOTE_ACCESS.",
    )
    local_hostnames = List(
        Unicode(),
        list(DEFAULTS.local_hostnames),
        config=True,
        help="Host names served without --allow-remote-access, besides loopback addresses.",
    )
    allowed_kernel_env = List(
        Unicode(), config=True, help="Variables a client may set in a new kernel's env, besides KERNEL_*."
    )
    kernel_env_inherit = List(
        Unicode(),
        config=True,
        help="Variables of the service's environment that kernels inherit, besides what a kernel needs to run "
        "(PATH, HOME, LANG, LC_*, TZ, VIRTUAL_ENV, JUPYTER_* paths...): names or shell patterns, e.g. "
        "--kernel-env-inherit=AWS_REGION --kernel-env-inherit='CUDA_*'. The service's token never passes.",
    )
    kernel_transport = Enum(
        TRANSPORTS,
        DEFAULTS.kernel_transport,
        config=True,
        help="How the service and its local kernels talk. auto: loopback TCP encrypted with CurveZMQ for "
        "kernels whose kernelspec declares it (ipykernel does), ipc for the others; curve: CurveZMQ for every "
        "kernel (one whose kernelspec does not declare it cannot start); ipc: unix sockets in a private "
        "directory; tcp: plain loopback ports, which any user of the machine can reach. No other user can "
        "reach a kernel over curve or ipc.",
    )
    kernel_port_range = Unicode(
        DEFAULTS.kernel_port_range,
        config=True,
        help="Ports of local kernels over TCP, LOW-HIGH. Empty: the 12000 ports below the machine's ephemeral "
        "range (net.ipv4.ip_local_port_range; 20768-32767 on Linux's default), so that no connection's source "
        "port is ever a kernel's.",
    )
    keep_kernels = Bool(
        DEFAULTS.keep_kernels,
        config=True,
        help="Local kernels outlive the service: SIGTERM (or a crash) leaves them running, and the next start "
        "takes them up again (SIGINT still stops them). Env KERNELS_KEEP_KERNELS.",
    )
    kernel_store = Unicode(
        DEFAULTS.kernel_store,
        config=True,
        help="Where --keep-kernels keeps its kernels: a path (an SQLite file, private, for one service) or "
        "a PostgreSQL URL postgresql://user@host:port/database (a store replicas can share; its password by "
        "PGPASSWORD or a password file, never in the URL). Empty: "
        "<Jupyter's data directory>/kernels-service/kernels.sqlite. Env KERNELS_KERNEL_STORE.",
    )
    replica_name = Unicode(
        DEFAULTS.replica_name,
        config=True,
        help="This service's name among the replicas of a PostgreSQL kernel store; one running service per name, "
        "and a service started again with the same name takes its kernels back at once. Empty: <hostname>:<port>. "
        "Env KERNELS_REPLICA_NAME.",
    )
    replica_url = Unicode(
        DEFAULTS.replica_url,
        config=True,
        help="Where the other replicas reach this one (they forward it the interrupt, restart and shutdown of "
        "kernels it owns). Empty: http://<--ip, or the host's address if it binds all>:<port><base path>. "
        "Env KERNELS_REPLICA_URL.",
    )
    lease_time = Float(
        DEFAULTS.lease_time,
        config=True,
        help="Seconds a replica of a PostgreSQL kernel store owns its kernels without renewing its leases "
        "(it renews them every third of that); another replica may take over a kernel whose lease ran out.",
    )
    kernel_sandbox = Enum(
        SANDBOXES,
        DEFAULTS.kernel_sandbox,
        config=True,
        help="Keep local kernels apart: bubblewrap runs each in a sandbox of its own (Debian's bwrap), seeing "
        "only its own connection file and sockets, its own processes and a private /tmp. Empty: kernels share "
        "the service's view of the machine.",
    )
    kernel_isolation = Enum(
        ISOLATIONS,
        DEFAULTS.kernel_isolation,
        config=True,
        help="Keep local kernels apart from the service and from each other. auto: wherever the service can "
        "(a uid of its own for each kernel where the service runs as root or holds CAP_SETUID and CAP_SETGID; "
        "the sandbox or container where chosen), and the start says which kernelspecs are not; required: "
        "refuse to start unless every kernelspec's kernels are kept apart; none: local kernels run as the "
        "service's uid.",
    )
    kernel_uids = Unicode(
        DEFAULTS.kernel_uids,
        config=True,
        help="The uids local kernels get, one each, LOW-HIGH; a uid of an account, or one a process runs as, "
        "is never given.",
    )
    kernel_memory_limit = Unicode(
        DEFAULTS.kernel_memory_limit,
        config=True,
        help="Memory one local kernel may allocate (its heap: RLIMIT_DATA), in bytes or with a unit (512M, 4G); "
        "past it the kernel gets a MemoryError. auto: half of what the service may use (the machine's memory, "
        "or its container's limit); 0: no bound.",
    )
    kernel_process_limit = Integer(
        DEFAULTS.kernel_process_limit,
        config=True,
        help="Processes and threads one local kernel may have (RLIMIT_NPROC); past it a fork fails in the kernel. "
        "Set on kernels of their own uid, and on kernels in Landlock rooms where a user namespace of their own is "
        "allowed (Linux counts per uid and user namespace); not on other kernels of the service's uid. 0: none.",
    )
    kernel_open_files = Integer(
        DEFAULTS.kernel_open_files, config=True, help="Files one local kernel may have open (RLIMIT_NOFILE); 0: none."
    )
    max_message_size = Integer(
        DEFAULTS.max_message_size, config=True, help="Largest websocket message accepted, in bytes."
    )
    client_queue_limit = Integer(
        DEFAULTS.client_queue_limit,
        config=True,
        help="Bytes of output that may wait for one slow client (stream output merged) before "
        "that client is disconnected with a reason. Output is never dropped silently.",
    )
    max_http_buffer_size = Integer(
        DEFAULTS.max_http_buffer_size,
        config=True,
        help="Largest socket.io polling body or websocket message, in bytes (Engine.IO maxPayload, "
        "socket.io's maxHttpBufferSize). A larger polling body is refused with 413 before it is read.",
    )
    max_socketio_sessions = Integer(
        DEFAULTS.max_socketio_sessions,
        config=True,
        help="Most Engine.IO sessions open at once; past it new ones get 503.",
    )
    connect_timeout = Float(
        DEFAULTS.connect_timeout,
        config=True,
        help="Seconds an Engine.IO session may stay without an authorized namespace before it is closed.",
    )
    ping_interval = Float(DEFAULTS.ping_interval, config=True, help="Engine.IO ping interval, in seconds.")
    ping_timeout = Float(
        DEFAULTS.ping_timeout, config=True, help="Engine.IO ping timeout, in seconds: silent clients are dropped."
    )
    websocket_ping_interval = Float(
        DEFAULTS.websocket_ping_interval,
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
        "token-file": "KernelsService.token_file",
        "kernel-transport": "KernelsService.kernel_transport",
        "kernel-sandbox": "KernelsService.kernel_sandbox",
        "kernel-isolation": "KernelsService.kernel_isolation",
        "kernel-uids": "KernelsService.kernel_uids",
        "kernel-memory-limit": "KernelsService.kernel_memory_limit",
        "kernel-process-limit": "KernelsService.kernel_process_limit",
        "kernel-open-files": "KernelsService.kernel_open_files",
        "kernel-port-range": "KernelsService.kernel_port_range",
        "kernel-store": "KernelsService.kernel_store",
        "replica-name": "KernelsService.replica_name",
        "replica-url": "KernelsService.replica_url",
        "lease-time": "KernelsService.lease_time",
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
        "local-hostnames": "KernelsService.local_hostnames",
        "kernel-env-inherit": "KernelsService.kernel_env_inherit",
        "max-http-buffer-size": "KernelsService.max_http_buffer_size",
        "max-socketio-sessions": "KernelsService.max_socketio_sessions",
        "connect-timeout": "KernelsService.connect_timeout",
        "allowed-kernel-env": "KernelsService.allowed_kernel_env",
        "max-message-size": "KernelsService.max_message_size",
        "client-queue-limit": "KernelsService.client_queue_limit",
        "ping-interval": "KernelsService.ping_interval",
        "ping-timeout": "KernelsService.ping_timeout",
        "websocket-ping-interval": "KernelsService.websocket_ping_interval",
        "config": "KernelsService.config_file",
        "log-level": "KernelsService.log_level",
    }

    flags = {
        **Application.flags,
        "cull-connected": ({"KernelsService": {"cull_connected": True}}, "Cull idle kernels with clients too."),
        "cull-busy": ({"KernelsService": {"cull_busy": True}}, "Cull busy kernels too."),
        "metrics-no-auth": ({"KernelsService": {"metrics_no_auth": True}}, "Serve <base>metrics without the token."),
        "allow-remote-access": (
            {"KernelsService": {"allow_remote_access": True}},
            "Serve requests whatever their Host header names (behind a proxy, or by name).",
        ),
        "keep-kernels": (
            {"KernelsService": {"keep_kernels": True}},
            "Local kernels outlive the service's SIGTERM or crash and are taken up at the next start.",
        ),
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
        if token_on_command_line(sys.argv[1:]):
            log.warning(
                "The token is on the command line, where every user of this machine can read it "
                "(ps, /proc/%d/cmdline): give it in KERNELS_SERVICE_TOKEN or --token-file instead",
                os.getpid(),
            )
        try:
            asyncio.run(serve(self.service_config()))
        except (ConfigError, KernelsError) as error:  # a fault of the configuration, or of an initial kernel
            log.error("Cannot start: %s", error)
            self.exit(1)

    def start_show_config(self) -> None:
        """--show-config(-json), which traitlets runs instead of start(): every option's
        effective value and its source (not only the config's, as traitlets would); no token."""
        configuration = effective_configuration(self, self.environment_sources)
        specs = KernelSpecManager(config=self.config).get_all_specs()
        config = self.service_config()
        separation, why_not = kernel_separation(config, None, None, prepare=False)  # nothing made on disk
        plan = isolation_plan(config, specs, separation, why_not)
        default_provisioner = PROVISIONER_NAME if self.kernel_sandbox == "bubblewrap" else CONFINED_PROVISIONER
        configuration.update(provisioner_settings(specs, os.environ, default_provisioner))
        for entry in plan:
            configuration[f"kernelspec.{entry.kernelspec}.isolation"] = {"value": str(entry), "source": "start"}
        if self.show_config_json:
            print(json.dumps(configuration, indent=1, sort_keys=True))
        else:
            print(f"{self.name} {self.version}: effective configuration\n{format_configuration(configuration)}")

    def service_config(self) -> ServiceConfig:
        """The options as the composition root takes them."""
        names = {f.name for f in fields(ServiceConfig)} - {"jupyter_config"}
        values = {name: getattr(self, name) for name in names}
        values["pool_kernelspecs"] = tuple(self.pool_kernelspecs)
        values["allowed_kernel_env"] = tuple(self.allowed_kernel_env)
        values["kernel_env_inherit"] = tuple(self.kernel_env_inherit)
        values["local_hostnames"] = tuple(self.local_hostnames)
        return ServiceConfig(**values, jupyter_config=self.config)


class StrictArgumentLoader(KVArgParseConfigLoader):
    """Command-line parsing that refuses an option it does not know (exit 2 with a message)
    instead of warning and serving anyway: a mistyped `--prot=1` must not go unnoticed."""

    def _handle_unrecognized_alias(self, arg: str) -> None:
        self.parser.error(f"unrecognized option: {'-' if len(arg) == 1 else '--'}{arg}")


def apply_environment(app: Application) -> dict[str, str]:
    """Set each trait named in ENVIRONMENT from its variable, if that is set; the traits so
    set, with their variables. The token's variable is then taken out of `os.environ`, so
    that no process started later (by a library that passes on the whole environment)
    inherits it; kernels never did (`kernels/environment.py`)."""
    applied = {}
    for trait_name, variable in ENVIRONMENT.items():
        if variable in os.environ:
            trait = app.traits()[trait_name]
            setattr(app, trait_name, trait.from_string(os.environ[variable]))
            applied[trait_name] = variable
    os.environ.pop(ENVIRONMENT["token"], None)
    return applied


def main() -> None:
    """Parse the command line and serve until SIGINT/SIGTERM (started by `launch.main`)."""
    KernelsService.launch_instance()
