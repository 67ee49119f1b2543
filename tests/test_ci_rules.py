"""The CI rule of conftest.py: under CI=true a skipped test fails, unless marked ``cuda``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = '''
import pytest

def test_skips():
    pytest.skip("an optional tool is missing")

@pytest.mark.cuda
def test_needs_a_gpu():
    pytest.skip("needs a CUDA device")

@pytest.mark.xfail(reason="known")
def test_known_failure():
    assert False
'''


def _pytest(folder: Path, ci: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CI=ci)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfs", "-p", "no:cacheprovider",
                           "-o", "markers=cuda: gpu", str(folder)], capture_output=True,
                          text=True, env=env, cwd=folder)


def test_a_skip_fails_under_ci_unless_it_is_a_cuda_test(tmp_path: Path):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(TESTS)
    local = _pytest(tmp_path, "")
    assert local.returncode == 0 and "2 skipped, 1 xfailed" in local.stdout, local.stdout
    ci = _pytest(tmp_path, "true")
    assert ci.returncode == 1, ci.stdout
    assert "1 failed, 1 skipped, 1 xfailed" in ci.stdout, ci.stdout
    assert "skipped under CI=true" in ci.stdout and "an optional tool is missing" in ci.stdout
