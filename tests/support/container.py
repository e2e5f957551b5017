"""Run the built image as a container, published on a free loopback port, and stop it.

The engine (podman with its storage in a cache directory, or docker) and the build are
docker/image.py's, the script a developer runs by hand."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import time
import uuid
from types import ModuleType
from typing import Any

from kernels_service.testing.service import free_port, http_request
from tests.support.paths import ROOT

#: Whether the image is built and its tests run: with CI set or KERNELS_TEST_IMAGE=1.
WANTED = bool(os.environ.get("CI")) or os.environ.get("KERNELS_TEST_IMAGE") == "1"

#: Figures measured along the way (the image's size and build time), printed at the end
#: of the run by tests/conftest.py.
FIGURES: list[str] = []


def image_script() -> ModuleType:
    """docker/image.py, imported from its path (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("kernels_service_image", ROOT / "docker" / "image.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Engine:
    """The container engine command and the options each `run` needs on this machine."""

    def __init__(self) -> None:
        script = image_script()
        self.command: list[str] = script.engine()
        self.run_options: list[str] = script.run_options(self.command)

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command, *args], capture_output=True, text=True, timeout=timeout, check=check)


class Container:
    """One container of `image`, detached, port 8000 published on 127.0.0.1:<free port>.

    Looks like kernels_service.testing.service.Service to the websocket clients (port, base, token,
    ws_url, request)."""

    def __init__(
        self,
        engine: Engine,
        image: str,
        *args: str,
        token: str | None = None,
        base_path: str = "/",
        options: tuple[str, ...] = (),
    ):
        self.engine = engine
        self.port = free_port()
        self.token = token
        self.base = base_path
        self.name = f"kernels-service-test-{uuid.uuid4().hex[:10]}"
        environment = ["-e", f"KERNELS_SERVICE_TOKEN={token}"] if token is not None else []
        engine(
            "run", "--detach", "--name", self.name, *engine.run_options,
            "--publish", f"127.0.0.1:{self.port}:8000", *environment, *options, image, *args,
        )  # fmt: skip

    def wait_serving(self, timeout: float = 90) -> None:
        """Until the service has said "Serving at" (its initial kernel is started by then;
        `/api/health` answers from the moment it listens, before) and `/api/health`
        answers through the published port; fails with the logs if the container exits
        or hangs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state()["Status"] not in ("created", "running"):
                raise AssertionError(f"container exited ({self.state()}):\n{self.logs()}")
            try:
                if "Serving at" in self.logs() and http_request(self.port, "GET", "/api/health", token=None)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"container did not serve in {timeout}s:\n{self.logs()}")

    def state(self) -> dict[str, Any]:
        inspected = self.engine("inspect", "--type", "container", self.name)
        return json.loads(inspected.stdout)[0]["State"]

    def logs(self) -> str:
        result = self.engine("logs", self.name, check=False)
        return result.stdout + result.stderr

    def exec(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.engine("exec", self.name, *command, check=check)

    def processes(self) -> list[dict[str, Any]]:
        """Every process in the container: pid, ppid, uid (real and effective), command line,
        read from its /proc (the same with podman and docker)."""
        listing = self.exec("python3", "-c", PROCESS_LISTING).stdout
        return [json.loads(line) for line in listing.splitlines() if line.startswith("{")]

    def stop(self, timeout: int = 10) -> tuple[int, float]:
        """`stop` with the engine's grace period; the exit code and the seconds it took."""
        started = time.monotonic()
        self.engine("stop", "--time", str(timeout), self.name, timeout=timeout + 60)
        return self.state()["ExitCode"], time.monotonic() - started

    def remove(self) -> None:
        self.engine("rm", "--force", self.name, check=False)

    def http_url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{self.base}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{self.base}{path}"

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> tuple[int, dict, Any]:
        return http_request(self.port, method, self.base + path, body, token=self.token if token is None else token)


#: Run inside the container with its python3: one JSON line per process.
PROCESS_LISTING = """
import json, os
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        status = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines())
        command = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
    except OSError:
        continue
    uids = status["Uid"].split()
    print(json.dumps({"pid": int(pid), "ppid": int(status["PPid"]), "uid": int(uids[0]), "euid": int(uids[1]),
                      "state": status["State"].split()[0], "args": [a.decode() for a in command if a],
                      "capabilities": status["CapEff"].strip(), "no_new_privs": status["NoNewPrivs"].strip()}))
"""


def generated_token(logs: str) -> str | None:
    """The token the service printed when none was given."""
    match = re.search(r"Token \(send as .*\): (\S+)", logs)
    return match.group(1) if match else None
