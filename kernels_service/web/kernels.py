"""REST handlers of `/api/kernels`, with the models and status codes of Jupyter Server."""

from __future__ import annotations

from tornado import web

from kernels_service import __version__
from kernels_service.kernels.fleet import OwnedElsewhere
from kernels_service.web.base import JSONHandler


class VersionHandler(JSONHandler):
    def get(self) -> None:
        self.write_json({"version": __version__})


class KernelsHandler(JSONHandler):
    async def get(self) -> None:
        self.write_json(await self.services.registry.models())

    async def post(self) -> None:
        body = self.json_body()
        name, env = body.get("name"), body.get("env", {})
        if name is not None and not isinstance(name, str):
            raise web.HTTPError(400, "'name' must be a string")
        if not isinstance(env, dict):
            raise web.HTTPError(400, "'env' must be an object")
        if not isinstance(body.get("path", ""), str):  # Jupyter Server's field; kernels here have no contents
            raise web.HTTPError(400, "'path' must be a string")
        record = await self.services.registry.start(name, env)
        self.set_header("Location", f"{self.services.base_path}api/kernels/{record.id}")
        self.write_json(record.model(), status=201)


class KernelHandler(JSONHandler):
    async def get(self, kernel_id: str) -> None:
        self.write_json((await self.services.registry.find(kernel_id)).model())

    async def delete(self, kernel_id: str) -> None:
        try:
            await self.services.registry.shutdown(kernel_id)
        except OwnedElsewhere as owner:
            return await self.forward_to(owner)
        self.set_status(204)
        self.finish()


class InterruptHandler(JSONHandler):
    async def post(self, kernel_id: str) -> None:
        try:
            await self.services.registry.interrupt(kernel_id)
        except OwnedElsewhere as owner:
            return await self.forward_to(owner)
        self.set_status(204)
        self.finish()


class RestartHandler(JSONHandler):
    async def post(self, kernel_id: str) -> None:
        try:
            record = await self.services.registry.restart(kernel_id)
        except OwnedElsewhere as owner:
            return await self.forward_to(owner)
        self.write_json(record.model())
