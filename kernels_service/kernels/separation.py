"""What keeps local kernels apart where neither a sandbox nor a container does: a uid of
its own for each kernel (`kernel_uids.KernelUids`, a service that may hand out uids) or a
room of its own under Landlock (`confinement.rooms.LandlockRooms`, an unprivileged
service). Both give each kernel an account (a uid and a directory of its own) and say how
its process is started; `provisioners.confined` launches kernels through either.
"""

from __future__ import annotations

from typing import Protocol

from kernels_service.kernels.kernel_uids import KernelAccount


class Separation(Protocol):
    """How the kernels of one service are kept apart (`mechanism`: "own uid", "landlock")."""

    mechanism: str
    sets_oom_score: bool  # whether the kernel's command makes it the out-of-memory killer's first choice

    def why_not_run(self, argv: list[str]) -> str | None:
        """Why a kernel of this argv cannot be kept apart so (None: it can)."""

    def runs(self, argv: list[str]) -> bool:
        """Whether kernels of this argv are kept apart so."""

    def take(self) -> KernelAccount:
        """A new kernel's account: its uid and its own directory."""

    def give_back(self, account: KernelAccount) -> None:
        """The kernel has ended: its directory goes."""

    def hand_over(self, path: str, account: KernelAccount) -> None:
        """Make a file the service wrote in the kernel's directory the kernel's."""

    def launch_options(self, account: KernelAccount) -> dict[str, object]:
        """`subprocess.Popen` options of the kernel's process."""

    def ipc_prefix(self, account: KernelAccount) -> str:
        """The prefix of the kernel's ipc socket addresses."""

    def command(self, command: list[str], account: KernelAccount, env: dict[str, str], resources: str) -> list[str]:
        """The kernel's command, as started kept apart (`resources`: its kernelspec's directory)."""

    def launched(self, account: KernelAccount, pid: int) -> None:
        """The kernel's process is `pid`."""
