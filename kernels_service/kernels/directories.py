"""The kernels' private directories: where their connection files are written (they hold
the kernels' HMAC and CurveZMQ keys), and where their ipc sockets are (`ipc.py`)."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass

from jupyter_core.paths import jupyter_runtime_dir
from jupyter_core.utils import ensure_dir_exists

log = logging.getLogger("kernels_service.kernels")


@dataclass(frozen=True)
class PrivateDir:
    """A directory of the service's uid alone; `temporary` if made for this service."""

    path: str
    temporary: bool

    def remove(self) -> None:
        """Remove it if it was made for this service (Jupyter's runtime directory stays)."""
        if self.temporary:
            shutil.rmtree(self.path, ignore_errors=True)


def connection_dir() -> PrivateDir:
    """Where kernel connection files are written: Jupyter's runtime directory
    (`JUPYTER_RUNTIME_DIR`, else the user's), private. Where it cannot be made (an image
    run under a uid with no home), a fresh private temporary directory, with a warning,
    rather than a crash at start; that one is removed when the service stops."""
    runtime = jupyter_runtime_dir()
    try:
        ensure_dir_exists(runtime, mode=0o700)
        return PrivateDir(runtime, temporary=False)
    except OSError as error:
        fallback = tempfile.mkdtemp(prefix="kernels-service-runtime-")
        log.warning("Cannot use the runtime directory %s (%s); connection files go to %s", runtime, error, fallback)
        return PrivateDir(fallback, temporary=True)
