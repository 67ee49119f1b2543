"""Cross-check: every analytic number of a spec against the built PyTorch model.

    from netcalc.torch.crosscheck import crosscheck
    result = crosscheck("specs/resnet50.yaml")
    result.ok            # False if any row is a MISMATCH
    result.mismatches    # the rows that disagree, each naming its layer

What is compared, per layer node (the module at the node's report name) and in total:

``shape``
    every output's shape, from a real forward pass (forward hooks; on ``meta``
    nothing is computed or allocated);
``params``, ``trainable``, ``buffers``
    exact element counts of the module's parameters (each Parameter counted once,
    on the first layer that holds it: ``tie:`` shares it), those with
    ``requires_grad``, and its buffers;
``fvcore``
    ``fvcore.nn.FlopCountAnalysis(model, inputs).by_module()[name]`` (one fused
    multiply-add = 1), skipped on ``meta`` (fvcore's jit trace cannot run there);
``flopcounter``
    ``torch.utils.flop_counter.FlopCounterMode`` per module (2 per MAC);
``torchinfo``
    torchinfo's Mult-Adds (the sum over the leaf modules below the layer), when
    torchinfo is installed;
``rf``
    the receptive field, measured: see :func:`netcalc.torch.rf_probe.empirical_rf`.

The MAC rows compare netcalc's count under the chosen ``convention`` (expressed
in the tool's unit) with the tool's number. Equal: ``match``. Different, but the
tool's own documented rule (:mod:`netcalc.conventions`) gives exactly the tool's
number: ``convention`` (the rule is named). Anything else: ``MISMATCH``.

Protocol (what "the tool's number" means): the model in ``eval()`` mode, float32,
inference under ``torch.no_grad()``, with
``torch.backends.mha`` fast paths disabled (the fused inference kernels of
MultiheadAttention/TransformerEncoderLayer hide their products from every
counter; under autograd torch never takes them either).

This module runs the check; the result types are :mod:`netcalc.results` (torch-free),
the tools' counts :mod:`netcalc.torch.counters`, the receptive-field probe
:mod:`netcalc.torch.rf_probe`. Their names stay importable from here.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import conventions
from ..analysis import Report
from ..errors import SpecError
from ..graph import Graph
from ..results import (  # noqa: F401 - the result types, importable from here as before
    CONVENTION, MATCH, METRICS, MISMATCH, OPAQUE, SKIPPED, TOOLS, CheckRow, CrossCheckResult,
)
from ..spec import Spec
from . import guard
from .build import NetcalcModule, _module_of, adopt, inputs_for, prepare
from .counters import (  # noqa: F401 - importable from here as before
    LayerFailed, count_flopcounter, count_fvcore, count_torchinfo, counting_mode, observe,
    owned_counts, torchinfo_available, versions,
)
from .rf_probe import empirical_rf  # noqa: F401


def crosscheck(spec: str | Path | Spec | Graph, *, batch: int = 1, device: str = "cpu",
               convention: str = "netcalc", input_shapes: dict[str, tuple[int, ...]] | None = None,
               tools: tuple[str, ...] = TOOLS, rf: bool | None = None, seed: int = 0,
               module: nn.Module | None = None) -> CrossCheckResult:
    """Compare every analytic number of ``spec`` with PyTorch (see the module docstring).

    ``device="meta"`` checks shapes, params, buffers and the FLOP counter without
    allocating weights (large models); fvcore and the receptive field need real
    tensors and are skipped there. A model too large for the memory this process can
    get (free RAM, ``ulimit -v``, the cgroup's limit), or that runs out of it, is
    checked on meta (``result.device``; the reason is in ``skipped``). ``rf=None``
    measures receptive fields when the device is not meta.

    What torch cannot take -- a device this machine lacks, an argument beyond int64 or
    NaN, a tensor too large to index, any error torch raises outside a layer's forward
    -- is a :class:`SpecError` of one line. A layer whose forward raises is a MISMATCH
    (torch disagrees with the analysis, which accepted it).
    """
    conventions.get(convention)  # validates the name
    guard.check_device(str(device))
    graph, report = prepare(spec, batch=batch, input_shapes=input_shapes)
    guard.check_domain(graph, batch, input_shapes)
    dev = str(device)
    fallback = _too_big(report, dev) if dev != "meta" and module is None else None
    try:
        return _check(graph, report, "meta" if fallback else dev, fallback, convention, tools,
                      rf, seed, module)
    except (*guard.TORCH_ERRORS, MemoryError) as exc:
        if fallback or dev == "meta" or module is not None or not guard.is_out_of_memory(exc):
            raise SpecError(f"torch cannot check this spec: {guard.one_line(exc)}") from exc
        why = guard.one_line(exc)
    # outside the handler, so the failed attempt's tensors are freed before the retry
    return _check(graph, report, "meta", f"device: {dev} ran out of memory ({why}): checked "
                  "on the meta device instead", convention, tools, rf, seed)


def _check(graph: Graph, report: Report, dev: str, fallback: str | None, convention: str,
           tools: tuple[str, ...], rf: bool | None, seed: int,
           module: nn.Module | None = None) -> CrossCheckResult:
    meta = dev == "meta"
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = (_module_of(graph, device=dev) if module is None else adopt(graph, module)).eval()
    inputs = inputs_for(graph, device=dev, generator=gen)
    result = CrossCheckResult(report.name, report.file, report.batch, dev, convention, [], [],
                              versions=versions(tools))
    if fallback:
        result.skipped.append(fallback)
    lines = {n.name: n.mark.line for n in graph.nodes}
    types = {n.name: n.type for n in graph.nodes}

    def add(name: str, metric: str, analytic: Any, actual: Any, verdict: str | None = None,
            rule: str = "") -> None:
        if verdict is None:
            verdict = MATCH if analytic == actual else MISMATCH
        result.rows.append(CheckRow(name, types[name], metric, analytic, actual, verdict, rule,
                                    lines[name]))

    # shapes
    try:
        shapes = observe(model, inputs)
    except LayerFailed as exc:  # nothing after this layer ran: it is the one finding
        r = next(r for r in report.layers if r.name == exc.layer)
        add(exc.layer, "shape", [list(s) for s in r.output_shapes],
            f"raises {type(exc.cause).__name__}: {guard.one_line(exc.cause)}", MISMATCH,
            "the forward pass stopped here; nothing after it was compared")
        return result
    for r in report.layers:
        add(r.name, "shape", [list(s) for s in r.output_shapes],
            [list(s) for s in shapes.get(r.name, [])[: max(len(r.output_shapes), 1)]])
    # params, trainable, buffers
    owned = owned_counts(model)
    for r in report.layers:
        p, t, b = owned[r.name]
        add(r.name, "params", r.params, p)
        add(r.name, "trainable", r.trainable_params, t)
        add(r.name, "buffers", r.buffers, b)
    totals = report.totals
    all_params = list(model.parameters())
    result.totals += [
        _total("output shapes", [list(report.outputs[n]) for n in model.output_names],
               _output_shapes(model, inputs)),
        _total("params", totals.params, sum(p.numel() for p in all_params)),
        _total("trainable", totals.trainable_params,
               sum(p.numel() for p in all_params if p.requires_grad)),
        _total("buffers", totals.buffers, sum(b.numel() for b in model.buffers())),
    ]
    # MACs, each tool against netcalc's number under `convention`, in the tool's unit
    counters = {"fvcore": count_fvcore, "flopcounter": count_flopcounter,
                "torchinfo": count_torchinfo}
    for tool in tools:
        if tool == "fvcore" and meta:
            result.skipped.append("fvcore: its jit trace cannot run on the meta device")
            continue
        if tool == "torchinfo" and not torchinfo_available():
            result.skipped.append("torchinfo: not installed")
            continue
        try:
            per, total = counters[tool](model, inputs)
        except Exception as exc:  # a tool that cannot run the model is a finding, not a crash
            result.totals.append(CheckRow("TOTAL", "", tool, "runs",
                                          f"fails: {guard.one_line(exc)}",
                                          MISMATCH, f"{tool} could not count this model"))
            continue
        _compare_counts(result, report, convention, tool, per, total, add, torch_context(dev))
    # receptive fields
    if rf is None:
        rf = not meta
    if meta:
        result.skipped.append("rf: measured on real tensors only (not on the meta device)")
    elif rf:
        result.rows += empirical_rf(graph, report, seed=seed, skipped=result.skipped)
    return result


def torch_context(device: str, dtype: str = "float32") -> conventions.Context:
    """The convention context of this torch build: device type and oneDNN."""
    onednn = bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)
    return conventions.Context(torch.device(device).type, onednn, dtype)


def _too_big(report: Report, device: str) -> str | None:
    """Why the float32 model cannot be allocated on this CPU (then: checked on meta).

    The estimate is compared with what this process can get, which under ``ulimit -v``
    or in a container is far less than the machine's free RAM; 0.6 leaves room for the
    tools' copies and the allocator's arenas."""
    if torch.device(device).type != "cpu":
        return None
    room = guard.allocatable()
    if room is None:  # pragma: no cover - not POSIX
        return None
    avail, limit = room
    t = report.totals
    need = t.weight_bytes + t.buffers * 4 + t.peak_activation_bytes + t.input_bytes
    if need <= avail * 0.6:
        return None
    return (f"device: the float32 model needs about {need / 1e9:.1f} GB and {limit} leaves "
            f"{avail / 1e9:.1f} GB: checked on the meta device instead (shapes, params, "
            "buffers, FLOP counter, torchinfo; no fvcore, no receptive fields)")


def _compare_counts(result: CrossCheckResult, report: Report, convention: str, tool: str,
                    per: dict[str, int], total: int, add, ctx: conventions.Context) -> None:
    mine = conventions.get(convention)
    theirs = conventions.get(tool)
    unit = theirs.scale  # tool units per MAC-unit of the convention tables
    sum_mine = sum_theirs = 0
    opaque = 0
    for r in report.layers:
        layer = report.graph.by_name[r.name].layer if report.graph else None
        if r.macs is None:
            opaque += 1
            add(r.name, tool, None, per.get(r.name, 0), OPAQUE, "MACs unknown to netcalc")
            continue
        a, _ = mine.layer_count(r, layer, ctx)
        t, rule = theirs.layer_count(r, layer, ctx)
        a_tool = _in_unit(a, mine.scale, unit)  # expressed in the tool's unit
        t_tool = _in_unit(t, theirs.scale, unit)
        sum_mine += a_tool
        sum_theirs += t_tool
        actual = per.get(r.name, 0)
        if a_tool == actual:
            add(r.name, tool, a_tool, actual, MATCH)
        elif t_tool == actual:
            add(r.name, tool, a_tool, actual, CONVENTION, rule.id)
        else:
            add(r.name, tool, a_tool, actual, MISMATCH,
                f"{tool} rule {rule.id} predicts {t_tool:,}")
    if opaque:
        verdict, rule = OPAQUE, f"includes {opaque} Opaque layer(s): unknown to netcalc"
        sum_mine = None
    elif sum_mine == total:
        verdict, rule = MATCH, ""
    elif sum_theirs == total:
        verdict, rule = CONVENTION, f"{tool} convention (sum of its per-layer rules)"
    else:
        verdict, rule = MISMATCH, f"{tool} rules predict {sum_theirs:,}"
    result.totals.append(CheckRow("TOTAL", "", tool, sum_mine, total, verdict, rule))


def _in_unit(count: int, scale: int, unit: int) -> int:
    """A count made with ``scale`` units per MAC, expressed with ``unit`` per MAC."""
    return count * unit // scale if (count * unit) % scale == 0 else Fraction(count * unit, scale)


def _total(metric: str, analytic: Any, actual: Any) -> CheckRow:
    return CheckRow("TOTAL", "", metric, analytic, actual, MATCH if analytic == actual else MISMATCH)


def _output_shapes(model: NetcalcModule, inputs: tuple[torch.Tensor, ...]) -> list[list[int]]:
    with counting_mode():
        out = model(*inputs)
    outs = list(out) if isinstance(out, tuple) else [out]
    return [list(t.shape) for t in outs]
