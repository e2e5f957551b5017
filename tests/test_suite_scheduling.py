"""The suite's own scheduling (tests/conftest.py): on two workers, a test file's tests all
run on one worker. Tests of one file share what they start (a uid, a port, a database)
and may not run at the same time; this broke without a word once (xdist's group marks,
which pytest 9.2 ignores), and two of one file's tests killed each other's processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict

from tests.conftest import FileScheduling
from tests.support.paths import ROOT

FILES = ("tests/test_codecs.py", "tests/test_handover_codec.py", "tests/test_socketio_codecs.py")


def test_on_two_workers_each_file_runs_on_one_worker():
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "-v", *FILES]
    result = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:]
    workers = defaultdict(set)
    for worker, path in re.findall(r"^\[(gw\d+)\] .*? PASSED (tests/[\w/]+\.py)::", result.stdout, re.M):
        workers[path].add(worker)
    assert sorted(workers) == sorted(FILES), result.stdout[-3000:]
    assert all(len(ran_on) == 1 for ran_on in workers.values()), dict(workers)
    assert len(set().union(*workers.values())) == 2, "both workers had work"


def test_the_files_that_use_podman_are_one_unit_and_every_other_file_its_own():
    scope = FileScheduling._split_scope
    assert scope(None, "tests/test_image.py::test_a[x]") == scope(None, "tests/test_kubernetes.py::test_b") == "podman"
    assert scope(None, "tests/test_container_kernels.py::test_c") == "podman"
    assert scope(None, "tests/test_codecs.py::test_d[a::b]") == "tests/test_codecs.py"
    assert scope(None, "tests/test_rest.py::test_e") != scope(None, "tests/test_codecs.py::test_e")
