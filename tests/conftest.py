"""Shared test helpers, and the CI rule that nothing is skipped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import netcalc

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def analyze_text(text: str, batch: int = 1, **kw) -> netcalc.Report:
    """Analyse an inline YAML spec."""
    return netcalc.analyze(netcalc.parse(text, "t.yaml"), batch=batch, **kw)


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skipped test fails the run, unless it is marked ``cuda``.

    CI installs every optional oracle (.ci/run): a skip there means a check silently
    did not run. Only what depends on the machine having a GPU may skip.
    """
    outcome = yield
    report = outcome.get_result()
    if (os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail")
            and item.get_closest_marker("cuda") is None):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true (only `cuda` tests may skip): {reason}"
