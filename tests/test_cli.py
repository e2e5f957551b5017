"""The command line a first-time operator meets: --help, --show-config(-json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.kernelspecs import write_kernelspec
from tests.support.paths import ROOT


def kernels_py(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("PORT", "KERNEL_NAME", "KERNELS_SERVICE_TOKEN")}
    return subprocess.run(
        [sys.executable, str(ROOT / "kernels.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environment, **(env or {})},
        cwd=ROOT,
    )


def test_help_says_socketio_and_the_real_log_level_default():
    shown = kernels_py("--help")
    assert shown.returncode == 0, shown.stderr
    assert "socket.io" in shown.stdout.split("Options")[0]
    log_level = shown.stdout.split("--log-level=<Enum>")[1].split("\n--")[0]
    assert "Default: 20" in log_level and "INFO" in log_level, log_level


def test_show_config_gives_every_effective_value_with_its_source_and_hides_the_token():
    shown = kernels_py(
        "--show-config",
        "--base-path=jupyter",
        "--KernelManager.shutdown_wait_time=3",
        env={"PORT": "9123", "KERNELS_SERVICE_TOKEN": "secret-token-4567"},
    )
    assert shown.returncode == 0, shown.stderr
    lines = {line.split(" = ")[0]: line for line in shown.stdout.splitlines() if " = " in line}
    assert lines["KernelsService.port"].endswith("[environment PORT]") and "9123" in lines["KernelsService.port"]
    assert "'jupyter'" in lines["KernelsService.base_path"] and "[command line" in lines["KernelsService.base_path"]
    assert "[default]" in lines["KernelsService.max_kernels"] and "[default]" in lines["KernelsService.log_level"]
    assert lines["KernelManager.shutdown_wait_time"].startswith("KernelManager.shutdown_wait_time = '3'")
    assert "secret-token-4567" not in shown.stdout + shown.stderr
    assert "Serving at" not in shown.stdout + shown.stderr  # it shows; it does not start


def test_show_config_json_is_json_with_the_same_entries():
    shown = kernels_py("--show-config-json", "--port=9124", env={"KERNEL_NAME": "python3"})
    assert shown.returncode == 0, shown.stderr
    configuration = json.loads(shown.stdout)
    assert configuration["KernelsService.port"] == {"value": 9124, "source": "command line or config file"}
    assert configuration["KernelsService.kernel_name"] == {"value": "python3", "source": "environment KERNEL_NAME"}
    assert configuration["KernelsService.token"]["source"] == "default"


def test_show_config_names_each_kernelspecs_provisioner_and_the_provisioners_settings(tmp_path):
    """Which provisioner each kernelspec runs with, and its configuration, from where; the
    sandbox's for the kernelspecs that name none when the sandbox is on; and the variables
    the provisioners read (gateway_provisioners' GP_*, DOCKER_HOST)."""
    metadata = {"kernel_provisioner": {"provisioner_name": "docker-provisioner", "config": {"image_name": "k:1"}}}
    spec = write_kernelspec(tmp_path, "in_a_container", ["python", "-f", "{connection_file}"], metadata=metadata)
    env = {"JUPYTER_PATH": str(tmp_path), "GP_DOCKER_NETWORK": "kernels", "DOCKER_HOST": "unix:///run/d.sock"}
    shown = json.loads(kernels_py("--show-config-json", "--kernel-sandbox=bubblewrap", env=env).stdout)
    source = f"kernelspec {spec}"
    assert shown["kernelspec.in_a_container.provisioner"] == {"value": "docker-provisioner", "source": source}
    assert shown["kernelspec.in_a_container.provisioner_config"] == {"value": {"image_name": "k:1"}, "source": source}
    assert shown["kernelspec.python3.provisioner"] == {"value": "bubblewrap-provisioner", "source": "default"}
    assert shown["environment.GP_DOCKER_NETWORK"] == {"value": "kernels", "source": "environment"}
    assert shown["environment.DOCKER_HOST"]["value"] == "unix:///run/d.sock"
    assert not [name for name in shown if name.startswith("environment.") and "TOKEN" in name]


def test_the_command_line_defaults_are_the_service_configs():
    """ServiceConfig holds every default; each option has it (same value, same type), and a
    command line that sets nothing gives exactly ServiceConfig() (but for the kernelspec,
    which jupyter_client's default names)."""
    from dataclasses import fields

    from kernels_service.app import ENVIRONMENT, KernelsService
    from kernels_service.config import ServiceConfig

    defaults = ServiceConfig()
    app = KernelsService()
    for field in fields(ServiceConfig):
        if field.name == "jupyter_config":
            continue
        option = field.name.replace("_", "-")
        assert option in app.aliases or option in app.flags, f"--{option} is not on the command line"
        expected = getattr(defaults, field.name)
        expected = list(expected) if isinstance(expected, tuple) else expected
        if field.name != "kernel_name":  # jupyter_client's default kernelspec, found at start
            found = app.trait_defaults(field.name)
            assert found == expected and type(found) is type(expected), (field.name, found, expected)
    saved = {variable: os.environ.pop(variable) for variable in ENVIRONMENT.values() if variable in os.environ}
    try:
        app.initialize([])
        assert app.service_config() == ServiceConfig(kernel_name=app.kernel_name)
    finally:
        os.environ.update(saved)
