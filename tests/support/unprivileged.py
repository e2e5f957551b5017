"""The service as an unprivileged user runs it: another uid, no capabilities (`setpriv`),
for the tests of kernels kept apart by Landlock (`kernels/confinement/`).

The tests run as root (CI does), from a checkout and a virtual environment where another
uid may not pass. An operator installs the service where its user may read it; so do
these tests: the system's `python3` (our minor version) with the service's dependencies,
at our versions, installed by pip into a directory every uid may read (once per set of
versions, under /var/tmp), and a copy of the package in a fresh directory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support.paths import ROOT
from tests.support.shared_python import SHARED_ROOT, SYSTEM_PYTHON, shared_ipykernel

#: A uid no account has, for the service; its kernels share it (Landlock keeps them apart).
SERVICE_UID = 61500
DEPENDENCIES = ("tornado", "jupyter_client", "jupyter_core", "pyzmq", "traitlets", "prometheus_client", "ipykernel")


def shared_dependencies() -> Path:
    """A directory every uid may read, holding the service's dependencies at our versions."""
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in DEPENDENCIES]
    digest = hashlib.sha256(" ".join(pins).encode()).hexdigest()[:12]
    target = SHARED_ROOT / f"service-{digest}-py{sys.version_info[0]}{sys.version_info[1]}"
    if (target / ".complete").exists():
        return target
    shared_ipykernel()  # makes SHARED_ROOT, readable by all
    building = Path(tempfile.mkdtemp(dir=SHARED_ROOT))
    building.chmod(0o755)
    command = [sys.executable, "-m", "pip", "install", "-q", "--target", str(building), *pins]
    installed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    (building / ".complete").touch()
    try:
        os.rename(building, target)
    except OSError:  # another test run made it meanwhile
        shutil.rmtree(building, ignore_errors=True)
    return target


def public_directory(prefix: str) -> Path:
    """A fresh directory under /var/tmp that every uid may read (0755)."""
    SHARED_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=SHARED_ROOT))
    path.chmod(0o755)
    return path


def copy_of_the_service(into: Path) -> Path:
    """The package and `kernels.py`, copied into `into` (readable by all), with the
    installed distribution's metadata (its entry points name our provisioners): the
    directory to put on PYTHONPATH."""
    shutil.copytree(ROOT / "kernels_service", into / "kernels_service",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "kernels.py", into / "kernels.py")
    installed = importlib.metadata.distribution("kernels-service")
    metadata = into / f"kernels_service-{installed.version}.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text(installed.read_text("METADATA") or installed.read_text("PKG-INFO") or "")
    (metadata / "entry_points.txt").write_text(installed.read_text("entry_points.txt") or "")
    for directory, _, files in os.walk(into):
        os.chmod(directory, 0o755)
        for name in files:
            os.chmod(os.path.join(directory, name), 0o644)
    return into


def owned_directory(uid: int, prefix: str) -> Path:
    """A fresh directory under /var/tmp that belongs to `uid` (0700): its home. Not under
    /tmp, where a busy machine keeps thousands of entries, each of which would cost a
    Landlock rule (the home, holding the rooms, is hidden from the kernels: every entry
    beside it is granted one by one), as few homes do."""
    SHARED_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=SHARED_ROOT))
    os.chown(path, uid, uid)
    return path


def unprivileged_launcher(uid: int = SERVICE_UID) -> tuple[str, ...]:
    """`Service(launcher=...)`: the system's Python, as `uid`, with no group and no capability."""
    return ("setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", SYSTEM_PYTHON, "-m", "kernels_service")  # fmt: skip


def unprivileged_options(code: Path, jupyter: Path, home: Path) -> dict:
    """`Service` options of the unprivileged service: its launcher, its environment (its
    code and dependencies, the kernelspecs, its home), and its home as working directory
    (never the checkout's, where its uid may or may not pass)."""
    return {"launcher": unprivileged_launcher(), "env": unprivileged_environment(code, jupyter, home), "cwd": home}


def unprivileged_environment(code: Path, jupyter: Path, home: Path) -> dict[str, str]:
    """The service's environment: its code and dependencies, the kernelspecs, its home."""
    path = os.pathsep.join([str(code), str(shared_dependencies())])
    return {"PYTHONPATH": path, "JUPYTER_PATH": str(jupyter), "HOME": str(home), "XDG_RUNTIME_DIR": "",
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "JUPYTER_DATA_DIR": str(home / "data")}  # fmt: skip
