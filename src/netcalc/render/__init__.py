"""Output formats behind one interface: ``render(report, fmt, depth) -> str``.

The rich table is for people (human units); JSON, CSV and Markdown carry exact
integers for scripts. rich is imported only when the table is asked for.
"""

from __future__ import annotations

from typing import Callable

from ..analysis import Report
from ..perf import paused_gc

Renderer = Callable[[Report, "int | None"], str]


def _table(report: Report, depth: int | None) -> str:
    from .table import render_table

    return render_table(report, depth)


def _json(report: Report, depth: int | None) -> str:
    """One top-level key per line and one layer per line.

    Readable and diffable, and written by json's C encoder: ``indent=`` would switch
    to the pure-Python encoder, a third of the run time of ``shapes`` on ResNet-50.
    """
    import json

    from .view import report_dict

    encode = json.JSONEncoder(separators=(", ", ": ")).encode
    lines = []
    for key, value in report_dict(report, depth).items():
        if key == "layers" and value:
            value_text = "[\n" + ",\n".join(f"    {encode(row)}" for row in value) + "\n  ]"
        else:
            value_text = encode(value)
        lines.append(f"  {encode(key)}: {value_text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


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


@paused_gc()  # 10^4 rows of small objects: see netcalc.perf
def render(report: Report, fmt: str = "table", depth: int | None = None) -> str:
    return FORMATS[fmt](report, depth)
