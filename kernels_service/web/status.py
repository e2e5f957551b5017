"""`GET /api/status`: what the service is doing, with Jupyter Server's fields."""

from __future__ import annotations

from kernels_service import __version__
from kernels_service.kernels.registry import isoformat
from kernels_service.web.base import JSONHandler


class StatusHandler(JSONHandler):
    """Jupyter Server's `started`, `last_activity`, `kernels`, `connections`, plus `pool`
    (ready pooled kernels; there is no pool yet, so 0) and `version`. Asking is not activity."""

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
                "pool": 0,
                "version": __version__,
            }
        )
