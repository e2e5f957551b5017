"""The kernel manager class: jupyter_client's, with its auto-restarter, but asyncio sockets.

`AsyncIOLoopKernelManager` keeps the auto-restarter running on tornado's loop but wraps
`connect_*` to hand out plain sockets for ZMQStream. The relay reads with `await`, so
this subclass restores the `zmq.asyncio` socket factories of `AsyncKernelManager`.

jupyter_client tells its restart callbacks *before* a restart (`"restart"`) but nobody
after it. The relay must know when the new kernel process is there (and on which
ports: a restart may pick new ones) before it can re-establish iopub, so this class
also calls `on_restarted` callbacks once every restart, REST or automatic, is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jupyter_client.ioloop import AsyncIOLoopKernelManager
from jupyter_client.manager import AsyncKernelManager


class ServiceKernelManager(AsyncIOLoopKernelManager):
    """Launch, signal and restart through jupyter_client (provisioners included)."""

    connect_shell = AsyncKernelManager.connect_shell
    connect_control = AsyncKernelManager.connect_control
    connect_iopub = AsyncKernelManager.connect_iopub
    connect_stdin = AsyncKernelManager.connect_stdin

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._restarted_callbacks: list[Callable[[], None]] = []

    def on_restarted(self, callback: Callable[[], None]) -> None:
        """Call `callback` after each completed restart (the new process is launched)."""
        self._restarted_callbacks.append(callback)

    async def restart_kernel(self, now: bool = False, newports: bool = False, **kw: Any) -> None:
        await super().restart_kernel(now=now, newports=newports, **kw)
        for callback in list(self._restarted_callbacks):
            callback()
