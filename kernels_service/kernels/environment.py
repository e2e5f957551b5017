"""The environment a kernel gets: the service's, less its secrets, plus what a client may add.

A client may add `KERNEL_*` variables and those the operator allows; a variable no
process can take (a name with `=` or NUL, a lone surrogate, a value too long) is a 400,
never a failed launch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
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


def sanitised_environment(secret_names: Iterable[str]) -> dict[str, str]:
    """The service's environment less the variables that hold its secrets."""
    secrets = set(secret_names)
    return {key: value for key, value in os.environ.items() if key not in secrets}
