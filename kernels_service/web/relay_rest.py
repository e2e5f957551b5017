"""kernel-relay's REST API: `GET|POST /spawn/<kernelspec>` and `GET|POST /shutdown/<id>`.

Plain GETs from web pages of other origins, as enchannel-socketio-backend makes them.
Answers are kernel-relay's: `{"id"}` for spawn; `{"id", "kernelId"}` for shutdown (its
README documents `id`, its client checks `kernelId`); errors are `{"error": "..."}`.
"""

from __future__ import annotations

import json
from typing import Any

from kernels_service.kernels.fleet import OwnedElsewhere
from kernels_service.web.base import JSONHandler, error_answer


class KernelRelayHandler(JSONHandler):
    """kernel-relay's error shape: `{"error": message}`."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        _, message = error_answer(self, status_code, kwargs)
        self.finish(json.dumps({"error": message}))


class SpawnHandler(KernelRelayHandler):
    async def get(self, name: str) -> None:
        record = await self.services.registry.start(name)
        self.write_json({"id": record.id})

    post = get


class ShutdownHandler(KernelRelayHandler):
    async def get(self, kernel_id: str) -> None:
        try:
            await self.services.registry.shutdown(kernel_id)
        except OwnedElsewhere as owner:
            return await self.forward_to(owner)
        self.write_json({"id": kernel_id, "kernelId": kernel_id})

    post = get
