"""Output of the torch cross-check (``netcalc verify``): a rich table and JSON.

The table has one row per layer and metric -- netcalc's number, PyTorch's (or the
tool's) number, the verdict (``match``, ``convention``, ``MISMATCH``) and, for a
``convention`` verdict, the rule of :mod:`netcalc.conventions` that separates the
two -- then the totals. JSON carries the same rows with both exact numbers side by
side (``analytic``, ``torch``).

Works on the typed :class:`netcalc.results.CrossCheckResult` and imports neither
torch nor (for JSON) rich.
"""

from __future__ import annotations

import io
import json
from typing import Any

from ..results import CONVENTION, MATCH, MISMATCH, OPAQUE, TOOLS, CheckRow, CrossCheckResult
from ..textsafe import text

CROSSCHECK_FORMATS = ("table", "json")
SHOW = ("all", "differences")


def render_crosscheck(result: CrossCheckResult, fmt: str = "table", show: str = "all") -> str:
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2) + "\n"
    if fmt == "table":
        return render_table(result, show)
    raise ValueError(f"unknown format {fmt!r} ({', '.join(CROSSCHECK_FORMATS)})")


def _cell(v: Any, metric: str = "") -> str:
    if v is None:
        return "unknown"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, list):
        if metric == "rf":
            return " × ".join("-" if x is None else f"{x[0]}..{x[1]}" for x in v)
        if v and all(isinstance(x, list) for x in v):
            return ", ".join("[" + ", ".join(map(str, x)) + "]" for x in v)
        return "[" + ", ".join(map(str, v)) + "]"
    return str(v)


_MARK = {MATCH: "", CONVENTION: " †", OPAQUE: " ?", MISMATCH: " ✗"}
_RANK = {MATCH: 0, CONVENTION: 1, OPAQUE: 1, MISMATCH: 2}


def _pivot(rows: list[CheckRow]) -> dict[str, dict[str, Any]]:
    by: dict[str, dict[str, Any]] = {}
    for r in rows:
        by.setdefault(r.layer, {"type": r.type})[r.metric] = r
    return by


def render_table(result: CrossCheckResult, show: str = "all") -> str:
    """One row per layer: each metric's torch-side number, marked † (a documented
    convention explains the difference) or ✗ (a mismatch), and the row's verdict;
    then the totals, the rules used and every mismatch with both numbers."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    title = (f"{text(result.name)}  ·  cross-check against PyTorch  ·  batch {result.batch}  ·  "
             f"{result.device}  ·  convention {result.convention}")
    table = Table(title=Text(title), title_justify="left", header_style="bold",
                  show_footer=False)
    present = {r.metric for r in (*result.rows, *result.totals)}
    tools = [t for t in TOOLS if t in present]
    columns = ["Layer", "Type", "Shape", "Params", f"MACs ({result.convention})", *tools]
    if "rf" in present:
        columns.append("RF (input extent)")
    columns.append("Verdict")
    for c in columns:
        table.add_column(c, justify="left" if c in ("Layer", "Type", "Shape", "Verdict",
                                                    "RF (input extent)") else "right",
                         no_wrap=c in ("Layer", "Verdict"))
    rules: dict[str, str] = {}
    for name, cells in _pivot(result.rows).items():
        metric_rows = [v for k, v in cells.items() if k != "type"]
        worst = max((r.verdict for r in metric_rows), key=_RANK.__getitem__, default=MATCH)
        if show != "all" and worst == MATCH:
            continue
        for r in metric_rows:
            if r.verdict == CONVENTION:
                rules[r.rule] = r.metric
        first_tool = next((cells[t] for t in tools if t in cells), None)
        analytic = first_tool.analytic if first_tool is not None else ""
        if first_tool is not None and first_tool.metric == "flopcounter":
            analytic = analytic // 2 if isinstance(analytic, int) else analytic
        row = [name, cells["type"], _show(cells.get("shape")), _params(cells),
               _cell(analytic) if first_tool is not None else ""]
        row += [_show(cells.get(t)) for t in tools]
        if "rf" in present:
            row.append(_show(cells.get("rf")))
        row.append(worst)
        table.add_row(*(Text(text(c)) for c in row))
    table.add_section()
    totals = {r.metric: r for r in result.totals}
    trow = ["TOTAL", "", _show(totals.get("output shapes")), _show(totals.get("params")),
            ""]
    first_total = next((totals[t] for t in tools if t in totals), None)
    if first_total is not None:
        a = first_total.analytic
        trow[4] = _cell(a // 2 if first_total.metric == "flopcounter" and isinstance(a, int)
                        else a)
    trow += [_show(totals.get(t)) for t in tools]
    if "rf" in present:
        trow.append("")
    trow.append(max((r.verdict for r in result.totals), key=_RANK.__getitem__, default=MATCH))
    table.add_row(*(Text(text(c)) for c in trow))
    buf = io.StringIO()
    width = max(140, max((len(r.layer) for r in result.rows), default=10) + 130)
    Console(file=buf, width=width, force_terminal=False, color_system=None).print(table)
    counts = result.counts()
    opaque = (f", {counts[OPAQUE]} opaque (? an Opaque layer: MACs unknown to netcalc)"
              if counts.get(OPAQUE) else "")
    lines = [f"Verdicts: {counts.get(MATCH, 0)} match, {counts.get(CONVENTION, 0)} "
             f"convention, {counts.get(MISMATCH, 0)} MISMATCH{opaque}  (tool columns: † a "
             "documented convention gives the tool's number exactly, ✗ mismatch)"]
    if rules:
        from ..conventions import CONVENTIONS

        lines.append("Conventions used (netcalc.conventions):")
        for rule_id in sorted(rules):
            conv, _, _ = rule_id.partition(".")
            rule = next((r.text for r in CONVENTIONS[conv].rules.values() if r.id == rule_id),
                        "") if conv in CONVENTIONS else ""
            lines.append(f"  † {rule_id}: {rule}" if rule else f"  † {rule_id}")
    for r in result.mismatches:
        lines.append(f"✗ {text(r.message)}")
    for note in result.skipped:
        lines.append(f"Skipped: {text(note)}")
    versions = text(", ".join(f"{k} {v}" for k, v in result.versions.items()))
    if versions:
        lines.append(f"Tools: {versions}")
    lines.append("OK: every number matches PyTorch or a documented convention"
                 if result.ok else f"FAILED: {len(result.mismatches)} mismatch(es)")
    return buf.getvalue() + "\n".join(lines) + "\n"


def _show(r: CheckRow | None) -> str:
    """The torch-side number of one comparison, marked by its verdict."""
    if r is None:
        return ""
    return _cell(r.torch, r.metric) + _MARK.get(r.verdict, "")


def _params(cells: dict[str, Any]) -> str:
    p = cells.get("params")
    shown = _show(p)
    for extra in ("trainable", "buffers"):
        r = cells.get(extra)
        if r is not None and (r.verdict != MATCH or (extra == "buffers" and r.torch)):
            shown += f" ({extra} {_show(r)})"
        elif r is not None and extra == "trainable" and p is not None and r.torch != p.torch:
            shown += f" (trainable {_show(r)})"
    return shown
