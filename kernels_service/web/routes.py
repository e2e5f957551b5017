"""The one route table: everything lives under the base path; the rest is a JSON 404."""

from __future__ import annotations

from typing import Any

from tornado import web

from kernels_service.web.access_log import log_request
from kernels_service.web.base import NotFoundHandler, Services
from kernels_service.web.channels import ChannelsHandler
from kernels_service.web.handover import HandoverHandler
from kernels_service.web.kernels import (
    InterruptHandler,
    KernelHandler,
    KernelsHandler,
    RestartHandler,
    VersionHandler,
)
from kernels_service.web.kernelspecs import (
    KernelSpecHandler,
    KernelSpecResourceHandler,
    KernelSpecsHandler,
)
from kernels_service.web.metrics import MetricsHandler
from kernels_service.web.relay_rest import ShutdownHandler, SpawnHandler
from kernels_service.web.status import HealthHandler, SpecHandler, StatusHandler

KERNEL_ID = r"(?P<kernel_id>[\w-]+)"
SPEC_NAME = r"(?P<name>[\w.+-]+)"


def normalise_base_path(base_path: str) -> str:
    """`jupyter`, `/jupyter` and `/jupyter/` all become `/jupyter/`; empty becomes `/`."""
    stripped = base_path.strip("/")
    return f"/{stripped}/" if stripped else "/"


def routes(services: Services) -> list[tuple[str, type, dict[str, Any]]]:
    """Every route under the base path; `/api/health` also at the root, so that an image's
    HEALTHCHECK finds it whatever base path the service was given."""
    base = services.base_path
    table = [
        (r"api/?", VersionHandler),
        (r"api/status/?", StatusHandler),
        (r"api/health/?", HealthHandler),
        (r"api/spec.yaml", SpecHandler),
        (r"metrics/?", MetricsHandler),
        (r"api/kernels/?", KernelsHandler),
        (rf"api/kernels/{KERNEL_ID}/?", KernelHandler),
        (rf"api/kernels/{KERNEL_ID}/interrupt/?", InterruptHandler),
        (rf"api/kernels/{KERNEL_ID}/restart/?", RestartHandler),
        (rf"api/kernels/{KERNEL_ID}/channels", ChannelsHandler),
        (rf"api/kernels/{KERNEL_ID}/handover", HandoverHandler),
        (r"api/kernelspecs/?", KernelSpecsHandler),
        (rf"api/kernelspecs/{SPEC_NAME}/?", KernelSpecHandler),
        (rf"kernelspecs/{SPEC_NAME}/(?P<filename>[^/]+)", KernelSpecResourceHandler),
        (rf"spawn/{SPEC_NAME}/?", SpawnHandler),
        (rf"shutdown/{KERNEL_ID}/?", ShutdownHandler),
    ]
    kwargs = {"services": services}
    at_root = [(r"/api/health/?", HealthHandler, kwargs)] if base != "/" else []
    return [(base + pattern, handler, kwargs) for pattern, handler in table] + at_root


def make_web_app(services: Services, extra_routes: list | None = None, **settings: Any) -> web.Application:
    """The tornado application for these services; `extra_routes` are other doors (socket.io)."""
    return web.Application(
        [*(extra_routes or []), *routes(services)],
        default_handler_class=NotFoundHandler,
        default_handler_args={"services": services},
        log_function=log_request,
        **settings,
    )
