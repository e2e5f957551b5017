"""The kernel manager class: jupyter_client's, with its auto-restarter, but asyncio sockets.

`AsyncIOLoopKernelManager` keeps the auto-restarter running on tornado's loop but wraps
`connect_*` to hand out plain sockets for ZMQStream. The relay reads with `await`, so
this subclass restores the `zmq.asyncio` socket factories of `AsyncKernelManager`.
"""

from jupyter_client.ioloop import AsyncIOLoopKernelManager
from jupyter_client.manager import AsyncKernelManager


class ServiceKernelManager(AsyncIOLoopKernelManager):
    """Launch, signal and restart through jupyter_client (provisioners included)."""

    connect_shell = AsyncKernelManager.connect_shell
    connect_control = AsyncKernelManager.connect_control
    connect_iopub = AsyncKernelManager.connect_iopub
    connect_stdin = AsyncKernelManager.connect_stdin
