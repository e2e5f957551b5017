"""How the service's log treats what its dependencies log."""

from __future__ import annotations

import logging

log = logging.getLogger("kernels_service")


class WithoutTraceback(logging.Filter):
    """Keeps a record's message and drops its traceback, unless the service logs at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not log.isEnabledFor(logging.DEBUG):
            record.exc_info = record.exc_text = None
        return True


def jupyter_client_log() -> logging.Logger:
    """The logger of jupyter_client's managers (their kernel managers inherit it). They log
    a traceback of every failed start (`log.exception`), a kernelspec's fault or an
    engine's, which the registry also reports in one line with its reason; their records
    keep their message and lose the traceback, except with `--log-level=DEBUG`."""
    logger = logging.getLogger("kernels_service.jupyter_client")
    if not any(isinstance(existing, WithoutTraceback) for existing in logger.filters):
        logger.addFilter(WithoutTraceback())
    return logger
