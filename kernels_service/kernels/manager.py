"""The kernel manager class: jupyter_client's, with its auto-restarter, but asyncio sockets.

`AsyncIOLoopKernelManager` keeps the auto-restarter running on tornado's loop but wraps
`connect_*` to hand out plain sockets for ZMQStream. The relay reads with `await`, so
this subclass restores the `zmq.asyncio` socket factories of `AsyncKernelManager`.

jupyter_client tells its restart callbacks *before* a restart (`"restart"`) but nobody
after it. The relay must know when the new kernel process is there (and on which
ports: a restart may pick new ones) before it can re-establish iopub, so this class
also calls `on_restarted` callbacks once every restart, REST or automatic, is done.

Each kernel's transport (ipc, or TCP with or without CurveZMQ) is chosen when it first
starts, from `transport_policy` and its kernelspec (`kernels.transport`). Over `ipc`, a
kernel's sockets go in `ipc_dir` (the service's private socket directory,
`kernels.ipc`) instead of beside its connection file. Over TCP on the loopback, its
ports come from `port_picker` (below the ephemeral range, `kernels.ports`) instead of
jupyter_client's port cache.

A kernel's stderr is piped and copied to the service's line by line (`StderrCopy`), so
that ipykernel's warning that it runs over TCP without encryption, which every kernel
on plain TCP prints, reaches the log once, not once per kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import IO, Any, BinaryIO

import zmq
import zmq.asyncio
from jupyter_client.connect import port_names
from jupyter_client.ioloop import AsyncIOLoopKernelManager
from jupyter_client.localinterfaces import is_local_ip
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.multikernelmanager import AsyncMultiKernelManager
from jupyter_client.provisioning import KernelProvisionerFactory
from traitlets import Any as AnyTrait
from traitlets import Bool, Enum, Instance, Unicode

from kernels_service.kernels.errors import KernelNotStarted
from kernels_service.kernels.jupyter_client_internals import (
    channel_url,
    mark_started,
    own_connection_file,
    record_random_ports,
    register_kernel,
)
from kernels_service.kernels.launcher_output import LauncherOutput
from kernels_service.kernels.limits import KernelLimits
from kernels_service.kernels.ports import PortPicker
from kernels_service.kernels.programs import with_service_python
from kernels_service.kernels.provisioners.kept import (
    LOCAL_PROVISIONER,
    KeptKernelProvisioner,
    provisioner_name,
    runs_locally,
)
from kernels_service.kernels.store import StoredKernel
from kernels_service.kernels.transport import POLICIES, choose_transport, curve_available


class ServiceKernelManager(AsyncIOLoopKernelManager):
    """Launch, signal and restart through jupyter_client (provisioners included)."""

    connect_shell = AsyncKernelManager.connect_shell
    connect_control = AsyncKernelManager.connect_control
    connect_iopub = AsyncKernelManager.connect_iopub
    connect_stdin = AsyncKernelManager.connect_stdin

    ipc_dir = Unicode("", config=True, help="Directory of ipc sockets ('': beside the connection file).")
    transport_policy = Enum(POLICIES, "auto", config=True, help="How each kernel's transport is chosen.")
    port_picker = Instance(PortPicker, allow_none=True, help="Where local TCP kernels get their ports.")
    kernel_separation = AnyTrait(None, allow_none=True, help="How local kernels are kept apart (kernels.separation).")
    kernel_limits = Instance(KernelLimits, allow_none=True, help="What one local kernel may take of the machine.")
    keep = Bool(False, config=True, help="Launch kernels that outlive the service (--keep-kernels).")

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._restarted_callbacks: list[Callable[[], None]] = []
        self._launcher_output: LauncherOutput | None = None  # a remote provisioner's launcher's stderr

    def _choose_transport(self) -> None:
        """Set jupyter_client's transport and encryption for this kernel, before its
        launch chooses ports or socket paths (a restart keeps them)."""
        chosen = choose_transport(self.transport_policy, self.kernel_spec.metadata, curve_available())
        self.transport = chosen.transport
        self.transport_encryption = chosen.encryption
        if self.transport == "ipc" and self.ipc_dir and self.connection_file:
            # the sockets' path prefix: `<ipc_dir>/kernel-<id>-ipc` (then `-1`...), not
            # beside the connection file
            name = os.path.splitext(os.path.basename(self.connection_file))[0]
            self.ip = os.path.join(self.ipc_dir, f"{name}-ipc")
        if self.port_picker is not None:
            self.cache_ports = False  # the picker's ports, not jupyter_client's cache

    def write_connection_file(self, **kwargs: Any) -> None:
        """jupyter_client's, but a local TCP kernel's unset ports come from the port
        picker; they still count as random ports (a restart on new ports picks again)."""
        if self.port_picker is not None and self.transport == "tcp" and is_local_ip(self.ip):
            unset = [name for name in port_names if getattr(self, name) <= 0]
            for name, port in zip(unset, self.port_picker.pick(self.ip, len(unset)), strict=True):
                setattr(self, name, port)
            record_random_ports(self, unset)
        super().write_connection_file(**kwargs)

    def connect_stdin_watched(self, identity: bytes) -> tuple[zmq.asyncio.Socket, zmq.asyncio.Socket]:
        """A stdin DEALER as `connect_stdin` makes it (jupyter_client's
        `_create_connected_socket`, Curve keys included), with a monitor attached before
        it connects, so that its handshake cannot be missed: the socket and the monitor.

        The kernel's stdin ROUTER drops an `input_request` to an identity whose connection
        has not finished its handshake, and nothing else tells when that is done."""
        socket = self.context.socket(zmq.DEALER)
        socket.linger = 1000
        socket.identity = identity
        if self.curve_publickey is not None:
            socket.curve_secretkey = self.curve_secretkey
            socket.curve_publickey = self.curve_publickey
            socket.curve_serverkey = self.curve_publickey
        monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        socket.connect(channel_url(self, "stdin"))
        return socket, monitor

    def on_restarted(self, callback: Callable[[], None]) -> None:
        """Call `callback` after each completed restart (the new process is launched)."""
        self._restarted_callbacks.append(callback)

    async def start_kernel(self, **kw: Any) -> None:
        if self.keep:  # no JPY_PARENT_PID (ipykernel would exit with the service), and no
            kw["independent"] = True  # stderr pipe to the service (it would break with it)
        if not runs_locally(self.kernel_spec):  # a launcher beside the service: its stderr kept
            self.kernel_spec.argv = with_service_python(self.kernel_spec.argv)
            self._launcher_output = LauncherOutput()
            kw["stderr"] = self._launcher_output.file  # kept for restarts in jupyter_client's launch args
        elif not self.keep:
            kw.setdefault("stderr", subprocess.PIPE)
        self._choose_transport()
        await self._launching(super().start_kernel(**kw))
        self._copy_stderr()

    async def _launching(self, launch: Awaitable[None]) -> None:
        """Await a start or restart; if it fails, log what the provisioner's launcher said."""
        if self._launcher_output is not None:
            self._launcher_output.launch_begins()
        try:
            await launch
        except Exception:
            if self._launcher_output is not None:
                self._launcher_output.report_failure(self.kernel_name)
            raise

    async def take_up(
        self, connection_info: dict[str, Any], provisioner_info: dict[str, Any], env: dict[str, str]
    ) -> None:
        """Take up a kernel an earlier service launched, as if this one had: its connection
        information, its provisioner (for a local kernel, `KeptKernelProvisioner`: its
        process back; any other provisioner loads its own `provisioner_info`, as
        jupyter_client's persistence hooks intend), what a restart launches again
        (jupyter_client's launch arguments: `env`, independent), and its restarter.
        jupyter_client has no call for this; the attributes set are those its own start
        sets. KernelNotStarted if the provisioner says the kernel is not running."""
        self.load_connection_info(connection_info)
        if provisioner_name(self.kernel_spec) == LOCAL_PROVISIONER:
            provisioner = KeptKernelProvisioner(kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self)
        else:
            factory = KernelProvisionerFactory.instance(parent=self.parent)
            provisioner = factory.create_provisioner_instance(self.kernel_id, self.kernel_spec, parent=self)
        await provisioner.load_provisioner_info(provisioner_info)  # may say where its connection file is
        own_connection_file(self, os.path.exists(self.connection_file))  # it goes with the kernel's end
        if await provisioner.poll() is not None:
            raise KernelNotStarted(f"kernel {self.kernel_id} is no longer running")
        self.provisioner = provisioner
        mark_started(self, {"env": env, "independent": True})
        self.ready.set_result(None)
        self.start_restarter()

    async def restart_kernel(self, now: bool = False, newports: bool = False, **kw: Any) -> None:
        await self._launching(super().restart_kernel(now=now, newports=newports, **kw))
        self._copy_stderr()
        for callback in list(self._restarted_callbacks):
            callback()

    def _copy_stderr(self) -> None:
        process = getattr(self.provisioner, "process", None)  # a local kernel's Popen
        if process is not None and process.stderr is not None:
            StderrCopy(process.stderr, sys.stderr.buffer).start()


