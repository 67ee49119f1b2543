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
    One encoder serves every row (``JSONEncoder.encode`` makes a new one per call: a
    tenth of a 10^4-layer run).
    """
    from .view import report_dict

    encode = _row_encoder()
    lines = []
    for key, value in report_dict(report, depth).items():
        if key == "layers" and value:
            value_text = "[\n    " + ",\n    ".join(map(encode, value)) + "\n  ]"
        else:
            value_text = encode(value)
        lines.append(f"  {encode(key)}: {value_text}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def _row_encoder() -> Callable[[object], str]:
    """``json.dumps(value, separators=(", ", ": "))`` as one reusable C encoder where
    CPython has it."""
    import json
    import json.encoder as je

    make = getattr(je, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the C accelerator
        return json.JSONEncoder(separators=(", ", ": ")).encode

    def refuse(o: object) -> object:
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    # markers None: no cycle check (a report is a tree); allow_nan as json's default
    run = make(None, refuse, je.encode_basestring_ascii, None, ": ", ", ", False, False, True)
    return lambda value: "".join(run(value, 0))


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
