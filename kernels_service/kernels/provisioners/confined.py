"""Local kernels, confined: each launched as a uid of its own where the service gives
one (`kernels.kernel_uids`), and bounded (`kernels.limits`).

A jupyter_client `LocalProvisioner` whose launch takes a uid for its kernel (where the
service's isolation plan says this kernelspec gets one: `KernelUids.runs`), writes the
kernel's connection file and ipc sockets in the kernel's own directory, and runs the
kernel as that uid: no supplementary groups, umask 077, its home and `TMPDIR` in that
directory, and its working directory there. A restart keeps the uid (jupyter_client
launches again with the same arguments); the kernel's end gives it back. A kernelspec
the plan does not cover launches as jupyter_client's would.

The kernel runs under its bounds (memory, open files, and processes where it has a uid
of its own), and is the out-of-memory killer's first choice.

The service keeps what it needs to signal and reach the kernel: it runs as root (or
with CAP_KILL, CAP_SETUID, CAP_SETGID and CAP_DAC_OVERRIDE), so jupyter_client's
interrupt, restart and kill by signal work as before.
"""

from __future__ import annotations

import os
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from kernels_service.kernels.kernel_uids import KernelAccount, KernelUids
from kernels_service.kernels.limits import KernelLimits

PROVISIONER_NAME = "confined-provisioner"
ACCOUNT_INFO = "own_uid"  # the provisioner info's key: a kept kernel's uid and directory


class ConfinedProvisioner(LocalProvisioner):  # type: ignore[misc]
    """A local kernel, launched as a uid of its own where the service gives one, bounded."""

    account: KernelAccount | None = None

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        manager = self.parent
        uids: KernelUids | None = getattr(manager, "kernel_uids", None)
        if self.account is None and uids is not None and uids.runs(self.kernel_spec.argv):
            self.account = uids.take()
        if self.account is None:
            return await super().pre_launch(**kwargs)
        account = self.account
        manager.connection_file = os.path.join(account.directory, os.path.basename(manager.connection_file))
        if manager.transport == "ipc":
            manager.ip = os.path.join(account.directory, "ipc")
        launch = await super().pre_launch(**kwargs)
        KernelUids.hand_over(manager.connection_file, account)
        launch["env"] = {**launch.get("env", {}), "HOME": account.home, "TMPDIR": account.tmp}
        launch.update(user=account.uid, group=account.uid, extra_groups=[], umask=0o077, cwd=account.home)
        return launch

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        limits: KernelLimits | None = getattr(self.parent, "kernel_limits", None)
        if limits is not None:
            cmd = limits.command(cmd, own_uid=self.account is not None, path=kwargs.get("env", {}).get("PATH"))
        info = await super().launch_kernel(cmd, **kwargs)
        if limits is not None and self.process is not None:
            limits.first_to_go(self.process.pid)
        return info

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart)
        if not restart and self.account is not None:
            KernelUids.give_back(self.account)
            self.account = None

    async def get_provisioner_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await super().get_provisioner_info()
        if self.account is not None:
            info[ACCOUNT_INFO] = self.account.as_info()
        return info

    async def load_provisioner_info(self, provisioner_info: dict) -> None:
        await super().load_provisioner_info(provisioner_info)
        if ACCOUNT_INFO in provisioner_info:
            self.account = KernelAccount.from_info(provisioner_info[ACCOUNT_INFO])
            basename = os.path.basename(self.parent.connection_file)
            self.parent.connection_file = os.path.join(self.account.directory, basename)
