"""A kernel that cannot be started is an answer, not a traceback: 503 with a message that
names the kernelspec, the details in the service's log in one line, nothing left
running, and the next client served. (jupyter_client's own report of the failed launch is
one line too; its traceback only with --log-level=DEBUG.)"""

from __future__ import annotations

import json

from kernels_service.testing.service import descendants, running_service, tracebacks


def make_broken_kernelspec(root) -> None:
    spec = root / "kernels" / "broken"
    spec.mkdir(parents=True)
    argv = ["/no/such/program", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Broken", "language": "python"}))


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
