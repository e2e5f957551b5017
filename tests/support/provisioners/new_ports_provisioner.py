"""A kernel provisioner for the tests: a restarted kernel gets new ports, as remote
provisioners (Kubernetes, YARN, Docker) give them. Registered by the dist-info beside
this file, which the tests put on the service's PYTHONPATH."""

from __future__ import annotations

from typing import Any

from jupyter_client.provisioning import LocalProvisioner


class NewPortsProvisioner(LocalProvisioner):
    """LocalProvisioner, but every launch after the first picks new ports."""

    launched = False

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        manager = self.parent
        if NewPortsProvisioner.launched and manager is not None:
            manager.cleanup_connection_file()
            manager.shell_port = manager.iopub_port = manager.stdin_port = 0
            manager.hb_port = manager.control_port = 0
            self.ports_cached = False
        NewPortsProvisioner.launched = True
        return await super().pre_launch(**kwargs)
