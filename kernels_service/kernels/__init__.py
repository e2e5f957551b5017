"""Domain: the kernel registry over jupyter_client, kernel models and domain errors."""

from kernels_service.kernels.errors import (
    Busy,
    ConfigError,
    InvalidRequest,
    KernelNotStarted,
    KernelRefused,
    KernelsError,
    LimitReached,
    NoSuchKernel,
    NoSuchKernelSpec,
    Stopping,
    StoreUnavailable,
)
from kernels_service.kernels.record import KernelRecord
from kernels_service.kernels.registry import KernelRegistry

__all__ = [
    "Busy",
    "ConfigError",
    "InvalidRequest",
    "KernelNotStarted",
    "KernelRecord",
    "KernelRefused",
    "KernelRegistry",
    "KernelsError",
    "LimitReached",
    "NoSuchKernel",
    "NoSuchKernelSpec",
    "Stopping",
    "StoreUnavailable",
]
