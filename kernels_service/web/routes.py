"""The one route table: everything lives under the base path; the rest is a JSON 404."""

from __future__ import annotations

from typing import Any

from tornado import web

from kernels_service.web.base import NotFoundHandler, Services
from kernels_service.web.channels import ChannelsHandler
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

KERNEL_ID = r"(?P<kernel_id>[\w-]+)"
SPEC_NAME = r"(?P<name>[\w.+-]+)"


def normalise_base_path(base_path: str) -> str:
    """`jupyter`, `/jupyter` and `/jupyter/` all become `/jupyter/`; empty becomes `/`."""
    stripped = base_path.strip("/")
    return f"/{stripped}/" if stripped else "/"


def routes(services: Services) -> list[tuple[str, type, dict[str, Any]]]:
    base = services.base_path
    table = [
        (r"api/?", VersionHandler),
        (r"api/kernels/?", KernelsHandler),
        (rf"api/kernels/{KERNEL_ID}/?", KernelHandler),
        (rf"api/kernels/{KERNEL_ID}/interrupt/?", InterruptHandler),
        (rf"api/kernels/{KERNEL_ID}/restart/?", RestartHandler),
        (rf"api/kernels/{KERNEL_ID}/channels", ChannelsHandler),
        (r"api/kernelspecs/?", KernelSpecsHandler),
        (rf"api/kernelspecs/{SPEC_NAME}/?", KernelSpecHandler),
        (rf"kernelspecs/{SPEC_NAME}/(?P<filename>[^/]+)", KernelSpecResourceHandler),
    ]
    kwargs = {"services": services}
    return [(base + pattern, handler, kwargs) for pattern, handler in table]


def make_web_app(services: Services, **settings: Any) -> web.Application:
    """The tornado application for these services (settings: websocket limits, ...)."""
    return web.Application(
        routes(services),
        default_handler_class=NotFoundHandler,
        default_handler_args={"services": services},
        **settings,
    )
