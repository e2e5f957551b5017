"""Which program a kernelspec's `argv` runs."""

from __future__ import annotations

import sys

#: What jupyter_client's `format_kernel_cmd` takes for "the service's Python" in a local
#: kernelspec's argv, and replaces by `sys.executable`.
BARE_PYTHONS = ("python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2]))


def with_service_python(argv: list[str]) -> list[str]:
    """A launcher's `argv` with a bare `python` replaced by the service's interpreter, as
    jupyter_client does for local kernels (provisioners such as gateway_provisioners' run
    the kernelspec's argv as it is, and `python` would be whatever comes first on PATH)."""
    return [sys.executable, *argv[1:]] if argv and argv[0] in BARE_PYTHONS else list(argv)
