"""Output of ``netcalc profile``: a rich summary, JSON with every figure, a progress bar.

Works on the typed :class:`netcalc.results.ProfileResult` (from a run, or loaded from
its JSON by :func:`netcalc.results.load_profile`), so this module needs no torch. The
progress bar goes to stderr, only when stderr is a terminal, and refreshes between
timed blocks only (no background thread competing with the measurement for the CPU).
"""

from __future__ import annotations

import io
import json
import sys
import time
from typing import Any

from ..results import ConfigResult, CrossCheckSummary, PerLayer, ProfileResult, Progress
from ..textsafe import text
from ..units import human, human_bytes


# ------------------------------------------------------------------------ units
def human_time(seconds: float | None) -> str:
    """0.000412 -> '412 µs'; 0.0288 -> '28.8 ms'; 1.5 -> '1.50 s'."""
    if seconds is None:
        return "-"
    s = float(seconds)
    a = abs(s)
    if a >= 1:
        return f"{s:.3g} s" if a < 1000 else f"{s:.0f} s"
    if a >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    if a >= 1e-6:
        return f"{s * 1e6:.3g} µs"
    return f"{s * 1e9:.3g} ns"


def _pct(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if abs(x) < 10 else f"{100 * x:.0f}%"


def _rate(x: float | None, unit: str) -> str:
    return "-" if x is None else human(x, unit)


def _count(x: float | None) -> str:
    """A rate like samples/s: 36.6, 1.41 k."""
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 1000 else human(x)


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _cells(*values: object) -> list[Any]:
    """Table cells as rich Text: no markup is read from a name, nothing unprintable shown."""
    from rich.text import Text

    return [Text(text(v)) for v in values]


# ------------------------------------------------------------------------ JSON
def render_profile_json(result: ProfileResult) -> str:
    return json.dumps(result.to_dict(), indent=2, allow_nan=False, default=str) + "\n"


# ------------------------------------------------------------------------ table
def _memory_text(cfg: ConfigResult) -> tuple[str, str]:
    measured = cfg.memory.get("measured") or {}
    analytic = cfg.memory.get("analytic") or {}
    if cfg.device == "cuda":
        m = measured.get("max_allocated_bytes")
        a = analytic.get("total_bytes")
    else:  # the weights are resident before the forward: compare activations
        m = measured.get("peak_rss_growth_bytes")
        a = analytic.get("peak_activation_bytes")
    return ("-" if m is None else human_bytes(m)), ("-" if a is None else human_bytes(a))


def render_profile_table(result: ProfileResult, top: int = 10) -> str:
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=140, force_terminal=False, color_system=None)
    env = result.environment
    opts = result.options
    head = (f"{text(result.name)} · {opts.dtype} · "
            f"torch {env.get('torch_version', '?')} · "
            f"{env.get('threads', '?')} CPU threads (interop {env.get('interop_threads', '?')})")
    extras = [x for x, on in (("channels-last", opts.channels_last),
                              ("torch.compile", opts.compile),
                              ("cudnn.benchmark", opts.cudnn_benchmark)) if on]
    if extras:
        head += " · " + ", ".join(extras)
    lines = [f"Profile: {head}"]
    lines.append(_crosscheck_line(result.crosscheck))
    for dev, hw in result.hardware.items():
        threads = f", {hw.threads} threads" if hw.threads else ""
        kernel = "3x3 conv" if hw.peak_kernel == "conv2d" else "GEMM"
        lines.append(
            f"Hardware {dev} ({text(hw.name)}{threads}): "
            f"peak {human(hw.peak_flops, 'FLOP/s')} ({kernel}; GEMM n={hw.gemm_n}), "
            f"bandwidth {human(hw.peak_bandwidth, 'B/s')} (copy "
            f"{human_bytes(hw.copy_bytes)}), ridge {hw.ridge:.3g} FLOP/B"
            + (" [cached]" if hw.cached else " [measured now]"))
    for s in result.skipped:
        lines.append(f"Skipped {s['device']}: {text(s['reason'])}")
    console.print("\n".join(lines), highlight=False, markup=False)

    table = Table(title="Latency and throughput per configuration (whole model, no hooks)",
                  title_justify="left", header_style="bold")
    for title in ("Device", "Batch", "Median", "Min", "IQR", "Runs", "Samples/s", "MAC/s",
                  "% peak", "MAC/B", "Bound", "Memory", "Analytic"):
        table.add_column(title, justify="left" if title in ("Device", "Bound") else "right")
    for cfg in result.configs:
        lat = cfg.latency
        mem, ana = _memory_text(cfg)
        if cfg.status in ("oom", "error") or lat is None:
            table.add_row(*_cells(cfg.device, cfg.batch, cfg.status.upper(), "", "", "", "",
                                  "", "", "", "", mem, ana))
            continue
        runs = f"{lat.runs}×{lat.number}" if lat.number > 1 else str(lat.runs)
        if cfg.status == "interrupted":
            runs += " (int.)"
        roof = cfg.roof
        table.add_row(*_cells(cfg.device, cfg.batch, human_time(lat.median),
                              human_time(lat.min), human_time(lat.iqr), runs,
                              _count(cfg.throughput),
                              _rate(roof.macs_per_s if roof else None, ""),
                              _pct(roof.fraction_of_peak if roof else None),
                              _num(roof.intensity_mac_per_byte if roof else None),
                              (roof.bound if roof else None) or "-", mem, ana))
    console.print(table)
    notes = ["Memory: CUDA max_memory_allocated vs weights + buffers + peak activations; "
             "CPU peak RSS growth in one forward vs peak activations."]
    for cfg in result.configs:
        if cfg.error:
            notes.append(f"{cfg.label}: {cfg.status}: {text(cfg.error)}")
        for n in cfg.notes:
            notes.append(f"{cfg.label}: {text(n)}")
        comp = cfg.compile
        if comp and comp.get("ok"):
            notes.append(f"{cfg.label}: torch.compile took "
                         f"{human_time(comp.get('compile_s'))} (not timed)")
    console.print("\n".join(notes), highlight=False, markup=False)

    for cfg in result.configs:
        if cfg.per_layer is not None and cfg.per_layer.layers:
            _layers_table(console, cfg, cfg.per_layer, top)
    for w in result.warnings:
        console.print(f"Warning: {text(w)}", highlight=False, markup=False)
    if result.interrupted:
        console.print("Interrupted (Ctrl-C): showing what was measured.", highlight=False,
                      markup=False)
    return buf.getvalue()


