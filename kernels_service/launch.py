"""The entry point of `kernels-service`, `python -m kernels_service` and `kernels.py`.

It first re-executes the process under the allocator whose memory can be given back
(`memory.run_under_system_malloc`), before the heavy imports, then serves.
"""

from __future__ import annotations

from kernels_service.memory import run_under_system_malloc


def main() -> None:
    """Start the service."""
    run_under_system_malloc()
    from kernels_service.app import main as serve

    serve()
