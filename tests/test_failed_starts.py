"""A kernel that cannot be started is an answer, not a traceback: 503 with a message that
names the kernelspec, the details in the service's log in one line, nothing left
running, and the next client served. (jupyter_client's own report of the failed launch is
one line too; its traceback only with --log-level=DEBUG.)"""

from __future__ import annotations

from kernels_service.kernels.errors import KernelNotStarted, KernelRefused, start_failure
from kernels_service.testing.service import descendants, running_service, tracebacks
from tests.support.kernelspecs import write_kernelspec


def make_broken_kernelspec(root) -> None:
    write_kernelspec(root, "broken", ["/no/such/program", "-f", "{connection_file}"])


def test_a_kernel_that_cannot_be_launched_is_a_503_with_a_reason(tmp_path):
    make_broken_kernelspec(tmp_path)
    with running_service("--initial-kernels=0", "--pool-size=0", env={"JUPYTER_PATH": str(tmp_path)}) as service:
        for _ in range(3):
            status, _, body = service.request("POST", "api/kernels", {"name": "broken"})
            assert status == 503, body
            assert body["message"] == "The broken kernel could not be started; the service's log says why", body
        assert service.request("GET", "api/kernels")[2] == []
        assert not descendants(service.pid)
        assert service.request("POST", "api/kernels", {})[0] == 201  # the next client is served
        output = service.output()
    assert output.count("Kernel of broken not started: FileNotFoundError") == 3, output
    assert tracebacks(output) == [], output


def test_what_a_client_is_told_of_a_launch_depends_on_what_failed():
    """A provisioner's refusal, with its reason, is the client's answer (403); a system
    call's PermissionError is not (its path is the service's business), nor any other."""
    refusal = PermissionError("User 'root' is not authorized to start kernel 'Docker Python'.")
    assert isinstance(start_failure("c", refusal), KernelRefused) and str(start_failure("c", refusal)) == str(refusal)
    denied = start_failure("c", PermissionError(13, "Permission denied", "/srv/secret/launcher"))
    assert isinstance(denied, KernelNotStarted) and "/srv" not in str(denied)
    late = start_failure("c", TimeoutError("KernelID: 'x' launch timeout due to: Waited too long (8.0s)"))
    assert str(late) == "The c kernel did not start within its launch timeout; the log says why"
    assert str(start_failure("c", RuntimeError("boom"))).endswith("could not be started; the service's log says why")
