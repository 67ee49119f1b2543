"""Output formats behind one interface: ``render(report, fmt, depth) -> str``.

The rich table is for people (human units); JSON, CSV and Markdown carry exact
integers for scripts. rich is imported only when the table is asked for.
"""

from __future__ import annotations

from typing import Callable

from ..analysis import Report

Renderer = Callable[[Report, "int | None"], str]


def _table(report: Report, depth: int | None) -> str:
    from .table import render_table

    return render_table(report, depth)


def _json(report: Report, depth: int | None) -> str:
    import json

    from .view import report_dict

    return json.dumps(report_dict(report, depth), indent=2) + "\n"


def _csv(report: Report, depth: int | None) -> str:
    from .text import render_csv

    return render_csv(report, depth)


def _markdown(report: Report, depth: int | None) -> str:
    from .text import render_markdown

    return render_markdown(report, depth)


FORMATS: dict[str, Renderer] = {
    "table": _table,
    "json": _json,
    "csv": _csv,
    "markdown": _markdown,
}


def render(report: Report, fmt: str = "table", depth: int | None = None) -> str:
    return FORMATS[fmt](report, depth)
