"""`netcalc fit`: the largest batch whose memory fits a device, from the analytic model.

The memory of a step at batch ``b`` is the peak of the training step
(``training.peak_bytes``, netcalc.training) or, for inference, weights + buffers + the
inference peak of live activations. Every part is affine in ``b`` (activations grow
with the batch, weights do not) and the peak is the largest of a few such parts, so
the memory at each point where the step may peak (the analysis' timeline) is affine in
``b``; two analyses (batch 1 and 2) give every point's line and so the answer, which
is then confirmed at ``b + 1`` and ``b`` (a search takes over should the prediction
miss). The graph is built once: layers do not depend on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

from .analysis import Report, analyze_graph
from .dtypes import INT_BYTES, Dtypes, nbytes
from .graph import build
from .layers.base import TensorInfo
from .perf import paused_gc

if TYPE_CHECKING:
    from .spec import Spec
    from .training import TrainOptions

MAX_BATCH = 2**31  # a batch beyond any device: the search stops there


@dataclass
class FitResult:
    memory: int  # the budget, bytes
    batch: int | None  # the largest batch that fits; None when batch 1 does not
    needed: int  # memory of the step at `batch` (at batch 1 when nothing fits)
    needed_next: int | None  # at batch + 1: the first that does not fit
    report: Report  # the analysis at `batch` (at 1 when nothing fits)
    train: bool


def memory_curve(report: Report) -> list[int]:
    """Bytes a step needs at each point where it may peak: the training timeline, or
    weights + buffers + the inference timeline of live activations."""
    if report.train is not None:
        return [live for live, _ in report.timelines["training"]]
    t = report.totals
    int_buffers = sum(n.layer.int_buffers() for n in report.graph.nodes) if report.graph else 0
    float_buffers = sum(r.buffers for r in report.layers) - int_buffers
    # buffers (running statistics, tables) are kept at the compute (activation) dtype
    buffer_bytes = nbytes(float_buffers, report.dtypes.activation) + int_buffers * INT_BYTES
    base = t.weight_bytes + buffer_bytes
    return [base + live for live, _ in report.timelines["inference"]]


def memory_of(report: Report) -> int:
    """Bytes a step needs: the training peak, or weights + buffers + inference peak."""
    return max(memory_curve(report))


@paused_gc()
def fit_batch(spec: "Spec", memory: int, *, dtype: "str | Dtypes" = "float32",
              input_shapes: dict[str, tuple[int, ...]] | None = None,
              train: "TrainOptions | None" = None) -> FitResult:
    graph = build(spec, 1, input_shapes)  # layers do not depend on the batch: build once
    reports: dict[int, Report] = {}
    last: list[int] = []  # the batch the graph's layers were last analysed at

    def at(batch: int) -> Report:
        if batch not in reports:
            inputs = {k: TensorInfo((batch, *t.shape[1:]), t.dtype)
                      for k, t in graph.inputs.items()}
            reports[batch] = analyze_graph(replace(graph, inputs=inputs), dtype, train)
            last[:] = [batch]
        return reports[batch]

    def need(batch: int) -> int:
        return memory_of(at(batch))

    if need(1) > memory:
        return FitResult(memory, None, need(1), None, at(1), train is not None)
    best = _predicted(memory_curve(at(1)), memory_curve(at(2)), memory)
    if not (best and (best == MAX_BATCH or need(best + 1) > memory) and need(best) <= memory):
        best = _largest(need, memory)
    nxt = need(best + 1) if best < MAX_BATCH else None
    if last != [best]:  # the report's graph holds the shapes of its own batch
        reports.pop(best)
    return FitResult(memory, best, need(best), nxt, at(best), train is not None)


def _predicted(one: list[int], two: list[int], memory: int) -> int | None:
    """The largest batch that fits when every point of the curve is affine in the batch
    (it is: activations grow with the batch, weights and states do not), from the
    curves at batch 1 and 2; None when the curves do not line up."""
    if len(one) != len(two):
        return None
    best = MAX_BATCH
    for m1, m2 in zip(one, two):
        slope, fixed = m2 - m1, 2 * m1 - m2
        if slope > 0:
            best = min(best, (memory - fixed) // slope)
    return best if best >= 1 else None


def _largest(need: Callable[[int], int], memory: int) -> int:
    """The largest batch b with need(b) <= memory, given need(1) <= memory and need
    increasing (piecewise affine): extrapolate from batch 1 and 2, then interpolate
    between the largest batch known to fit and the smallest known not to (exact on an
    affine piece), bisecting when interpolation stalls."""
    lo, hi = 1, None  # need(lo) <= memory < need(hi)
    a, b = 1, 2
    while hi is None:  # extrapolate (doubling the reach when memory is not affine)
        if need(b) > memory:
            hi = b
            break
        lo = b
        slope = (need(b) - need(a)) / (b - a)
        guess = MAX_BATCH if slope <= 0 else int(b + (memory - need(b)) / slope)
        guess = min(MAX_BATCH, max(guess, 2 * b - a, b + 1))
        if b == MAX_BATCH:
            return b
        a, b = b, guess
    while hi - lo > 1:
        # interpolate, and check the neighbour: an affine piece ends here
        guess = lo + (memory - need(lo)) * (hi - lo) // (need(hi) - need(lo))
        guess = min(max(guess, lo + 1), hi - 1)
        if need(guess) <= memory:
            lo = guess
            if guess + 1 < hi and need(guess + 1) > memory:
                return guess
        else:
            hi = guess
            if guess - 1 > lo and need(guess - 1) <= memory:
                return guess - 1
        if hi - lo > 1:  # then halve what is left, so a curved piece costs log2 steps
            mid = (lo + hi) // 2
            if need(mid) <= memory:
                lo = mid
            else:
                hi = mid
    return lo
