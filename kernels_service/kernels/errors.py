"""Domain errors. The web layer maps each to an HTTP status; domain code knows no HTTP."""


class KernelsError(Exception):
    """Base of the errors a client can cause; the message is safe to show to clients."""


class NoSuchKernel(KernelsError):
    def __init__(self, kernel_id: str):
        super().__init__(f"No such kernel: {kernel_id}")


class NoSuchKernelSpec(KernelsError):
    def __init__(self, name: str):
        super().__init__(f"No such kernelspec: {name}")


class InvalidRequest(KernelsError):
    """The request is well-formed but its values are not acceptable."""


class LimitReached(KernelsError):
    """A configured limit (such as max_kernels) forbids the request."""


class Busy(KernelsError):
    """Another lifecycle operation of the kernel is pending (409)."""


class Stopping(KernelsError):
    """The service is stopping and starts no more kernels (503)."""


class KernelNotStarted(KernelsError):
    """The kernel's launch failed (a missing program, a container engine that does not
    answer, an image that is not there, a launch that timed out): 503, with the details
    in the service's log rather than in the answer."""
