"""``netcalc report``: one self-contained HTML page that works offline.

Everything is inline: the style and the script (``render/assets/report.css`` and
``report.js``, small and hand-written: the table's sorting and filter, and SVG charts
drawn from the page's JSON), the graph (the SVG that Graphviz's ``dot`` made, inlined
once) and the data. A Content-Security-Policy forbids every fetch, so the page cannot
load anything even if something asked it to.

What it shows, all from the report (nothing recomputed here): the totals (the same
lines as ``shapes``), the graph (:mod:`netcalc.render.dot`, folded as ``draw`` folds
it), the per-layer table at ``--depth`` (as ``shapes --depth``), bars of MACs,
params, activation bytes and, with ``--train``, saved bytes per row, the
receptive-field growth along the widest path to each output (``report.rf_growth``),
the live bytes of inference and of a training step over the layer order
(``report.timelines``) and, with a profile, the measured per-layer roofline: each
layer's achieved FLOP/s against its arithmetic intensity under the calibrated roofs
(``netcalc profile --format json``).

Text from the spec reaches the page only through :mod:`netcalc.textsafe`: ``html``
for markup, ``script_json`` for the data, which the script sets as ``textContent``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analysis import Report
from ..textsafe import html as esc
from ..textsafe import script_json, text
from .table import summary_lines
from .view import collapse, columns

if TYPE_CHECKING:
    from ..results import ProfileResult

ASSETS = Path(__file__).with_name("assets")
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data:")
BARS = (("macs", "MACs per layer", "MAC"), ("params", "Params per layer", ""),
        ("activation_bytes", "Activation bytes per layer", "B"),
        ("saved_bytes", "Saved for backward per layer (--train)", "B"))


def _number(x: Any) -> Any:
    """An exact value as a JSON number the script can sort and plot (floats beyond 2**53
    lose digits only in the chart, never in the table's text)."""
    return x if isinstance(x, (int, float)) or x is None else str(x)


def _rf_size(rf) -> float | None:
    return None if rf.global_ else float(max(d.size for d in rf.dims))


def page_data(report: Report, depth: int | None, profile: dict[str, Any] | None) -> dict:
    """The JSON the page's script draws from (names already made printable)."""
    rows = collapse(report, depth)
    cols = columns(report)
    data: dict[str, Any] = {
        "columns": [{"title": c.title, "num": c.numeric} for c in cols],
        "rows": [[text(c.human(r)) for c in cols] for r in rows],
        "keys": [[_number(c.exact(r)) if c.numeric else text(c.exact(r)) for c in cols]
                 for r in rows],
        "names": [text(r.name) for r in rows],
        "bars": [{"title": title, "unit": unit, "values": [getattr(r, key) or 0 for r in rows]}
                 for key, title, unit in BARS if getattr(rows[0], key, None) is not None]
        if rows else [],
        "rf": [],
        "memory": [],
        "roofline": profile,
    }
    for output, path in report.rf_growth.items():
        sizes = [_rf_size(rf) for _, rf in path]
        first_global = next((i for i, x in enumerate(sizes) if x is None), None)
        data["rf"].append({"output": text(output), "size": sizes,
                           "where": [text(name) for name, _ in path], "global_at": first_global})
    titles = {"inference": ("Inference: live activation bytes after each layer", "layers in order"),
              "training": ("Training step: live bytes (forward, loss, backward, optimizer)",
                           "points of the step in order")}
    for kind, points in report.timelines.items():
        title, x = titles.get(kind, (kind, "points in order"))
        data["memory"].append({"title": title, "x": x, "bytes": [b for b, _ in points],
                               "where": [text(w) for _, w in points]})
    return data


def clean_svg(svg: bytes) -> str:
    """Graphviz's SVG for inlining: no XML declaration, doctype or comments (the
    comments hold only generated ids; the text is already escaped by Graphviz)."""
    s = svg.decode("utf-8", "replace")
    s = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>|<!--.*?-->", "", s, flags=re.S)
    return s.strip()


def render_html(report: Report, depth: int | None = None, graph_svg: str | None = None,
                graph_note: str | None = None, profile: dict[str, Any] | None = None,
                profile_note: str | None = None) -> str:
    """The page (see the module). ``graph_svg``: the cleaned SVG, or None with a note;
    ``profile``: the roofline's data (:func:`roofline_data`), or None."""
    data = page_data(report, depth, profile)
    css = (ASSETS / "report.css").read_text(encoding="utf-8")
    js = (ASSETS / "report.js").read_text(encoding="utf-8")
    inputs = ", ".join(f"{k} [{', '.join(map(str, v))}]" for k, v in report.inputs.items())
    depth_text = "every layer" if depth is None else f"blocks folded below depth {depth}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(report.name)} · netcalc report</title>",
        f"<style>{css}</style></head><body>",
        f"<header><h1>{esc(report.name)}</h1><p>{esc(report.file)} · input {esc(inputs)} · "
        f"{esc(report.dtypes.label())}</p></header><main>",
        '<section id="totals"><h2>Totals</h2><pre class="summary">'
        + "\n".join(esc(line) for line in summary_lines(report)) + "</pre></section>",
        '<section id="graph"><h2>Graph</h2>',
        f'<div class="graph">{graph_svg}</div>' if graph_svg is not None
        else f'<p class="note">{esc(graph_note or "graph left out")}</p>',
        "</section>",
        '<section id="costs"><h2>Where the cost goes</h2><div class="charts" id="cost-charts">'
        "</div></section>",
    ]
    if data["rf"]:
        parts.append('<section id="rf"><h2>Receptive field growth</h2>'
                     '<div class="charts" id="rf-charts"></div></section>')
    parts.append('<section id="memory"><h2>Memory over the layer order</h2>'
                 '<div class="charts" id="memory-charts"></div></section>')
    if profile is not None:
        parts.append('<section id="roofline"><h2>Measured roofline</h2>'
                     f'<p>{esc(profile["caption"])}</p>'
                     '<div class="charts"><div class="chart" id="roofline-chart"></div></div>'
                     '</section>')
    elif profile_note:
        parts.append(f'<section id="roofline"><h2>Measured roofline</h2>'
                     f'<p class="note">{esc(profile_note)}</p></section>')
    parts += [f'<section id="layers"><h2>Layers ({esc(depth_text)})</h2><div class="tools">'
              '<input type="search" placeholder="filter by name or type" aria-label="filter">'
              '<span class="count"></span></div><div class="tablewrap"><table><thead></thead>'
              "<tbody></tbody></table></div></section>",
              f'<script type="application/json" id="netcalc-data">{script_json(data)}</script>',
              f"<script>{js}</script>", "</main></body></html>"]
    return "\n".join(parts) + "\n"


