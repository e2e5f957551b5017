"""The service's settings as one plain object: what the composition root builds from.

The command line (`app.py`, traitlets) fills it from options, config files and the
environment; tests and benchmarks make one directly (`ServiceConfig(port=0, ...)`).
`jupyter_config` carries the traitlets configuration of jupyter_client's own classes
(`--KernelRestarter.time_to_dead=...`, `--KernelManager...`) to the managers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kernels_service.kernels.errors import ConfigError
from kernels_service.kernels.isolation import POLICIES as ISOLATIONS
from kernels_service.kernels.kernel_uids import parse_uid_range
from kernels_service.kernels.limits import DEFAULT_OPEN_FILES, DEFAULT_PROCESSES, parse_size
from kernels_service.kernels.ports import parse_port_range
from kernels_service.kernels.transport import POLICIES as TRANSPORTS

MIB = 1024 * 1024
SANDBOXES = ("", "bubblewrap")  # how local kernels are kept apart ("": they are not)


@dataclass(frozen=True)
class ServiceConfig:
    """Every setting of one service; the defaults are the command line's."""

    port: int = 8000
    ip: str = "127.0.0.1"
    base_path: str = "/"
    token: str | None = None  # None: a random one is made and logged; "": no token
    token_file: str = ""  # a file holding the token, read once at start (not with `token`)
    kernel_name: str = ""  # "": jupyter_client's default kernelspec
    initial_kernels: int = 1
    max_kernels: int = 0
    pool_size: int = 1
    pool_kernelspecs: tuple[str, ...] = ()
    cull_idle_timeout: float = 0.0
    cull_interval: float = 300.0
    cull_connected: bool = False
    cull_busy: bool = False
    replay_window: float = 120.0
    replay_limit: int = 16 * MIB
    metrics_no_auth: bool = False
    allow_origin: str = ""
    allow_remote_access: bool | None = None  # any Host header; None: where a token is needed and ip is not loopback
    local_hostnames: tuple[str, ...] = ("localhost",)  # Host names served without remote access
    allowed_kernel_env: tuple[str, ...] = ()
    # names or patterns of the service's env kernels inherit, besides INHERITED
    kernel_env_inherit: tuple[str, ...] = ()
    kernel_transport: str = "auto"  # how local kernels and the service talk, one of TRANSPORTS
    kernel_sandbox: str = ""  # "bubblewrap": each local kernel in a sandbox of its own
    kernel_isolation: str = "auto"  # one of ISOLATIONS: keep kernels apart where the service can, must, or not
    kernel_uids: str = "60000-61183"  # the uids local kernels get, one each, where the service may give them
    kernel_memory_limit: str = "auto"  # bytes (512M, 4G) one local kernel may allocate; auto: half of the memory
    kernel_process_limit: int = DEFAULT_PROCESSES  # processes and threads of one kernel of its own uid; 0: none
    kernel_open_files: int = DEFAULT_OPEN_FILES  # files one local kernel may have open; 0: none
    kernel_port_range: str = ""  # "LOW-HIGH" for local TCP kernels; "": below the ephemeral range
    keep_kernels: bool = False  # local kernels outlive a SIGTERM (or a crash) and are taken up at the next start
    kernel_store: str = ""  # where they are kept; "": in Jupyter's data directory
    replica_name: str = ""  # this service's name among the replicas of a shared store; "": <hostname>:<port>
    replica_url: str = ""  # where the other replicas reach it; "": http://<its address>:<port><base path>
    lease_time: float = 5.0  # seconds a replica owns its kernels without renewing its leases
    max_message_size: int = 64 * MIB
    client_queue_limit: int = 128 * MIB
    max_http_buffer_size: int = 1_000_000
    max_socketio_sessions: int = 1000
    connect_timeout: float = 45.0
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    websocket_ping_interval: float = 30.0
    jupyter_config: Any = field(default=None, compare=False)  # a traitlets Config for jupyter_client

    def check(self) -> None:
        """ConfigError for settings no service can run with (the start fails with it)."""
        if self.pool_size < 0:
            raise ConfigError("--pool-size must not be negative")
        if self.cull_interval <= 0 or self.cull_idle_timeout < 0:
            raise ConfigError("--cull-interval must be positive and --cull-idle-timeout not negative")
        if self.kernel_transport not in TRANSPORTS:
            raise ConfigError(f"--kernel-transport must be one of {', '.join(TRANSPORTS)}")
        if self.kernel_port_range:
            parse_port_range(self.kernel_port_range)
        if self.kernel_isolation not in ISOLATIONS:
            raise ConfigError(f"--kernel-isolation must be one of {', '.join(ISOLATIONS)}")
        parse_uid_range(self.kernel_uids)
        if self.kernel_memory_limit.strip().lower() != "auto":
            parse_size(self.kernel_memory_limit, "--kernel-memory-limit")
        if self.kernel_process_limit < 0 or self.kernel_open_files < 0:
            raise ConfigError("--kernel-process-limit and --kernel-open-files must not be negative (0: none)")
        if self.kernel_sandbox not in SANDBOXES:
            raise ConfigError("--kernel-sandbox must be bubblewrap or empty")
        if self.keep_kernels and self.kernel_sandbox:
            raise ConfigError("--keep-kernels does not work with --kernel-sandbox yet: a sandbox dies with the service")
        if not 1 <= self.lease_time <= 300:
            raise ConfigError("--lease-time must be between 1 and 300 seconds")
        if self.keep_kernels and self.port == 0 and self.kernel_store.startswith(("postgresql:", "postgres:")):
            if not self.replica_url:
                raise ConfigError("a replica of a PostgreSQL kernel store needs --port (not 0) or --replica-url")
        if self.replica_url and not self.replica_url.startswith(("http://", "https://")):
            raise ConfigError("--replica-url must be an http:// or https:// URL")
        if self.token is not None and self.token_file:
            raise ConfigError("give the token or a token file, not both")
