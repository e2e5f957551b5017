"""A smoke run of the relay benchmark (`--quick`): it runs against the real service and
prints every figure. Its targets are not asserted here: a timed test on a shared CI
machine would test the machine (benchmarks/README.md has the figures of a quiet run)."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from benchmarks.bench_relay import in_turn, ratio, round_ratios
from kernels_service.testing.service import descendants, identified, still_running
from tests.support.paths import ROOT
from tests.support.waiting import wait_until

ROWS = (
    "pass round trip, median",
    "pass round trip, p99",
    "flood 2000 lines",
    "print 20000 numbers",
    "display 10 x 1 MB",
    "service CPU per MB displayed",
    "fan-out, v1",
    "concurrency, 4 kernels",
    "ratios in each round (1), lowest to highest:",
    "targets (ratios to direct in this run):",
)


def said_within(program: subprocess.Popen, pattern: str, seconds: float) -> re.Match:
    """The first line of the program's stderr that matches `pattern`, read for at most
    `seconds` (a reader thread: a program that hangs silent fails the test, with what it said)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in program.stderr], daemon=True).start()
    said, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        said.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} in {seconds} s; it said: {''.join(said)}")


def run_quick(script: str) -> subprocess.CompletedProcess:
    """`benchmarks/<script> --quick`, which must exit 0."""
    command = [sys.executable, str(ROOT / "benchmarks" / script), "--quick"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.timeout(300)
def test_bench_relay_quick_runs_and_prints_every_figure():
    result = run_quick("bench_relay.py")
    for row in ROWS:
        assert row in result.stdout, f"{row!r} missing:\n{result.stdout}"
    assert result.stdout.count("round trip <= 1.1x direct") == 2 and "fan-out 10" not in result.stdout
    assert "[bench_relay] round 1/1" in result.stderr  # progress lines, on stderr


@pytest.mark.timeout(300)
def test_kernel_transports_quick_runs_and_prints_each_transport():
    result = run_quick("kernel_transports.py")
    lines = result.stdout.splitlines()
    for transport in ("tcp", "tcp+curve", "ipc"):
        assert any(line.split()[:1] == [transport] and line.count("x") == 2 for line in lines), result.stdout
    assert "display 10 x 1 MB (MB/s)" in result.stdout


@pytest.mark.timeout(300)
def test_bench_isolation_quick_runs_and_prints_each_path():
    result = run_quick("bench_isolation.py")
    for path in ("direct", "shared uid", "own uid", "unprivileged", "landlock"):
        row = next((line for line in result.stdout.splitlines() if line.startswith(f"{path} ")), "")
        assert "start median" in row and "pass round trip median" in row and row.count("x direct") == 2, result.stdout
    assert "own uid / shared uid: start" in result.stdout
    assert "landlock / unprivileged: start" in result.stdout


def test_paths_take_turns_in_a_rotated_order():
    names = ["direct", "legacy", "v1", "sio"]
    assert [in_turn(names, r) for r in range(5)] == [
        names,
        ["legacy", "v1", "sio", "direct"],
        ["v1", "sio", "direct", "legacy"],
        ["sio", "direct", "legacy", "v1"],
        names,
    ]


def test_ratios_are_per_round_and_above_one_when_slower():
    rounds = {
        "direct": {"flood": [10.0, 20.0, 12.0], "display_mb_s": [50.0, 100.0, 60.0]},
        "v1": {"flood": [11.0, 21.0, 18.0], "display_mb_s": [40.0, 100.0, 75.0]},
    }
    assert round_ratios(rounds, "v1", "flood") == [1.1, 1.05, 1.5]
    assert ratio(rounds, "v1", "flood") == 1.1  # the median round, not median over median
    assert round_ratios(rounds, "v1", "display_mb_s") == [1.25, 1.0, 0.8]  # MB/s: direct / path
    assert ratio(rounds, "v1", "display_mb_s") == 1.0


@pytest.mark.timeout(120)
def test_interrupt_loss_runs_and_accounts_for_every_run():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "interrupt_loss.py"), "--runs", "3"],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for mode in ("signal", "message"):
        (line,) = [line for line in result.stdout.splitlines() if line.strip().startswith(f"{mode}:")]
        counts = [int(word) for word in line.split("runs:")[1].replace(",", " ").split() if word.isdigit()]
        assert len(counts) == 3 and sum(counts) == 3, line


@pytest.mark.timeout(180)
def test_a_benchmark_ended_by_sigterm_stops_its_service_and_kernels():
    """A benchmark killed with SIGTERM (a CI job cancelled, a terminal closed) stops the
    service it started, and that service's kernels go with it (testing.service ends such a
    program as Ctrl-C does, and stops its services at exit)."""
    command = [sys.executable, str(ROOT / "benchmarks" / "bench_relay.py"), "--quick"]
    bench = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        service = int(said_within(bench, r"\(pid (\d+)\)", 90).group(1))
        wait_until(lambda: len(descendants(service)) >= 3, 60, "the benchmark's kernels started")
        kernels, the_service = identified(descendants(service)), identified([service])
        bench.send_signal(signal.SIGTERM)
        assert bench.wait(60) != 0
        wait_until(lambda: not still_running(the_service), 30, "the benchmark's service gone")
        wait_until(lambda: not still_running(kernels), 30, "the service's kernels gone")
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()


@pytest.mark.timeout(300)
def test_bench_replicas_quick_runs_and_prints_each_path_and_figure():
    result = run_quick("bench_replicas.py")
    for path in ("direct", "single", "owner", "other"):
        row = next((line for line in result.stdout.splitlines() if line.startswith(f"{path} ")), "")
        assert "pass round trip median" in row and "x direct" in row, result.stdout
    for figure in ("other / owner: round trip", "interrupt median owner", "get       median owner", "staleness median"):
        assert figure in result.stdout, result.stdout


@pytest.mark.timeout(300)
def test_bench_takeover_quick_runs_and_prints_each_figure():
    result = run_quick("bench_takeover.py")
    figures = ("direct    loop cell median", "kill -9 -> cell", "kill -9 -> owner", "loop, no restart", "loop, rolling")
    for figure in figures:
        row = next((line for line in result.stdout.splitlines() if line.startswith(figure)), "")
        assert row and ("x direct" in row or "lease time" in row or figure.startswith("direct")), result.stdout
    assert "replica-2 restarted" in result.stderr  # the rolling restart went round
