"""The entry point of `kernels-service`, `python -m kernels_service` and `kernels.py`.

Its first act is to make the process undumpable (`hardening.make_undumpable`): until
then, any process of the service's uid may read its environment, which may hold the
token and the operator's other secrets. Then it re-executes the process under the
allocator whose memory can be given back (`memory.run_under_system_malloc`), which
starts here again, before the heavy imports; then it serves.
"""

from __future__ import annotations

from kernels_service.hardening import make_undumpable  # the standard library only


def main() -> None:
    """Start the service."""
    make_undumpable()  # `serve` warns if it could not be done
    from kernels_service.memory import run_under_system_malloc

    run_under_system_malloc()
    from kernels_service.app import main as serve

    serve()
