"""The environment a kernel gets: chosen, not inherited.

Of the service's environment a kernel gets only what it needs to run (`INHERITED`: the
search path, home, locale, time zone, the virtual environment's and Jupyter's
variables...) and the names or patterns the operator adds; never the service's token,
whatever the patterns say. Kernel Gateway's `KG_ENV_PROCESS_WHITELIST` is the same
idea. On top, jupyter_client applies the kernelspec's own `env` (its `${VAR}`
substitutions see only this environment). A client may add `KERNEL_*` variables and
those the operator allows; a variable no process can take (a name with `=` or NUL, a
lone surrogate, a value too long) is a 400, never a failed launch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from kernels_service.kernels.errors import InvalidRequest

log = logging.getLogger("kernels_service.kernels")


class KernelEnvironment:
    """The environment of every kernel, and what a client's request adds to it."""

    def __init__(self, base: Mapping[str, str], allowed: Iterable[str] = ()):
        """`base`: what every kernel gets; `allowed`: variables a client may set besides KERNEL_*."""
        self.base = dict(base)
        self._allowed = frozenset(allowed)

    def for_client(self, requested: Mapping[str, Any]) -> dict[str, str]:
        """The base environment plus the client's variables that are allowed
        (InvalidRequest for one no process could take)."""
        env = dict(self.base)
        for key, value in requested.items():
            check_variable(key, value)
            if key.startswith("KERNEL_") or key in self._allowed:
                env[key] = value
            else:
                log.info("Ignoring env variable %s from client (not allowed)", key)
        return env


#: Longest value a client may give a kernel variable, and longest name, in characters
#: (Linux refuses a variable over 128 KiB, and a character takes up to 4 bytes: the
#: launch would fail with a traceback, not a clear error). Characters, as the API's
#: JSON Schema counts them.
MAX_VARIABLE_CHARS = 16 * 1024
MAX_NAME_CHARS = 1024


def check_variable(name: Any, value: Any) -> None:
    """Raise InvalidRequest for a variable a process cannot be given: not strings, an
    empty name or one with `=`, a NUL anywhere, no UTF-8 form, or a value too long."""
    if not isinstance(name, str) or not isinstance(value, str):
        raise InvalidRequest("env must map variable names to strings")
    if not name or "=" in name:
        raise InvalidRequest(f"env: {name!r} is not a variable name")
    if "\0" in name or "\0" in value:
        raise InvalidRequest(f"env: {name!r} holds a NUL character")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequest(f"env: a variable name is longer than {MAX_NAME_CHARS} characters")
    try:
        value.encode()
        name.encode()
    except UnicodeEncodeError:
        raise InvalidRequest(f"env: {name!r} holds a lone surrogate") from None
    if len(value) > MAX_VARIABLE_CHARS:
        raise InvalidRequest(f"env: {name!r} is longer than {MAX_VARIABLE_CHARS} characters")


#: What kernels inherit of the service's environment by default: names, or shell-style
#: patterns (case-sensitive). What a kernel needs to run and to find its packages,
#: nothing that usually holds a secret.
INHERITED = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "TERM", "TMPDIR", "TZ", "LANG", "LANGUAGE", "LC_*",
    "VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED",
    "PYTHONIOENCODING", "JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR",
    "JUPYTER_PLATFORM_DIRS", "IPYTHONDIR", "MPLCONFIGDIR", "XDG_*", "LD_LIBRARY_PATH", "OPENBLAS_*",
    "OMP_NUM_THREADS", "SSL_CERT_FILE", "SSL_CERT_DIR",
)  # fmt: skip

#: Never inherited, whatever the operator's patterns: the service's own token variables.
SECRET_VARIABLES = ("KERNELS_SERVICE_TOKEN", "JUPYTER_TOKEN", "JPY_API_TOKEN")


def inherited_environment(environ: Mapping[str, str], also: Iterable[str] = ()) -> dict[str, str]:
    """The variables of `environ` a kernel inherits: those `INHERITED` names or matches,
    and those the operator's names or patterns (`also`) match, but never a secret one."""
    patterns = (*INHERITED, *also)
    return {
        name: value
        for name, value in environ.items()
        if name not in SECRET_VARIABLES and any(fnmatchcase(name, pattern) for pattern in patterns)
    }
