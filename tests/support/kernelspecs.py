"""Kernelspecs the tests need: local ones written into a Jupyter path of the test's own
(`write_kernelspec`), and kernels in containers, installed as an operator installs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

#: ipykernel, as the service's own Python runs it.
IPYKERNEL = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]


def write_kernelspec(root: Path, name: str, argv: list[str] | None = None, **fields: Any) -> Path:
    """A kernelspec `name` under `root` (a JUPYTER_PATH entry: `root/kernels/name/kernel.json`):
    ipykernel unless `argv` says otherwise, with `fields` (env, metadata, ...) added; its directory."""
    directory = Path(root) / "kernels" / name
    directory.mkdir(parents=True)
    spec = {"argv": argv or IPYKERNEL, "display_name": name, "language": "python", **fields}
    (directory / "kernel.json").write_text(json.dumps(spec))
    return directory


#: A kernel launcher that starts ipykernel the first time only; every restart exits at once.
ONCE_LAUNCHER = """
import os, sys
marker = sys.argv[1]
if os.path.exists(marker):
    sys.exit(3)
open(marker, "w").close()
from ipykernel.kernelapp import launch_new_instance
sys.argv = [sys.argv[0], *sys.argv[2:]]
launch_new_instance()
"""


def write_once_kernelspec(root: Path) -> None:
    """Kernelspec `once`: a kernel that cannot be restarted (ONCE_LAUNCHER)."""
    (Path(root) / "once.py").write_text(ONCE_LAUNCHER)
    write_kernelspec(root, "once", [sys.executable, str(Path(root) / "once.py"), str(Path(root) / "started"),
                                    "-f", "{connection_file}"])  # fmt: skip


def install_kernelspec(prefix: Path, image: str, name: str) -> None:
    """`jupyter docker-spec install`, as an operator runs it."""
    command = [str(Path(sys.executable).with_name("jupyter")), "docker-spec", "install", f"--prefix={prefix}",
               f"--image-name={image}", f"--kernel-name={name}"]  # fmt: skip
    installed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout + installed.stderr


def install_confined_kernelspec(prefix: Path, image: str, name: str, *limits: str) -> None:
    """`python -m kernels_service.containers.kernelspec`, as an operator runs it."""
    command = [sys.executable, "-m", "kernels_service.containers.kernelspec", f"--prefix={prefix}",
               f"--image={image}", f"--name={name}", *limits]  # fmt: skip
    installed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout + installed.stderr
