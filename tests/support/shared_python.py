"""A Python kernel that a process of any uid may run, for the tests of kernels with a uid
of their own (`kernels_service.kernels.kernel_uids`).

The tests' own Python often sits where only its owner may pass (a virtual environment
in a private temporary directory, an interpreter under `/root`): a kernel of another uid
could not even start it, and the service then rightly gives such a kernelspec the
service's uid. An operator installs the kernels' Python where every uid may read it;
so do these tests: the system's `python3` (the same minor version as ours), with the
ipykernel we run installed by pip into a directory every uid may read, once per
version, under /var/tmp.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.kernelspecs import write_kernelspec

SYSTEM_PYTHON = "/usr/bin/python3"
SHARED_ROOT = Path("/var/tmp/kernels-service-tests")


def shared_ipykernel() -> Path:
    """A directory every uid may read, holding our ipykernel and what it needs."""
    version = importlib.metadata.version("ipykernel")
    target = SHARED_ROOT / f"ipykernel-{version}-py{sys.version_info[0]}{sys.version_info[1]}"
    if (target / ".complete").exists():
        return target
    SHARED_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    SHARED_ROOT.chmod(0o755)
    building = Path(tempfile.mkdtemp(dir=SHARED_ROOT))
    building.chmod(0o755)
    command = [sys.executable, "-m", "pip", "install", "-q", "--target", str(building), f"ipykernel=={version}"]
    installed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (building / ".complete").touch()
    try:
        os.rename(building, target)
    except OSError:  # another test run made it meanwhile
        shutil.rmtree(building, ignore_errors=True)
    return target


def write_shared_kernelspec(root: Path, name: str = "python3") -> Path:
    """Kernelspec `name` (by default shadowing the tests' own `python3`) under `root`: the
    system's Python with the shared ipykernel, declaring CurveZMQ as ipykernel's does."""
    system = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    ours = str(tuple(sys.version_info[:2]))
    assert system.stdout.strip() == ours, f"{SYSTEM_PYTHON} is {system.stdout.strip()}, not {ours}: {system.stderr}"
    argv = [SYSTEM_PYTHON, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    environment = {"PYTHONPATH": str(shared_ipykernel())}
    return write_kernelspec(root, name, argv, env=environment, metadata={"supported_encryption": ["curve"]})
