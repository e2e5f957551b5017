"""REST handlers of `/api/kernelspecs` and the kernelspec resource files (logos)."""

from __future__ import annotations

import mimetypes
import os
from typing import Any

from jupyter_client.kernelspec import NoSuchKernel as JupyterNoSuchKernel
from tornado import web

from kernels_service.kernels import NoSuchKernelSpec
from kernels_service.web.base import JSONHandler

RESOURCE_FILES = ("kernel.js", "kernel.css")


def spec_model(name: str, spec: Any, base_path: str) -> dict[str, Any]:
    """The kernelspec model of Jupyter Server: name, spec and resource URLs."""
    resources = {}
    for filename in sorted(os.listdir(spec.resource_dir)):
        if filename.startswith("logo-"):
            resources[os.path.splitext(filename)[0]] = f"{base_path}kernelspecs/{name}/{filename}"
        elif filename in RESOURCE_FILES:
            resources[filename] = f"{base_path}kernelspecs/{name}/{filename}"
    return {"name": name, "spec": spec.to_dict(), "resources": resources}


class KernelSpecsHandler(JSONHandler):
    def get(self) -> None:
        manager = self.services.registry.kernel_spec_manager
        specs = {}
        for name in sorted(manager.find_kernel_specs()):
            try:
                specs[name] = spec_model(name, manager.get_kernel_spec(name), self.services.base_path)
            except (JupyterNoSuchKernel, OSError, ValueError):
                continue  # a broken kernelspec on disk is not the client's problem
        self.write_json({"default": self.services.registry.default_name, "kernelspecs": specs})


class KernelSpecHandler(JSONHandler):
    def get(self, name: str) -> None:
        manager = self.services.registry.kernel_spec_manager
        try:
            spec = manager.get_kernel_spec(name)
        except JupyterNoSuchKernel:
            raise NoSuchKernelSpec(name) from None
        self.write_json(spec_model(name, spec, self.services.base_path))


class KernelSpecResourceHandler(JSONHandler):
    """Serves a file of a kernelspec's resource directory (logos, kernel.js)."""

    def get(self, name: str, filename: str) -> None:
        manager = self.services.registry.kernel_spec_manager
        try:
            directory = manager.get_kernel_spec(name).resource_dir
        except JupyterNoSuchKernel:
            raise NoSuchKernelSpec(name) from None
        path = os.path.join(directory, filename)
        if os.path.dirname(os.path.abspath(path)) != os.path.abspath(directory) or not os.path.isfile(path):
            raise web.HTTPError(404, f"No resource {filename} in kernelspec {name}")
        with open(path, "rb") as handle:
            body = handle.read()
        self.set_header("Content-Type", mimetypes.guess_type(filename)[0] or "application/octet-stream")
        self.finish(body)
