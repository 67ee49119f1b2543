"""The rich table, like torchinfo's summary but from a spec."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from ..analysis import Report
from ..units import human, human_bytes
from .view import COLUMNS, collapse, shape_text


def render_table(report: Report, depth: int | None) -> str:
    inputs = ", ".join(f"{k} {shape_text(v)}" for k, v in report.inputs.items())
    table = Table(title=f"{report.name}  ·  input {inputs}  ·  {report.dtype}",
                  title_justify="left", header_style="bold", show_footer=True)
    t = report.totals
    footers = {"Layer": "Total", "Params": human(t.params), "MACs": human(t.macs),
               "FLOPs": human(t.flops), "Activations": human_bytes(t.activation_bytes)}
    for c in COLUMNS:
        table.add_column(c.title, footer=footers.get(c.title, ""),
                         justify="right" if c.numeric else "left", no_wrap=c.title == "Layer")
    for r in collapse(report, depth):
        table.add_row(*(c.human(r) for c in COLUMNS))
    buf = io.StringIO()
    console = Console(file=buf, width=max(120, _width(report)), force_terminal=False,
                      color_system=None)
    console.print(table)
    outputs = ", ".join(f"{k} {shape_text(v)}" for k, v in report.outputs.items())
    summary = [
        f"Outputs: {outputs}",
        f"Params: {t.params:,} ({human(t.params)}); trainable {t.trainable_params:,}; "
        f"buffers {t.buffers:,}",
        f"MACs: {t.macs:,} ({human(t.macs)}MAC); FLOPs: {t.flops:,} ({human(t.flops)}FLOP)",
        f"Memory at {report.dtype}: weights {human_bytes(t.weight_bytes)}, activations "
        f"{human_bytes(t.activation_bytes)} (all layer outputs), inference peak "
        f"{human_bytes(t.peak_activation_bytes)}, input {human_bytes(t.input_bytes)}",
    ]
    if t.nonzero_params != t.params:
        summary.append(f"After pruning: {t.nonzero_params:,} non-zero params, "
                       f"{t.nonzero_macs:,} MACs")
    for name, section in report.sections.items():
        items = ", ".join(f"{k.replace('_', ' ')} {v:,}" if isinstance(v, int) else f"{k.replace('_', ' ')} {v}"
                          for k, v in section.items())
        summary.append(f"{name.capitalize()}: {items}")
    return buf.getvalue() + "\n".join(summary) + "\n"


def _width(report: Report) -> int:
    longest = max((len(r.name) for r in report.layers), default=10)
    return 100 + longest
