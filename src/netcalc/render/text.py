"""CSV and Markdown: the report's rows with exact integers.

Text cells go through :mod:`netcalc.textsafe`: the csv module quotes commas, quotes
and newlines, but control characters would still reach a terminal, and a ``|`` or a
newline in a Markdown cell would add columns or rows.
"""

from __future__ import annotations

import csv
import io

from ..analysis import Report
from ..textsafe import markdown, text
from .view import Column, collapse, columns, shape_text, totals_dict


def _total(report: Report, c: Column) -> object:
    return getattr(report.totals, c.metric.key) if c.metric else ""


def render_csv(report: Report, depth: int | None) -> str:
    """One row per layer; the last row is the totals (name 'TOTAL')."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = columns(report)
    w.writerow([c.title for c in cols])
    for r in collapse(report, depth):
        w.writerow([c.exact(r) if c.numeric else text(c.exact(r)) for c in cols])
    w.writerow(["TOTAL", *(_total(report, c) for c in cols[1:])])
    return buf.getvalue()


def render_markdown(report: Report, depth: int | None) -> str:
    inputs = ", ".join(f"{k} {shape_text(v)}" for k, v in report.inputs.items())
    lines = [f"### {markdown(report.name)}", "",
             f"Input: {inputs} · dtype {report.dtypes.label()}", ""]
    cols = columns(report)
    lines.append("| " + " | ".join(c.title for c in cols) + " |")
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in cols) + "|")
    for r in collapse(report, depth):
        lines.append("| " + " | ".join("" if c.exact(r) is None else markdown(c.exact(r))
                                       for c in cols) + " |")
    lines.append("| **Total** | " + " | ".join(str(_total(report, c)) for c in cols[1:]) + " |")
    lines += ["", "| total | value |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in totals_dict(report).items()]
    outputs = ", ".join(f"{k} {shape_text(v)}" for k, v in report.outputs.items())
    lines += ["", f"Outputs: {outputs}", ""]
    return "\n".join(lines)
