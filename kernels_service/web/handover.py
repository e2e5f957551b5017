"""`POST <base>api/kernels/<id>/handover`: what a draining replica kept for a websocket
session whose client came back to another replica, taken by that replica (relay/handover.py).

Replicas call it on each other, with the token they share; what it returns is the kernel's
output for that client, as sensitive as the websocket itself. A session is taken once: a
second request, or one for a session this replica does not hold, is a 404.
"""

from __future__ import annotations

from tornado import web

from kernels_service.relay.handover import encode_messages
from kernels_service.web.base import JSONHandler


class HandoverHandler(JSONHandler):
    tracks_activity = False  # between replicas: no client's activity

    async def post(self, kernel_id: str) -> None:
        key = self.json_body().get("session")
        if not isinstance(key, str) or not key:
            raise web.HTTPError(400, "'session' must be the client's session_id")
        messages = await self.services.hub.take_session(kernel_id, key)
        if messages is None:
            raise web.HTTPError(404, f"No session {key} of kernel {kernel_id} to hand over here")
        self.set_header("Content-Type", "application/json")
        self.finish(encode_messages(messages))
