"""Static plots with matplotlib (the ``plots`` extra, imported only when asked for).

* ``netcalc shapes SPEC --plot costs.png``: MACs, params and activation bytes (and,
  with ``--train``, saved bytes) per row of the table, at ``--depth``.
* ``netcalc profile SPEC --plot roofline.png``: each timed layer's achieved FLOP/s
  against its arithmetic intensity (FLOP per byte moved), on log axes, under each
  device's calibrated roofs: min(peak FLOP/s, intensity × copy bandwidth) (Williams,
  Waterman & Patterson, "Roofline", CACM 2009).

The file type follows the name's extension (png, svg, pdf: what matplotlib writes).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..analysis import Report
from ..textsafe import plot_label, text
from .html import BARS, roofline_run
from .view import collapse

if TYPE_CHECKING:
    from ..results import ProfileResult

PLOTS_MISSING = "--plot needs matplotlib: pip install 'netcalc-nn[plots]'"
MAX_TICKS = 60  # row names on the x axis up to this many rows


class PlotError(Exception):
    """matplotlib is missing or cannot write the file (one line)."""


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, or a PlotError."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError(PLOTS_MISSING) from None
    return plt


def _save(fig: Any, path: Path) -> None:
    try:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise PlotError(f"--plot {text(path)}: cannot write: "
                        f"{getattr(exc, 'strerror', None) or exc}") from None


def costs_plot(report: Report, depth: int | None, path: Path) -> None:
    """Bars of each cost per row (see the module)."""
    plt = pyplot()
    from matplotlib.ticker import EngFormatter

    rows = collapse(report, depth)
    if not rows:
        raise PlotError("--plot: the network has no layers to plot")
    bars = [b for b in BARS if getattr(rows[0], b[0], None) is not None]
    fig, axes = plt.subplots(len(bars), 1, figsize=(11, 2.2 * len(bars)), sharex=True,
                             squeeze=False)
    x = range(len(rows))
    for ax, (key, title, unit) in zip(axes[:, 0], bars):
        ax.bar(x, [getattr(r, key) or 0 for r in rows], width=0.85)
        ax.set_title(title, fontsize=10, loc="left")
        ax.yaxis.set_major_formatter(EngFormatter(unit=unit))
        ax.grid(axis="y", alpha=0.3)
    last = axes[-1, 0]
    if len(rows) <= MAX_TICKS:
        last.set_xticks(list(x), [plot_label(r.name) for r in rows], rotation=90, fontsize=7)
    else:
        last.set_xlabel(f"{len(rows)} layers in order")
    fig.suptitle(f"{plot_label(report.name)}: where the cost goes", fontsize=12)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def roofline_plot(profile: "ProfileResult", path: Path) -> None:
    """Every run of a profile with per-layer timings, under its device's roofs."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    drawn = 0
    roofs: set[tuple[float, float]] = set()
    for i in range(len(profile.configs)):
        try:
            run = roofline_run(profile, i)
        except ValueError:
            continue
        pts = run["points"]
        if pts:
            ax.scatter([p[1] for p in pts], [p[2] for p in pts], s=16, alpha=0.7,
                       label=plot_label(run["label"]))
            drawn += 1
        peak, bw = run["peak_flops"], run["peak_bandwidth"]
        if (peak, bw) not in roofs:
            roofs.add((peak, bw))
            xs = [min([p[1] for p in pts] + [run["ridge"]]) / 4, run["ridge"],
                  max([p[1] for p in pts] + [run["ridge"]]) * 4]
            ax.plot(xs, [min(peak, x * bw) for x in xs], color="firebrick", lw=1.5)
    if not drawn:
        plt.close(fig)
        raise PlotError("--plot: no run with per-layer timings to plot (use --per-layer)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("achieved FLOP/s")
    ax.set_title(f"{plot_label(profile.name)}: per-layer roofline", fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)
