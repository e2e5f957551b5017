"""A smoke run of the relay benchmark (`--quick`): it runs against the real service and
prints every figure. Its targets are not asserted here: a timed test on a shared CI
machine would test the machine (README.md, "Benchmarks", has the figures of a quiet run)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.service import ROOT

ROWS = (
    "pass round trip, median",
    "pass round trip, p99",
    "flood 2000 lines",
    "print 20000 numbers",
    "display 10 x 1 MB",
    "service CPU per MB displayed",
    "fan-out, v1",
    "concurrency, 4 kernels",
    "targets (ratios to direct in this run):",
)


@pytest.mark.timeout(300)
def test_bench_relay_quick_runs_and_prints_every_figure():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_relay.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for row in ROWS:
        assert row in result.stdout, f"{row!r} missing:\n{result.stdout}"
    assert result.stdout.count("round trip <= 1.1x direct") == 2 and "fan-out 10" not in result.stdout
    assert "[bench_relay] round 1/1" in result.stderr  # progress lines, on stderr
