"""Taking up a local kernel that an earlier service launched (`--keep-kernels`).

jupyter_client's LocalProvisioner knows its kernel by the `Popen` it launched, and
`load_provisioner_info` does not restore one: a kernel taken up after a restart would not
be signalled, polled or stopped. `KeptKernelProvisioner` gives it a `ForeignProcess`, which
does what the provisioner asks of a `Popen` for a process that is not the service's
child: by its pid, and only while that pid is still the same process (its start time,
as Linux counts it, is kept with it: a pid may be reused once the kernel is gone). Its
process group, which jupyter_client signals first, is signalled only while it is still
the kernel's (`OwnGroupProvisioner`).
"""

from __future__ import annotations

import base64
import os
import signal
from typing import Any

from kernels_service.kernels.provisioners.bubblewrap import PROVISIONER_NAME as SANDBOX_PROVISIONER
from kernels_service.kernels.provisioners.confined import PROVISIONER_NAME as CONFINED_PROVISIONER
from kernels_service.kernels.provisioners.confined import ConfinedProvisioner
from kernels_service.processes import process_start

LOCAL_PROVISIONER = "local-provisioner"  # jupyter_client's default


def provisioner_name(kernel_spec: Any) -> str:
    """The name of the provisioner a kernelspec names (jupyter_client's default: the local one)."""
    metadata = kernel_spec.metadata or {}
    return metadata.get("kernel_provisioner", {}).get("provisioner_name", LOCAL_PROVISIONER)


def runs_locally(kernel_spec: Any) -> bool:
    """Whether a kernelspec's kernel is a local process of the service's (jupyter_client's
    local provisioner, our sandbox's or the confined one), rather than one a launcher asks an
    engine for."""
    return provisioner_name(kernel_spec) in (LOCAL_PROVISIONER, SANDBOX_PROVISIONER, CONFINED_PROVISIONER)


class ForeignProcess:
    """A `Popen` look-alike for a process the service did not start."""

    def __init__(self, pid: int, start: int | None):
        self.pid = pid
        self.start = start
        self.returncode: int | None = None
        self.stdin = self.stdout = self.stderr = None

    def alive(self) -> bool:
        return process_start(self.pid) == self.start

    def poll(self) -> int | None:
        """None while it runs; once it is gone, a return code (unknown to a non-parent: -1)."""
        if self.returncode is None and not self.alive():
            self.returncode = -1
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """Called by the provisioner once `poll` has said the process is gone."""
        return self.poll()

    def send_signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class KeptKernelProvisioner(ConfinedProvisioner):
    """jupyter_client's local provisioner, for a kernel it did not launch: it is given the
    process back from the provisioner info (`pid`, and `process_start`), and its own uid
    if it had one (a restart launches it as that uid again; its end gives the uid back)."""

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.process = ForeignProcess(provisioner_info["pid"], provisioner_info.get("process_start"))
        self.leader_start = self.process.start


def json_safe(value: Any) -> Any:
    """`value` with its bytes as text (keys: ASCII; anything else: base64), for the store."""
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
