"""Serving until a signal: what `python kernels.py` does once its options are read.

The service is built (`builder.build`) and started, and runs until SIGINT or SIGTERM;
then it stops gracefully. With --keep-kernels, SIGTERM (an upgrade, a restart by systemd
or Kubernetes) leaves the kept kernels running; SIGINT (Ctrl-C) still stops everything.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterable

from kernels_service.builder import build, drop_root_powers
from kernels_service.config import ServiceConfig
from kernels_service.hardening import make_undumpable

log = logging.getLogger("kernels_service")


async def serve(config: ServiceConfig, signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> None:
    """Build the service and serve until one of `signals`, then stop it gracefully."""
    if not make_undumpable():
        log.warning("The service is dumpable: processes of its uid, its kernels among them, can read its memory")
    service = build(config)
    drop_root_powers(service)  # before any kernel starts, while the process has one thread
    stop = asyncio.Event()
    received: list[int] = []
    loop = asyncio.get_running_loop()
    for signum in signals:  # before any kernel starts: a SIGTERM during a start must stop it too
        loop.add_signal_handler(signum, lambda signum=signum: (received.append(signum), stop.set()))
    try:
        await service.start()
        await stop.wait()
        log.info("Interrupted...")
    finally:
        await service.stop(keep=config.keep_kernels and received[:1] == [signal.SIGTERM])
