"""The training cross-check (``netcalc verify SPEC --train``): the training analysis
against one real training step (:mod:`netcalc.torch.trainstep`).

Rows, per layer and in total, with the verdicts of :mod:`netcalc.torch.crosscheck`:

``backward_flops``
    netcalc's ``backward_flops`` under the chosen convention against FlopCounterMode's
    count of ``loss.backward()``, attributed to the layer whose autograd nodes ran; a
    difference that the ``flopcounter`` convention's backward rule (plus, for a
    checkpointed layer, its recomputed forward) reproduces exactly is ``convention``;
``saved_bytes``
    bytes of the storages autograd keeps that this layer is the first to keep: exact;
``optimizer_bytes`` (total)
    the tensors in ``optimizer.state`` after one step: exact;
``peak_bytes`` (total)
    the analysis' ``training.peak_bytes`` against the largest set of live storages of
    the step: within :data:`PEAK_TOLERANCE`; on CUDA also ``torch.cuda.max_memory_allocated``.

A model whose training step would not fit this machine's free memory is checked on a
scaled-down copy (:func:`scaled_down`) and the result says so.
"""

from __future__ import annotations

import os
from pathlib import Path

from .. import conventions
from ..analysis import Report, analyze_graph
from ..graph import Graph
from ..graph import build as build_graph
from ..layers.base import INT
from ..spec import Spec
from ..spec import load as load_spec
from ..training import TrainOptions, checkpoint_regions, layer_grads
from ..yamlsafe import LList, LMap
from ..results import CONVENTION, MATCH, MISMATCH, CheckRow, CrossCheckResult
from .counters import versions
from .crosscheck import torch_context
from .trainstep import StepMeasurement, measure_step

PEAK_TOLERANCE = 0.05
MEMORY_SHARE = 0.5  # of this machine's free memory a checked step may need


def crosscheck_training(spec: str | Path | Spec, train: TrainOptions, *, batch: int = 1,
                        convention: str = "netcalc",
                        input_shapes: dict[str, tuple[int, ...]] | None = None,
                        seed: int = 0) -> CrossCheckResult:
    """Prove the training analysis of ``spec`` against one real step on ``train.device``."""
    conv = conventions.get(convention)
    if conv.name not in ("netcalc", "flopcounter"):
        raise ValueError(f"--convention {convention} counts no backward (netcalc | flopcounter)")
    spec = spec if isinstance(spec, Spec) else load_spec(spec)
    report, note = _fitting_report(spec, train, batch, input_shapes)
    step = measure_step(report.graph, device=train.device, optimizer=train.optimizer,
                        precision=report.sections["training"]["precision"],
                        checkpoint=_regions(report), loss=train.loss, seed=seed)
    result = CrossCheckResult(report.name, report.file, report.batch, step.device, convention,
                              [], [], versions=versions(("flopcounter",)))
    if note:
        result.skipped.append(note)
    _compare(result, report, train, conv, step)
    return result


# ============================================================================ the rows
def _compare(result: CrossCheckResult, report: Report, train: TrainOptions,
             conv: conventions.Convention, step: StepMeasurement) -> None:
    graph = report.graph
    ctx = torch_context(step.device, _dtype(report))
    fc = conventions.get("flopcounter")
    grads = layer_grads(report)
    regions = set(_region_layers(report))
    sums = {"mine": 0, "rule": 0}
    for row, g, node in zip(report.layers, grads, graph.nodes):
        layer = node.layer
        mine = rule_count = 0
        rule = fc.backward_rule(row.type)
        if g is not None:
            mine = row.backward_flops if conv.name == "netcalc" else rule.count(layer, g, ctx)
            rule_count = rule.count(layer, g, ctx)
        if row.name in regions:  # FlopCounterMode sees the recomputed forward in backward
            rule_count += fc.count(layer, ctx)[0]
            mine += fc.count(layer, ctx)[0] if conv.name == "flopcounter" else 0
        sums["mine"] += mine
        sums["rule"] += rule_count
        actual = step.backward_flops.get(row.name, 0)
        _add(result, row, "backward_flops", mine, actual, rule_count, rule.id)
        _add(result, row, "saved_bytes", row.saved_bytes, step.saved.get(row.name, 0))
    for name, flops in step.backward_flops.items():  # ops no layer ran (e.g. the loss)
        if name not in graph.by_name and flops:
            result.rows.append(CheckRow(name or "(outside the layers)", "", "backward_flops",
                                        0, flops, MISMATCH, "FLOPs outside every layer"))
    t = report.totals
    section = report.sections["training"]
    result.totals += [
        _total("backward_flops", sums["mine"], step.backward_flops_total, sums["rule"],
               "flopcounter backward rules"),
        _total("saved_bytes", t.saved_activation_bytes, step.saved_total),
        _total("optimizer_bytes", section["optimizer_bytes"], step.optimizer_bytes),
        _within("peak_bytes", section["peak_bytes"], step.peak_bytes,
                "largest set of live storages"),
    ]
    if step.cuda_peak_bytes is not None:
        result.totals.append(_within("cuda_peak_bytes", section["peak_bytes"],
                                     step.cuda_peak_bytes, "torch.cuda.max_memory_allocated"))
    result.skipped += step.notes


