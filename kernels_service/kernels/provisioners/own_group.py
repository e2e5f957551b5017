"""jupyter_client's local provisioner, which signals its kernel's process group only while
the group is still the kernel's.

jupyter_client records the kernel's process group at the launch (the kernel leads one of
its own) and signals that group first, for an interrupt, a terminate or a kill, even once
the kernel has ended and been reaped. A group's id is a pid: once nothing uses it, Linux
gives it to a new process, and the service, as root, would signal whichever processes
hold it now. Here the group is signalled only while `group_still_ours` says so (its
leader is the kernel, by its start time, or no process holds the id); otherwise the
kernel process alone is, which knows whether it still runs (a `Popen`, or a kept
kernel's `ForeignProcess`).
"""

from __future__ import annotations

from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from kernels_service.processes import group_still_ours, process_start


class OwnGroupProvisioner(LocalProvisioner):  # type: ignore[misc]
    """A local kernel whose process group is signalled only while it is the kernel's."""

    leader_start: int | None = None  # the kernel's start time, taken at its launch

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        info = await super().launch_kernel(cmd, **kwargs)
        if self.process is not None:
            self.leader_start = process_start(self.process.pid)
        return info

    async def send_signal(self, signum: int) -> None:
        if self.pgid and not group_still_ours(self.pgid, self.leader_start):
            self.pgid = None  # not the kernel's now, nor ever again (a restart records its own)
        await super().send_signal(signum)
