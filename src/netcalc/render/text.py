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
from .view import COLUMNS, collapse, shape_text

TOTAL_FIELDS = ("params", "trainable_params", "buffers", "macs", "flops", "weight_bytes",
                "activation_bytes")


def render_csv(report: Report, depth: int | None) -> str:
    """One row per layer; the last row is the totals (name 'TOTAL')."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.title for c in COLUMNS])
    for r in collapse(report, depth):
        w.writerow([c.exact(r) if c.numeric else text(c.exact(r)) for c in COLUMNS])
    t = report.totals
    w.writerow(["TOTAL", "", "", "", t.params, t.macs, t.flops, t.activation_bytes])
    return buf.getvalue()


def render_markdown(report: Report, depth: int | None) -> str:
    t = report.totals
    inputs = ", ".join(f"{k} {shape_text(v)}" for k, v in report.inputs.items())
    lines = [f"### {markdown(report.name)}", "", f"Input: {inputs} · dtype {report.dtype}", ""]
    lines.append("| " + " | ".join(c.title for c in COLUMNS) + " |")
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in COLUMNS) + "|")
    for r in collapse(report, depth):
        lines.append("| " + " | ".join(markdown(c.exact(r)) for c in COLUMNS) + " |")
    lines.append(f"| **Total** | | | | {t.params} | {t.macs} | {t.flops} | {t.activation_bytes} |")
    lines += ["", "| total | value |", "|---|---:|"]
    lines += [f"| {name} | {getattr(t, name)} |" for name in TOTAL_FIELDS]
    outputs = ", ".join(f"{k} {shape_text(v)}" for k, v in report.outputs.items())
    lines += ["", f"Outputs: {outputs}", ""]
    return "\n".join(lines)