def _add(result: CrossCheckResult, row, metric: str, analytic: int, actual: int,
         rule_count: int | None = None, rule_id: str = "") -> None:
    if analytic == actual:
        verdict, rule = MATCH, ""
    elif rule_count == actual:
        verdict, rule = CONVENTION, rule_id
    else:
        verdict, rule = MISMATCH, ""
    result.rows.append(CheckRow(row.name, row.type, metric, analytic, actual, verdict, rule,
                                row.line))


def _total(metric: str, analytic: int, actual: int, rule_count: int | None = None,
           rule: str = "") -> CheckRow:
    if analytic == actual:
        return CheckRow("TOTAL", "", metric, analytic, actual, MATCH)
    verdict = CONVENTION if rule_count == actual else MISMATCH
    return CheckRow("TOTAL", "", metric, analytic, actual, verdict,
                    rule if verdict == CONVENTION else "")


def _within(metric: str, analytic: int, actual: int, what: str) -> CheckRow:
    ok = abs(analytic - actual) <= PEAK_TOLERANCE * actual
    off = (analytic - actual) / actual if actual else 0.0
    return CheckRow("TOTAL", "", metric, analytic, actual, MATCH if ok else MISMATCH,
                    f"{what}; {off:+.1%}, tolerance ±{PEAK_TOLERANCE:.0%}")


# ============================================================================ helpers
def _dtype(report: Report) -> str:
    return "bfloat16" if report.sections["training"]["precision"] == "bf16" else "float32"


def _regions(report: Report) -> tuple[str, ...]:
    return tuple(checkpoint_regions(report))


def _region_layers(report: Report) -> list[str]:
    prefixes = _regions(report)
    return [r.name for r in report.layers
            if any(r.name == p or r.name.startswith(p + ".") for p in prefixes)]


def _fitting_report(spec: Spec, train: TrainOptions, batch: int,
                    input_shapes: dict[str, tuple[int, ...]] | None) -> tuple[Report, str]:
    """The report of ``spec``, or of a scaled-down copy when its step would not fit."""
    report = _analyze(spec, train, batch, input_shapes)
    need = report.sections["training"]["peak_bytes"]
    budget = _free_bytes() * MEMORY_SHARE
    if train.device != "cpu" or need <= budget:
        return report, ""
    small, how = scaled_down(spec, report, batch)
    shapes = {**(input_shapes or {}), **(how["inputs"] or {})} or None  # keep the caller's
    how["inputs"] = shapes
    report = _analyze(small, train, 1, shapes)
    note = (f"scaled down: the step needs about {need / 1e9:.1f} GB, {budget / 1e9:.1f} GB "
            f"may be used here; checked with {', '.join(how['what'])}")
    if report.sections["training"]["peak_bytes"] > budget:
        note += " (still large)"
    return report, note


def _analyze(spec: Spec, train: TrainOptions, batch: int,
             input_shapes: dict[str, tuple[int, ...]] | None) -> Report:
    graph: Graph = build_graph(spec, batch, input_shapes)
    return analyze_graph(graph, "float32", train.validate())


def scaled_down(spec: Spec, report: Report, batch: int) -> tuple[Spec, dict]:
    """A copy of ``spec`` with every top-level ``repeat`` cut to 1 and token-sequence
    inputs cut to 16 positions; the batch becomes 1."""
    what = []
    layers = LList()
    layers.mark, layers.marks = spec.layers.mark, spec.layers.marks
    for item in spec.layers:
        if isinstance(item, LMap) and isinstance(item.get("repeat"), int) and item["repeat"] > 1:
            copy = LMap(item)
            copy.mark, copy.key_marks, copy.value_marks = item.mark, item.key_marks, \
                item.value_marks
            copy["repeat"] = 1
            what.append(f"{item.get('name', 'an entry')} repeated once (not {item['repeat']})")
            item = copy
        layers.append(item)
    inputs = {}
    for name, t in report.graph.inputs.items():
        if t.dtype == INT and len(t.shape) == 2 and t.shape[1] > 16:
            inputs[name] = (16,)
            what.append(f"{name} of 16 positions (not {t.shape[1]})")
    if batch > 1:
        what.append(f"batch 1 (not {batch})")
    small = Spec(spec.file, spec.name, spec.inputs, spec.blocks, layers, spec.outputs,
                 None, None, spec.raw, spec.tokens)
    return small, {"inputs": inputs or None, "what": what or ["batch 1"]}


def _free_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 1 << 62


__all__ = ["PEAK_TOLERANCE", "crosscheck_training", "scaled_down"]
