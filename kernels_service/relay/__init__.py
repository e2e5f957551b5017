"""Per-kernel relay: one iopub reader per kernel fanned out to every client, and
per-session shell/control/stdin sockets. The websocket and socket.io doors both use it."""

from kernels_service.relay.hub import SERVICE_RESTARTING, RelayHub
from kernels_service.relay.kernel import KernelRelay
from kernels_service.relay.session import RelayListener, RelaySession

__all__ = ["SERVICE_RESTARTING", "KernelRelay", "RelayHub", "RelayListener", "RelaySession"]
