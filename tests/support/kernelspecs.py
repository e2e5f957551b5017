"""Kernelspecs for kernels in containers, installed as an operator installs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
