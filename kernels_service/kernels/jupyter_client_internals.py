"""The few private parts of jupyter_client the service relies on, each behind one function.

jupyter_client has no public call for three things the service does: give a kernel ports
that it picked itself while keeping them "random" (so that a restart on new ports picks
again), make the URL of one of a kernel's channels for a socket it builds itself (a stdin
DEALER with a monitor attached before it connects), and take up a kernel an earlier
service launched (a manager marked as started, with its launch arguments for restarts,
counted by the multi-kernel manager). Each function below is the only place that touches
the private attribute it names; `tests/test_dependency_internals.py` checks each against
the installed jupyter_client and fails, naming the attribute, if an upgrade removes or
changes it.
"""

from __future__ import annotations

from typing import Any

from jupyter_client.manager import KernelManager
from jupyter_client.multikernelmanager import MultiKernelManager

#: The private attributes used here, by owner, for the test that checks them.
PRIVATE_ATTRIBUTES = {
    "jupyter_client.connect.ConnectionFileMixin": ("_random_port_names", "_make_url", "_connection_file_written"),
    "jupyter_client.manager.KernelManager": ("_launch_args", "_attempted_start"),
    "jupyter_client.multikernelmanager.MultiKernelManager": ("_kernels",),
}


def record_random_ports(manager: KernelManager, names: list[str]) -> None:
    """Count the ports `names` as picked at random for this kernel (jupyter_client's
    `_random_port_names`), unless it already knows which are: a restart with new ports
    then clears and picks them again, as it does for ports jupyter_client picked."""
    if manager._random_port_names is None:
        manager._random_port_names = list(names)


def channel_url(manager: KernelManager, channel: str) -> str:
    """The ZeroMQ URL of one of the kernel's channels ("shell", "stdin", ...), as
    jupyter_client's own `connect_*` build it (`_make_url`): transport, address and port."""
    return manager._make_url(channel)


def mark_started(manager: KernelManager, launch_args: dict[str, Any]) -> None:
    """Make a manager whose provisioner was loaded (not launched) look started, as
    jupyter_client's own start leaves it: `launch_args` are what a restart launches
    with (`_launch_args`), and it counts as having tried a start (`_attempted_start`:
    `is_alive`, `shutdown_kernel` and restarts look at it)."""
    manager._launch_args = launch_args
    manager._attempted_start = True


def register_kernel(multi: MultiKernelManager, kernel_id: str, manager: KernelManager) -> None:
    """Count `manager` among `multi`'s kernels as if it had started it (`_kernels`), so
    that `get_kernel`, `list_kernel_ids` and `remove_kernel` know it."""
    multi._kernels[kernel_id] = manager


def own_connection_file(manager: KernelManager, owned: bool) -> None:
    """Whether the manager removes its kernel's connection file when it cleans up (or is
    garbage-collected: jupyter_client's `_connection_file_written`). A kept kernel's
    manager lets go of it (the kernel still runs, and the next service's manager owns it);
    that manager takes it up (the file is there, and goes with the kernel's end)."""
    manager._connection_file_written = owned
