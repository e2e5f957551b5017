"""`GET /api/status`: what the service is doing, with Jupyter Server's fields;
`GET /api/health`: that it answers, for container health checks; and `GET /api/spec.yaml`,
the OpenAPI document of every REST route (shipped in the package)."""

from __future__ import annotations

from importlib.resources import files

from kernels_service import __version__
from kernels_service.kernels.record import isoformat
from kernels_service.web.base import JSONHandler


class StatusHandler(JSONHandler):
    """Jupyter Server's `started`, `last_activity`, `kernels`, `connections` (pooled kernels
    are nobody's yet: not counted), plus `pool` (ready pooled kernels) and `version`.
    Asking is not activity."""

    tracks_activity = False

    def get(self) -> None:
        records = self.services.registry.list()
        activity = self.services.activity
        last_activity = max([activity.started, activity.last_request, *(r.last_activity for r in records)])
        self.write_json(
            {
                "started": isoformat(activity.started),
                "last_activity": isoformat(last_activity),
                "kernels": len(records),
                "connections": sum(r.connections for r in records),
                "pool": self.services.pool.ready if self.services.pool else 0,
                "version": __version__,
            }
        )


class HealthHandler(JSONHandler):
    """`{"status": "ok"}` to anyone, without the token and whatever its `Host`: a
    container's HEALTHCHECK has no token, a cluster's probe names the pod by its address.
    It reveals nothing (no version, no counts), and asking is not activity. Once the
    service stops (SIGTERM: it drains), `{"status": "draining"}` with 503: not ready."""

    tracks_activity = False

    def prepare(self) -> None:
        if self.request.method in ("GET", "HEAD"):
            return
        super().prepare()

    def get(self) -> None:
        if self.services.drain.draining:
            self.write_json({"status": "draining"}, 503)
            return
        self.write_json({"status": "ok"})


class SpecHandler(JSONHandler):
    """The OpenAPI document (kernels_service/openapi.yaml), as schemathesis reads it in CI."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/x-yaml; charset=UTF-8")
        self.finish(files("kernels_service").joinpath("openapi.yaml").read_bytes())
