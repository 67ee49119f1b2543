"""The rich table, like torchinfo's summary but from a spec."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from ..analysis import Report
from ..textsafe import text
from ..units import human, human_bytes
from .view import COLUMNS, collapse, shape_text


def render_table(report: Report, depth: int | None) -> str:
    inputs = ", ".join(shape_text(v) if k == "input" else f"{k} {shape_text(v)}"
                       for k, v in report.inputs.items())
    table = Table(title=f"{text(report.name)}  ·  input {inputs}  ·  {report.dtype}",
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
    # markup and emoji codes off: a spec named "[bold]x" or ":smile:" prints as written
    console = Console(file=buf, width=max(120, _width(report)), force_terminal=False,
                      color_system=None, markup=False, emoji=False)
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
    seq = report.sections.get("sequence")
    if seq:
        summary += _sequence_lines(seq, report.batch)
    conv = report.sections.get("convention")
    if conv:  # netcalc.conventions.apply: MACs and FLOPs follow another tool's rules
        summary.append(f"Convention {conv['name']}: MACs and FLOPs as {conv['rule']}; the tool "
                       f"reports {conv['total']:,} {conv['unit']} in total")
    return buf.getvalue() + "\n".join(summary) + "\n"


def _width(report: Report) -> int:
    longest = max((len(r.name) for r in report.layers), default=10)
    return 100 + longest


def _sequence_lines(seq: dict, batch: int) -> list[str]:
    """The sequence-model summary: per-token cost beside Kaplan et al.'s rule of thumb."""
    lines = [
        f"Sequence: {seq['tokens']:,} tokens ({batch} × {seq['n_ctx']:,}); "
        f"non-embedding params {seq['non_embedding_params']:,}",
        f"Per token: {human(seq['macs_per_token'])}MAC, {human(seq['flops_per_token'])}FLOP exact; "
        f"Kaplan et al. (2020) 2N + 2·n_layer·n_ctx·d_model = "
        f"{human(seq['kaplan_flops_per_token'])}FLOP ({seq['kaplan_ratio']:.2f}× of 2·MACs)",
    ]
    if "causal_macs" in seq:
        lines.append(f"Causal attention: {seq['causal_macs']:,} MACs counting only the causal "
                     f"half of each L×L product (MACs above count the full L×L, as torch's counters do)")
    if "kv_cache_bytes_per_token" in seq:
        lines.append(f"KV cache: {human_bytes(seq['kv_cache_bytes_per_token'])} per token; "
                     f"{human_bytes(seq['kv_cache_bytes'])} for {seq['tokens']:,} tokens")
    return lines
