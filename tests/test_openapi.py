"""The published API document (`<base>api/spec.yaml`) against the live service, by schemathesis."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from kernels_service import __version__
from kernels_service.testing.service import Service, running_service, tracebacks
from tests.support.paths import ROOT

SPEC = ROOT / "kernels_service" / "openapi.yaml"
JUPYTER_SERVER_SPEC = Path(__import__("jupyter_server").__file__).parent / "services" / "api" / "api.yaml"


def schemathesis(service: Service, spec: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """schemathesis (the version pinned in setup.cfg) with every check, against the service."""
    command = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert command, "schemathesis is not installed: it is in the test extras (see .ci/run)"
    return subprocess.run(
        [
            command,
            "--config-file",
            str(ROOT / "tests" / "schemathesis.toml"),
            "run",
            str(spec),
            "--url",
            service.http_url().rstrip("/"),
            "-H",
            f"Authorization: token {service.token}",
            "--checks",
            "all",
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "20261128",
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--no-color",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=service.log.name.rsplit("/", 1)[0],  # schemathesis keeps its findings in the working directory
    )


def test_the_document_is_served_and_is_the_packaged_one(service):
    status, headers, body = service.request("GET", "api/spec.yaml")
    assert status == 200 and headers["content-type"].startswith("text/x-yaml")
    document = yaml.safe_load(body)
    assert document == yaml.safe_load(SPEC.read_text())
    assert document["openapi"].startswith("3.") and document["info"]["version"] == __version__
    assert service.request("GET", "api/spec.yaml", token="")[0] == 401


def test_schemathesis_finds_nothing_and_the_service_stops_clean():
    """All checks, bounded examples: no server error, no schema violation, no status code
    the document does not list; the websocket route too, whose upgrade headers the document
    states. Then SIGTERM: exit 0 within 10 s, no kernel left."""
    service = Service()
    try:
        result = schemathesis(service, SPEC, "--max-examples", "10")
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout[-3000:]
        assert not tracebacks(service.output())
    finally:
        started = time.monotonic()
        service.stop_and_check_no_leak()
        assert time.monotonic() - started < 10


def test_jupyter_servers_own_document_for_kernels_and_kernelspecs():
    """Jupyter Server's api.yaml (from the jupyter_server package installed for the tests),
    its kernel and kernelspec routes. Where it is wrong about Jupyter Server itself (the
    README lists it), its check is left out; every other check must pass:
    - it documents only the success status of each kernel route, but Jupyter Server, like
      this service, answers 404 for an unknown kernel and 400 for a bad body
      (status_code_conformance);
    - it says every response is `application/json`, but a 204 has no body and, from
      tornado, no Content-Type, in Jupyter Server too (content_type_conformance);
    - it types `name` as a string, but Jupyter Server starts the default kernel for
      `"name": null`, as this service does (negative_data_rejection)."""
    with running_service() as service:
        result = schemathesis(
            service,
            JUPYTER_SERVER_SPEC,
            "--max-examples",
            "10",
            "--include-path-regex",
            "^/api/kernel",
            "--exclude-path",
            "/api/kernels/{kernel_id}/channels",
            "--exclude-checks",
            "status_code_conformance,content_type_conformance,negative_data_rejection",
        )
        assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
        assert not tracebacks(service.output())
