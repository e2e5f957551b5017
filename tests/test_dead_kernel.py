"""A kernel that cannot be restarted is reported `dead`, to clients and in its model."""

from __future__ import annotations

import os
import signal

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import running_service
from tests.support.kernelspecs import write_once_kernelspec
from tests.support.waiting import wait_until


def test_kernel_that_cannot_restart_is_dead(tmp_path):
    write_once_kernelspec(tmp_path)
    with running_service(
        "--initial-kernels=0",
        "--KernelRestarter.time_to_dead=0.5",
        "--KernelRestarter.restart_limit=1",
        env={"JUPYTER_PATH": str(tmp_path)},
    ) as service:
        kernel_id = service.start_kernel(name="once")
        client = ChannelsClient(service, kernel_id)
        _, outputs = client.execute("import os; print(os.getpid())")
        os.kill(int(stream_text(outputs)), signal.SIGKILL)
        states = [
            m["content"]["execution_state"]
            for m in client.recv_until(
                lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "dead", timeout=60
            )
            if m["header"]["msg_type"] == "status"
        ]
        assert "restarting" in states and states[-1] == "dead"
        wait_until(
            lambda: service.request("GET", f"api/kernels/{kernel_id}")[2]["execution_state"] == "dead", 10, "dead"
        )
        client.close()
        assert service.request("DELETE", f"api/kernels/{kernel_id}")[0] == 204
