"""Shared test helpers."""

from __future__ import annotations

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