class ServiceMultiKernelManager(AsyncMultiKernelManager):
    """jupyter_client's manager of managers, which can also take up a kernel launched by an
    earlier service (`take_up`)."""

    async def take_up(self, entry: StoredKernel, env: dict[str, str]) -> ServiceKernelManager:
        """A manager for the kernel of `entry` (ServiceKernelManager.take_up: `env` is what a
        restart launches it with), counted among this one's kernels as if it had started it."""
        manager = self.kernel_manager_factory(
            connection_file=os.path.join(self.connection_dir, f"kernel-{entry.id}.json"),
            parent=self, log=self.log, kernel_name=entry.kernelspec,
        )  # fmt: skip
        manager.kernel_id = entry.id
        process = {**entry.provisioner_info, "process_start": entry.process_start}
        await manager.take_up(entry.connection_info, {**process, "connection_info": entry.connection_info}, env)
        register_kernel(self, entry.id, manager)
        return manager

    def connection_only(self, entry: StoredKernel) -> ServiceKernelManager:
        """A manager that only knows how to reach the kernel of `entry` (another replica
        owns it: no process, no provisioner, never launched or signalled from here), for
        the relay's sockets; not counted among this one's kernels."""
        manager = self.kernel_manager_factory(
            connection_file=os.path.join(self.connection_dir, f"remote-{entry.id}.json"),  # never written
            parent=self, log=self.log, kernel_name=entry.kernelspec,
        )  # fmt: skip
        manager.kernel_id = entry.id
        manager.load_connection_info(entry.connection_info)
        return manager


class StderrCopy(threading.Thread):
    """Copies a kernel's stderr to the service's, line by line, until the kernel closes it;
    lines every kernel prints (ONCE) only the first time in the service's life."""

    ONCE = (b"Kernel is running over TCP without encryption",)
    _seen: set[bytes] = set()
    _lock = threading.Lock()

    def __init__(self, source: BinaryIO, target: IO[bytes]):
        super().__init__(name="kernel-stderr", daemon=True)
        self._source = source
        self._target = target

    def run(self) -> None:
        with self._source:
            for line in iter(self._source.readline, b""):
                if self._first_time(line):
                    try:
                        self._target.write(line)
                        self._target.flush()
                    except (OSError, ValueError):
                        pass  # the service's stderr is gone: read on, or the kernel would block

    @classmethod
    def _first_time(cls, line: bytes) -> bool:
        marker = next((marker for marker in cls.ONCE if marker in line), None)
        if marker is None:
            return True
        with cls._lock:
            if marker in cls._seen:
                return False
            cls._seen.add(marker)
            return True