def roofline_data(profile: "ProfileResult", report: Report, index: int) -> dict[str, Any]:
    """The roofline of run ``index`` (a ``configs`` entry) of a profile of the spec that
    ``report`` analyses (see :func:`roofline_run`): the profile's name and every timed
    layer's name must be the spec's. A ValueError says what is wrong."""
    if profile.name != report.name:
        raise ValueError(f"it profiles {text(profile.name)!r}, not this spec's "
                         f"{text(report.name)!r}")
    run = roofline_run(profile, index)
    names = {text(r.name) for r in report.layers}
    strangers = [p[0] for p in run["points"] if p[0] not in names]
    if strangers:
        raise ValueError(f"its layer {strangers[0]!r} is not in this spec (profiled from "
                         "another version of it?)")
    return run


def _positive(x: Any) -> float | None:
    """A finite positive number from a profile, else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    v = float(x)
    return v if math.isfinite(v) and v > 0 else None


def roofline_run(profile: "ProfileResult", index: int) -> dict[str, Any]:
    """Run ``index`` of a profile as a roofline: each timed layer with MACs as (name,
    FLOP/B, achieved FLOP/s), under the device's calibrated peak FLOP/s and copy
    bandwidth. A ValueError says what is missing or malformed."""
    n = len(profile.configs)
    if not 0 <= index < n:
        raise ValueError(f"--profile-config {index}: it has {n} configuration(s)"
                         + (f" (0 to {n - 1})" if n else ""))
    cfg = profile.configs[index]
    hw = profile.hardware.get(cfg.device)
    label = f"{text(cfg.device)}, batch {text(cfg.batch)}"
    peak = _positive(hw.peak_flops) if hw is not None else None
    bw = _positive(hw.peak_bandwidth) if hw is not None else None
    if hw is None or peak is None or bw is None or cfg.per_layer is None \
            or not cfg.per_layer.layers:
        raise ValueError(f"configuration {index} ({label}) has no calibrated roofs or no "
                         "per-layer timings (profile with --per-layer)")
    layers = cfg.per_layer.layers
    points = []
    for r in layers:
        x, y = _positive(r.roof.intensity_flop_per_byte), _positive(r.roof.flops_per_s)
        if _positive(r.macs) and x and y:
            points.append([text(r.name), x, y])
    return {
        "label": label,
        "title": f"{label}: achieved FLOP/s per layer",
        "caption": f"{len(points)} layers with MACs timed on {text(hw.name)} ({label}, "
                   f"{text(profile.options.dtype)}); {len(layers) - len(points)} without MACs "
                   "not shown. Roofs: the calibrated peak and copy bandwidth (netcalc profile).",
        "peak_flops": peak, "peak_bandwidth": bw, "ridge": peak / bw, "points": points,
    }


PROFILE_MAX_BYTES = 64_000_000


def load_profile(path: Path) -> "ProfileResult":
    """A ``netcalc profile --format json`` file, read as a regular file of bounded size and
    typed by :func:`netcalc.results.load_profile` (a ValueError says what is wrong)."""
    import json

    from ..results import load_profile as typed
    from ..spec import read_text

    raw = read_text(path, PROFILE_MAX_BYTES)  # a SpecError names the file
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):  # typed() would take anything else for a path
        raise ValueError("not a netcalc profile (expected the JSON of `netcalc profile "
                         "--format json`)")
    return typed(data)
