"""Local kernels, confined: each kept apart where the service can (`kernels.separation`:
a uid of its own, or a Landlock room of its own), and bounded (`kernels.limits`).

A jupyter_client `LocalProvisioner` whose launch takes an account for its kernel (where
the service's isolation plan says this kernelspec gets one: `Separation.runs`), writes
the kernel's connection file in the kernel's own directory, names its ipc sockets after
it, and runs the kernel there: as its uid (no supplementary groups) or confined to its
room, umask 077, its home and `TMPDIR` in that directory, and its working directory
there. A restart keeps the account (jupyter_client launches again with the same
arguments); the kernel's end gives it back. A kernelspec the plan does not cover
launches as jupyter_client's would.

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

from kernels_service.kernels.kernel_uids import KernelAccount, remove_account
from kernels_service.kernels.limits import KernelLimits
from kernels_service.kernels.provisioners.own_group import OwnGroupProvisioner
from kernels_service.kernels.separation import Separation

PROVISIONER_NAME = "confined-provisioner"
ACCOUNT_INFO = "own_uid"  # the provisioner info's key: a kept kernel's account (uid and directory)


class ConfinedProvisioner(OwnGroupProvisioner):
    """A local kernel, kept apart where the service can, bounded."""

    account: KernelAccount | None = None

    @property
    def separation(self) -> Separation | None:
        """The service's way of keeping kernels apart (the manager's), if any."""
        return getattr(self.parent, "kernel_separation", None)

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        manager, separation = self.parent, self.separation
        if self.account is None and separation is not None and separation.runs(self.kernel_spec.argv):
            self.account = separation.take()
        if self.account is None or separation is None:
            return await super().pre_launch(**kwargs)
        account = self.account
        manager.connection_file = os.path.join(account.directory, os.path.basename(manager.connection_file))
        if manager.transport == "ipc":
            manager.ip = separation.ipc_prefix(account)
        launch = await super().pre_launch(**kwargs)
        separation.hand_over(manager.connection_file, account)
        launch["env"] = {**launch.get("env", {}), "HOME": account.home, "TMPDIR": account.tmp}
        launch.update(separation.launch_options(account))
        return launch

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        separation, env = self.separation, kwargs.get("env", {})
        if self.account is not None and separation is not None:
            cmd = separation.command(cmd, self.account, env, self.kernel_spec.resource_dir or "")
        limits: KernelLimits | None = getattr(self.parent, "kernel_limits", None)
        own_uid = self.account is not None and self.account.uid != os.getuid()
        if limits is not None:
            cmd = limits.command(cmd, own_uid=own_uid, path=env.get("PATH"))
        info = await super().launch_kernel(cmd, **kwargs)
        if self.process is not None:
            launcher_did = self.account is not None and separation is not None and separation.sets_oom_score
            if limits is not None and not launcher_did:
                limits.first_to_go(self.process.pid)
            if self.account is not None and separation is not None:
                separation.launched(self.account, self.process.pid)
        return info

    async def cleanup(self, restart: bool = False) -> None:
        await super().cleanup(restart)
        if not restart and self.account is not None:
            remove_account(self.account)
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
