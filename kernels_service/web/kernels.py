"""REST handlers of `/api/kernels`, with the models and status codes of Jupyter Server."""

from __future__ import annotations

from tornado import web

from kernels_service import __version__
from kernels_service.web.base import JSONHandler


class VersionHandler(JSONHandler):
    def get(self) -> None:
        self.write_json({"version": __version__})


class KernelsHandler(JSONHandler):
    def get(self) -> None:
        self.write_json([record.model() for record in self.services.registry.list()])

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
    def get(self, kernel_id: str) -> None:
        self.write_json(self.services.registry.get(kernel_id).model())

    async def delete(self, kernel_id: str) -> None:
        await self.services.registry.shutdown(kernel_id)
        self.set_status(204)
        self.finish()


class InterruptHandler(JSONHandler):
    async def post(self, kernel_id: str) -> None:
        await self.services.registry.interrupt(kernel_id)
        self.set_status(204)
        self.finish()


class RestartHandler(JSONHandler):
    async def post(self, kernel_id: str) -> None:
        record = await self.services.registry.restart(kernel_id)
        self.write_json(record.model())
