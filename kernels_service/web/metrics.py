"""`GET <base>metrics`: the Prometheus text format (kernels_service/metrics.py)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kernels_service.metrics import REGISTRY
from kernels_service.web.base import JSONHandler


class MetricsHandler(JSONHandler):
    """The token is required, as everywhere, unless the operator chose --metrics-no-auth
    (a scraper inside a private network). Scraping is not API activity."""

    tracks_activity = False

    def needs_token(self) -> bool:
        return not (self.services.metrics_no_auth and self.request.method in ("GET", "HEAD"))

    def get(self) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(REGISTRY))
