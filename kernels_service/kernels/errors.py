"""Domain errors. The web layer maps each client error to an HTTP status; domain code
knows no HTTP. Configuration and start-up faults are `ConfigError`s, apart: no client
causes them, and no answer to a client carries their message."""


class ConfigError(Exception):
    """The service cannot run as configured (an option's bad value, a program or file it
    needs that is missing or unusable): the start fails with exit 1 and this message,
    which says what to change."""


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


class StoreUnavailable(KernelsError):
    """The kernel store did not answer while the service runs (a database stopped or out
    of reach): what needed it is refused (503), and the running kernels keep running."""


class HandingOver(KernelsError):
    """The kernel's replica let go of it (it drains) and no other has taken it yet, or one
    is taking it up right now: try again in a moment (503)."""


class KernelRefused(KernelsError):
    """The kernel's provisioner refused to start it for this request, and said why (its
    authorization rules: a `KERNEL_USERNAME` it does not allow, a uid it prohibits): 403."""


class KernelNotStarted(KernelsError):
    """The kernel's launch failed (a missing program, a container engine that does not
    answer, an image that is not there, a launch that timed out): 503, with the details
    in the service's log rather than in the answer."""


def start_failure(name: str, error: Exception) -> KernelsError:
    """What the client is told of a launch that raised `error`. A provisioner's refusal
    (gateway_provisioners raises PermissionError with a reason, no errno: a system call's
    has one, and its path is not the client's business) is a 403 with that reason; a
    launch that timed out says so; anything else is the kernel's failure, told in the log."""
    if isinstance(error, PermissionError) and error.errno is None and str(error):
        return KernelRefused(str(error))
    if isinstance(error, TimeoutError):
        return KernelNotStarted(f"The {name} kernel did not start within its launch timeout; the log says why")
    return KernelNotStarted(f"The {name} kernel could not be started; the service's log says why")
