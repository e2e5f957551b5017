"""Starting and stopping the service as operators do: options, environment, signals, no leaks."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kernels_service.testing.channels import ChannelsClient, stream_text
from kernels_service.testing.service import Service, descendants, running_service
from tests.support.paths import ROOT
from tests.support.waiting import wait_until


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_every_kernel_and_exits_0(signum):
    service = Service()
    service.start_kernel()
    service.start_kernel()
    assert len(service.request("GET", "api/kernels")[2]) == 3
    assert len(descendants(service.pid)) >= 3
    service.stop_and_check_no_leak(signum)
    assert "Kernel shutdown" in service.output()


@pytest.mark.parametrize("base_path", ["jupyter", "/jupyter", "/jupyter/"])
def test_base_path_spellings_mean_the_same(base_path):
    with running_service("--initial-kernels=0", base_path=base_path) as service:
        assert f"Serving at http://127.0.0.1:{service.port}/jupyter/api/kernels" in service.output()
        assert service.request("GET", "/jupyter/api/kernels", raw_path=True)[:3:2] == (200, [])
        assert service.request("GET", "/api/kernels", raw_path=True)[0] == 404


def test_options_from_environment_and_token_kept_from_kernels():
    with running_service(from_env=True, env={"KERNEL_NAME": "python3"}) as service:
        assert f"Serving at http://127.0.0.1:{service.port}/jupyter/api/kernels" in service.output()
        assert service.request("GET", "api/kernels", token="wrong")[0] == 403
        (kernel,) = service.request("GET", "api/kernels")[2]
        client = ChannelsClient(service, kernel["id"])
        _, outputs = client.execute("import os; print(sorted(k for k, v in os.environ.items() if 'test-token' in v))")
        client.close()
        assert stream_text(outputs) == "[]\n"


def test_a_random_token_is_generated_and_logged():
    with running_service("--initial-kernels=0", token=None) as service:
        match = re.search(r"Token \(send as .*\): (\w+)", service.output())
        assert match, service.output()
        service.token = match.group(1)
        assert service.request("GET", "api/kernels")[0] == 200
        assert service.request("GET", "api/kernels", token="")[0] == 401
        assert service.request("GET", "api/kernels", token="wrong")[0] == 403


def test_empty_token_disables_auth_with_a_warning():
    with running_service("--initial-kernels=0", token="") as service:
        assert "No token" in service.output()
        assert service.request("GET", "api/kernels", token="")[0] == 200


def test_unknown_initial_kernel_name_fails_clearly():
    with pytest.raises(RuntimeError) as failed:
        Service(env={"KERNEL_NAME": "no-such-kernel"})
    assert "No such kernelspec: no-such-kernel" in str(failed.value)
    assert "Traceback" not in str(failed.value)


def test_max_kernels_answers_503():
    with running_service("--max-kernels=1") as service:
        status, _, error = service.request("POST", "api/kernels")
        assert status == 503 and "Maximum" in error["message"]


@pytest.mark.parametrize("launcher", [(sys.executable, str(ROOT / "kernels.py")), ("kernels-service",)])
def test_other_launchers(launcher):
    """The tests start `python -m kernels_service`; the README's kernels.py and the console
    script start the same service."""
    if launcher[0] == "kernels-service":
        path = shutil.which("kernels-service", path=str(Path(sys.executable).parent))
        assert path, "the kernels-service console script is not installed"
        launcher = (path,)
    with running_service("--initial-kernels=0", launcher=launcher, cwd=ROOT) as service:
        assert service.request("GET", "api")[0] == 200


def test_help_lists_the_options():
    result = subprocess.run([sys.executable, str(ROOT / "kernels.py"), "--help-all"], capture_output=True, text=True)
    assert result.returncode == 0
    for option in ("--port", "--ip", "--base-path", "--token", "--kernel-name", "--initial-kernels"):
        assert option in result.stdout


@pytest.mark.parametrize(
    "argv, complaint",
    [
        (["--prot=1"], "unrecognized option: --prot"),
        (["sh", "-c", "/srv/kernels.py --base-path=/krn/"], "unrecognized option: -c"),
        (["/srv/kernels.py", "--base-path=/krn/"], "unexpected arguments: /srv/kernels.py"),
    ],
)
def test_unknown_options_and_stray_arguments_exit_2(argv, complaint):
    """A mistyped option or the original image's `sh -c` form must not serve with defaults."""
    command = [sys.executable, str(ROOT / "kernels.py"), "--initial-kernels=1", *argv]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and complaint in result.stderr, result.stderr
    assert "Serving at" not in result.stdout + result.stderr


