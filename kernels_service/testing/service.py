"""Run the real service as a subprocess on a free loopback port, stop it by PID, and check
that no process of it outlives it: what the tests and the benchmarks start the service
with (and anyone who tests a client against it). Only the standard library."""

from __future__ import annotations

import atexit
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kernels_service.processes import process_start

TOKEN = "test-token-0123456789"

#: How the service is started by default: as the installed package runs it.
LAUNCHER = (sys.executable, "-m", "kernels_service")


#: Signals that end a program which starts services as Ctrl-C does, so that its services
#: are stopped on the way out (a benchmark killed with SIGTERM left its service running).
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def exit_on_signals() -> None:
    """Make SIGTERM and SIGHUP raise SystemExit in this program (unless it handles them
    itself, or this is not its main thread): `finally` blocks run, and so do the atexit
    stops of its services."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in ENDING_SIGNALS:
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _exit_with)


def _exit_with(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """PIDs of every living process below `pid`, read from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """Whether a process `pid` runs now: for a pid known this instant (the service's own,
    one a kernel just printed). For pids recorded earlier, `identified` and `still_running`:
    the system may have given the pid to another process since."""
    return process_start(pid) is not None


def identified(pids: Iterable[int]) -> dict[int, int]:
    """Each process of `pids` that runs now, with its start time: the process itself, not
    only its pid."""
    return {pid: start for pid in pids if (start := process_start(pid)) is not None}


def still_running(processes: Mapping[int, int]) -> list[int]:
    """The pids of `processes` (from `identified`) that are still those same processes."""
    return [pid for pid, start in processes.items() if process_start(pid) == start]


def kill_left(processes: Mapping[int, int]) -> list[int]:
    """SIGKILL each of `processes` (from `identified`) still running; the pids killed. A
    pid given to another process since is left alone (it may be another test's)."""
    left = still_running(processes)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def http_request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request to 127.0.0.1:port; returns status, headers and the decoded JSON body
    (or bytes). A token of None sends no Authorization header."""
    all_headers = {**({"Authorization": f"token {token}"} if token is not None else {}), **(headers or {})}
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        data = response.read()
        reply_headers = {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()
    if reply_headers.get("content-type", "").startswith("application/json") and data:
        return response.status, reply_headers, json.loads(data)
    return response.status, reply_headers, data


class Service:
    """The service process: start, HTTP requests, stop by signal, leak check."""

    def __init__(
        self,
        *args: str,
        base_path: str = "jupyter",
        token: str | None = TOKEN,
        env: dict | None = None,
        from_env: bool = False,
        launcher: tuple[str, ...] = LAUNCHER,
        cwd: str | Path | None = None,
        port: int | None = None,
    ):
        """Start the service; with from_env, port and base path go in PORT and BASE_PATH
        instead of options. The token goes in KERNELS_SERVICE_TOKEN, as the README asks (on
        the command line every user could read it); a token of None lets the service make one."""
        self.port = port or free_port()  # a port: a service started again where its clients know it
        self.token = token
        self.base = "/" + base_path.strip("/") + "/" if base_path.strip("/") else "/"
        self.log = tempfile.NamedTemporaryFile(prefix="kernels-service-", suffix=".log", delete=False)
        env = {**os.environ, **(env or {})}
        if token is not None:
            env["KERNELS_SERVICE_TOKEN"] = token
        command = [*launcher, *args]
        for name, value in {"port": str(self.port), "base-path": base_path}.items():
            if from_env:
                env[{"port": "PORT", "base-path": "BASE_PATH"}[name]] = value
            else:
                command.append(f"--{name}={value}")
        exit_on_signals()
        self.process = subprocess.Popen(command, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        atexit.register(self._stop_at_exit)  # whatever ends the program that started it
        self._wait_serving()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited with {self.process.returncode}:\n{self.output()}")
            if "Serving at" in self.output():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"service did not start in {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def http_url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}{self.base}{path}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{self.base}{path}"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        raw_path: bool = False,
    ) -> tuple[int, dict[str, str], Any]:
        """One HTTP request under the base path (or at `path` itself with raw_path)."""
        full_path = path if raw_path else self.base + path
        return http_request(
            self.port, method, full_path, body, token=self.token if token is None else token, headers=headers
        )

    def start_kernel(self, **body: Any) -> str:
        status, _, model = self.request("POST", "api/kernels", body)
        assert status == 201, model
        return model["id"]

    def _stop_at_exit(self) -> None:
        if self.process.poll() is None:
            self.stop()

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal the service, wait for it, and return its exit code."""
        atexit.unregister(self._stop_at_exit)
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                kill_left(identified(descendants(self.pid)))
                self.process.kill()
                self.process.wait(10)
                raise
        if self.process.returncode == 0:  # nothing to look into: gone when the program ends
            atexit.register(Path(self.log.name).unlink, missing_ok=True)
        return self.process.returncode

    def stop_and_check_no_leak(self, signum: int = signal.SIGTERM) -> None:
        """Stop the service and assert that it and all its kernels are gone."""
        children = identified(descendants(self.pid))
        code = self.stop(signum)
        deadline = time.monotonic() + 10
        while still_running(children) and time.monotonic() < deadline:
            time.sleep(0.1)
        leaked = kill_left(children)
        assert code == 0, self.output()
        assert not leaked, f"processes outlived the service: {leaked}"


@contextmanager
def running_service(*args: str, **options: Any) -> Iterator[Service]:
    """A started service (`Service`'s arguments) that must leave nothing behind: on the way
    out, whatever the body did, it is stopped by SIGTERM and must exit 0 with every
    kernel process gone."""
    service = Service(*args, **options)
    try:
        yield service
    except BaseException:
        # what the service did is most of what a failure has to tell (pytest shows stderr)
        print(f"--- the service's log, last lines ---\n{service.output()[-LOG_TAIL:]}", file=sys.stderr)
        raise
    finally:
        service.stop_and_check_no_leak()


#: How much of a service's log a failure inside `running_service` prints.
LOG_TAIL = 6000


#: The last line of a kernel that lost jupyter_client's port race: a port picked free for
#: it was taken before it could bind (many launches on a busy machine). The kernel's own
#: traceback, copied from its stderr; jupyter_client restarts it on new ports.
PORT_RACE = "zmq.error.ZMQError: Address already in use"


def tracebacks(output: str) -> list[str]:
    """The tracebacks in a service's output but those of kernels that lost the port race."""
    found = []
    for block in output.split("Traceback (most recent call last):")[1:]:
        lines = [line for line in block.splitlines() if line.strip()]
        error = next((line for line in lines if not line.startswith((" ", "\t"))), "")
        if not error.startswith(PORT_RACE):
            found.append(block[:2000])
    return found
