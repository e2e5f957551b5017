"""Domain: the kernel registry over jupyter_client, kernel models and domain errors."""

from kernels_service.kernels.errors import (
    InvalidRequest,
    KernelsError,
    LimitReached,
    NoSuchKernel,
    NoSuchKernelSpec,
)
from kernels_service.kernels.registry import KernelRecord, KernelRegistry

__all__ = [
    "InvalidRequest",
    "KernelRecord",
    "KernelRegistry",
    "KernelsError",
    "LimitReached",
    "NoSuchKernel",
    "NoSuchKernelSpec",
]