def test_config_file_sets_options_and_the_command_line_wins(tmp_path):
    config = tmp_path / "service_config.py"
    config.write_text("c.KernelsService.initial_kernels = 0\nc.KernelsService.max_kernels = 1\n")
    with running_service(f"--config={config}", "--max-kernels=2") as service:
        assert service.request("GET", "api/kernels")[2] == []
        service.start_kernel()
        service.start_kernel()
        assert service.request("POST", "api/kernels")[0] == 503


def test_connection_files_live_in_the_runtime_dir_and_go_with_their_kernels(tmp_path):
    runtime = tmp_path / "runtime"
    with running_service("--pool-size=0", env={"JUPYTER_RUNTIME_DIR": str(runtime)}) as service:
        (first,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        second = service.start_kernel()
        assert sorted(p.name for p in runtime.glob("kernel-*.json")) == sorted(
            [f"kernel-{first}.json", f"kernel-{second}.json"]
        )
        assert oct(runtime.stat().st_mode & 0o777) == "0o700"
        assert not (ROOT / f"kernel-{first}.json").exists(), "a connection file in the working directory"
        assert service.request("DELETE", f"api/kernels/{second}")[0] == 204
        assert [p.name for p in runtime.glob("kernel-*.json")] == [f"kernel-{first}.json"]
    assert not list(runtime.glob("kernel-*.json"))


def test_an_unusable_runtime_dir_falls_back_to_a_private_temporary_one():
    """An image run under a uid with no home has no runtime directory it can make."""
    with running_service(env={"JUPYTER_RUNTIME_DIR": "/dev/null/runtime"}) as service:
        match = re.search(
            r"Cannot use the runtime directory /dev/null/runtime \(.*\); connection files go to (\S+)", service.output()
        )
        assert match, service.output()
        fallback = Path(match.group(1))
        (kernel,) = [k["id"] for k in service.request("GET", "api/kernels")[2]]
        assert (fallback / f"kernel-{kernel}.json").exists() and oct(fallback.stat().st_mode & 0o777) == "0o700"
        client = ChannelsClient(service, kernel)
        assert stream_text(client.execute("print('here')")[1]) == "here\n"
        client.close()


def test_one_log_line_per_lifecycle_event_and_the_tcp_warning_once():
    """Over tcp every kernel warns that it runs without encryption (over ipc, the default,
    none does)."""
    with running_service("--kernel-transport=tcp") as service:
        kernels = [service.start_kernel() for _ in range(3)]
        client = ChannelsClient(service, kernels[0])
        client.execute("import os; os.write(2, b'straight from the kernel\\n')")
        client.close()
        assert service.request("POST", f"api/kernels/{kernels[1]}/restart")[0] == 200
        assert service.request("DELETE", f"api/kernels/{kernels[2]}")[0] == 204
        wait_until(
            lambda: "Kernel restarted" in service.output() and "straight from the kernel" in service.output(),
            30,
            "the restart and the kernel's stderr in the log",
        )
        log = service.output()
        for kernel in kernels:
            assert log.count(f"Kernel started: {kernel} ") == 1
        assert log.count(f"Kernel restarted: {kernels[1]}") == 1
        assert log.count(f"Kernel shutdown: {kernels[2]}") == 1
        # every kernel (4 or more launches here, the pooled ones too) prints it; the log once
        assert log.count("Kernel is running over TCP without encryption") == 1
        assert log.count("straight from the kernel") == 1


def test_a_fallback_connection_file_directory_is_removed_when_the_service_stops(tmp_path):
    """Where Jupyter's runtime directory cannot be made (an image run under a uid with no
    home), connection files go to a fresh private temporary directory: gone at the stop."""
    unmakeable = tmp_path / "a-file" / "runtime"
    (tmp_path / "a-file").write_text("not a directory")
    with running_service(
        "--initial-kernels=1", "--pool-size=0", env={"JUPYTER_RUNTIME_DIR": str(unmakeable)}
    ) as service:
        found = re.search(r"connection files go to (\S+)", service.output())
        assert found, service.output()
        fallback = Path(found.group(1))
        assert fallback.is_dir() and fallback.stat().st_mode & 0o777 == 0o700
        assert list(fallback.glob("kernel-*.json")), "the kernel's connection file is not there"
    assert not fallback.exists(), "the fallback directory outlived the service"
