"""Where the checkout is, for tests that run its files (the launcher, the examples, the benchmarks)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