def _crosscheck_line(cc: CrossCheckSummary | None) -> str:
    if cc is None:
        return "Cross-check: not run"
    if not cc.ran:
        return f"Cross-check: FAILED to run ({text(cc.error)})"
    if cc.ok:
        v = cc.verdicts or {}
        detail = (f"{v.get('match', 0)} match, {v.get('convention', 0)} differ by a documented "
                  "counting convention" if v else f"{cc.rows} rows")
        return f"Cross-check: ok (shapes, params, MACs vs PyTorch: {detail})"
    bad = cc.mismatches
    names = ", ".join(text(f"{m.layer} {m.metric}") for m in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    return f"Cross-check: MISMATCH in {len(bad)} row(s): {names}{more} (see --format json)"


def _layers_table(console, cfg: ConfigResult, pl: PerLayer, top: int) -> None:
    from rich.table import Table
    from rich.text import Text

    layers = pl.top(top)
    title = (f"Top {len(layers)} layers by time · {cfg.device} batch {cfg.batch}"
             + (" (eager module; the whole model was compiled)" if pl.eager else ""))
    table = Table(title=Text(title), title_justify="left", header_style="bold")
    for t in ("Layer", "Type", "Median", "Share", "MACs", "MAC/s", "MAC/B", "% peak",
              "% roofline", "Bound"):
        table.add_column(t, justify="left" if t in ("Layer", "Type", "Bound") else "right",
                         no_wrap=t == "Layer")
    for l in layers:
        r = l.roof
        table.add_row(*_cells(l.name, l.type, human_time(l.stats.median), _pct(l.share),
                              human(l.macs) if l.macs else "-",
                              _rate(r.macs_per_s, "") if l.macs else "-",
                              _num(r.intensity_mac_per_byte) if l.macs else "0",
                              _pct(r.fraction_of_peak) if l.macs else "-",
                              _pct(r.fraction_of_roofline), r.bound or "-"))
    console.print(table)
    plain = cfg.latency.median if cfg.latency is not None else None
    line = (f"Per-layer mode: hooked forward {human_time(pl.hooked.median)} vs "
            f"{human_time(plain)} plain (overhead {human_time(pl.overhead_s)}, "
            f"{_pct(pl.overhead_fraction)}); layers sum {human_time(pl.sum_of_layers_s)}, "
            f"between layers {human_time(pl.unattributed_s)}")
    if pl.untimed:
        line += f"; not timed: {', '.join(map(text, pl.untimed[:5]))}"
    console.print(line, highlight=False, markup=False)


# --------------------------------------------------------------------- progress
def make_progress(enabled: bool) -> Progress:
    """The rich bar on stderr when ``enabled`` and stderr is a terminal; else a no-op."""
    if not enabled or not sys.stderr.isatty():
        return Progress()
    return RichProgress()


class RichProgress(Progress):
    """A rich progress bar on stderr, refreshed between timed blocks only."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        self.bar = Bar(TextColumn("{task.description}"), BarColumn(),
                       TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                       console=Console(stderr=True), auto_refresh=False, transient=True)
        self.configs: Any = None
        self.inner: Any = None
        self.last = 0.0
        self.unit = "runs"

    def start(self, total_configs: int) -> None:
        self.bar.start()
        self.configs = self.bar.add_task("configurations", total=total_configs, detail="")
        self.inner = self.bar.add_task("", total=None, detail="")
        self._refresh(force=True)

    def config(self, label: str) -> None:
        self.bar.update(self.configs, detail=text(label))
        self._refresh(force=True)

    def phase(self, what: str, total: float | None, unit: str = "runs") -> None:
        self.unit = unit
        self.bar.reset(self.inner, total=total, description=f"  {what}", detail="")
        self._refresh(force=True)

    def advance(self, done: float) -> None:
        self.bar.advance(self.inner, done)
        task = self.bar.tasks[self.inner]
        total = f"/{task.total:g}" if task.total else ""
        self.bar.update(self.inner, detail=f"{task.completed:.3g}{total} {self.unit}")
        self._refresh()

    def config_done(self) -> None:
        self.bar.advance(self.configs, 1)
        self._refresh(force=True)

    def message(self, line: str) -> None:
        self.bar.console.print(text(line), highlight=False, markup=False)

    def stop(self) -> None:
        self.bar.stop()

    def _refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last > 0.1:
            self.last = now
            self.bar.refresh()
