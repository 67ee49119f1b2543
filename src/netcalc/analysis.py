"""Graph -> analysis results: plain data for the renderers and for scripts.

One pass in graph order: each node's layer infers its output shapes from its
inputs, then reports params, buffers, MACs, FLOPs, receptive field and memory. The
registered report sections (:mod:`netcalc.sections`: training, sequence models) then
add their per-layer figures and their own data. Totals are sums of the per-layer
rows (tied weights are counted once, on the layer that owns them), so every report's
rows add up to its totals. Which figures exist is declared in :mod:`netcalc.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from math import prod
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NoReturn

from . import sections
from .dtypes import INT_BYTES, Dtypes, nbytes
from .errors import SpecError
from .graph import Graph, Node, Ref
from .layers.base import INT, MAX_NUMEL, TensorInfo
from .metrics import METRICS, SUMMED, total
from .perf import paused_gc
from .rf import RF
from .rfgrowth import rf_growth

if TYPE_CHECKING:
    from .training import TrainOptions


def _metric_fields(cls: type, rows: bool) -> type:
    """Make ``cls`` a dataclass with a field per metric of netcalc.metrics (after its own
    fields): 0, or None for metrics that only some reports carry (training, pruning)."""
    notes = dict(cls.__dict__.get("__annotations__", {}))
    for m in METRICS:
        if rows and not m.row:
            continue
        name = m.name if rows else m.key
        optional = m.training or (rows and m.fallback is not None)
        notes[name] = "int | None" if optional else "int"
        setattr(cls, name, None if optional else 0)
    cls.__annotations__ = notes
    return dataclass(cls)


class LayerResult:
    """One row of the report: a layer's shapes, receptive field and metrics."""

    name: str
    type: str
    sources: list[str]
    shape: tuple[int, ...]
    rf: RF | None
    line: int
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    tied_to: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # + one field per row metric (netcalc.metrics): params, macs, ..., saved_bytes


LayerResult = _metric_fields(LayerResult, rows=True)  # type: ignore[misc]


class Totals:
    """One field per metric (netcalc.metrics), named by its total."""


Totals = _metric_fields(Totals, rows=False)  # type: ignore[misc]


def sum_rows(rows: list[LayerResult], base: Totals | None = None) -> Totals:
    """Totals whose summed metrics are the sums of the rows (a row without a value of
    its own counts its metric's fallback); the other totals are kept from ``base``."""
    totals = Totals() if base is None else replace(base)
    for m in SUMMED:
        values = list(map(attrgetter(m.name), rows))
        if m.fallback is not None:
            missing = values.count(None)
            if missing == len(values):  # the common case (no pruning, no experts)
                values = list(map(attrgetter(m.fallback), rows))
            elif missing:
                values = [getattr(r, m.fallback) if v is None else v
                          for v, r in zip(values, rows)]
        elif m.training and values.count(None) == len(values):
            continue
        setattr(totals, m.key, total(values) if m.unknowable else sum(values))
    return totals


@dataclass
class Report:
    """The analysis of one spec: rows, totals, sections, and the graph they came from."""

    name: str
    file: str
    batch: int
    dtype: str  # the --dtype; dtypes has the weights', activations' and KV cache's
    inputs: dict[str, tuple[int, ...]]
    layers: list[LayerResult]
    outputs: dict[str, tuple[int, ...]]
    totals: Totals
    containers: dict[str, str] = field(default_factory=dict)
    sections: dict[str, Any] = field(default_factory=dict)  # e.g. "sequence" for LMs
    graph: Graph | None = field(default=None, repr=False, compare=False)
    #: training options (netcalc.training) when the report covers a training step
    train: "TrainOptions | None" = None
    #: live bytes over time, where they may peak: "inference" (after each layer) and,
    #: with training, "training" (forward, loss, backward, optimizer step), each point
    #: (bytes, where); not in the JSON
    timelines: dict[str, list[tuple[int, str]]] = field(default_factory=dict, repr=False,
                                                        compare=False)
    dtypes: Dtypes = field(default_factory=Dtypes)
    #: the receptive field of every tensor of the graph (a row holds its first output's)
    fields: "dict[Ref, RF | None]" = field(default_factory=dict, repr=False, compare=False)

    @cached_property
    def rf_growth(self) -> dict[str, list[tuple[str, RF]]]:
        """Receptive-field growth along the path that sets each output's field
        (netcalc.rfgrowth); outputs without a field (token models) are left out. Made
        when first asked (the HTML report): shapes and check do not need it."""
        return rf_growth(self.graph, self.fields) if self.graph is not None else {}


def tensor_bytes(t: TensorInfo, dtype: str) -> int:
    """Bytes of an activation tensor: token ids are int64 whatever the dtype."""
    return t.numel * INT_BYTES if t.dtype == INT else nbytes(t.numel, dtype)


def input_field(t: TensorInfo) -> RF | None:
    """Spatial inputs (C, *spatial) of floats start with a 1-pixel field per spatial dim."""
    if t.dtype == INT or len(t.shape) < 3:
        return None
    return RF.identity(len(t.shape) - 2)


@paused_gc()
def analyze_graph(graph: Graph, dtype: "str | Dtypes" = "float32",
                  train: "TrainOptions | None" = None) -> Report:
    """``dtype``: one dtype for everything, or the report's :class:`Dtypes`."""
    dtypes = Dtypes.of(dtype)
    act = dtypes.activation
    values: dict[Ref, TensorInfo] = {Ref(n): t for n, t in graph.inputs.items()}
    fields: dict[Ref, RF | None] = {Ref(n): input_field(t) for n, t in graph.inputs.items()}
    rows: list[LayerResult] = []
    ref = tuple.__new__  # Ref(name, i) without NamedTuple's Python __new__ (10^4 nodes)
    seen: dict[tuple, tuple[dict[str, Any], dict[str, Any]]] = {}
    try:
        for node in graph.nodes:
            ins = [values.get(s) or _missing(graph, s, node) for s in node.sources]
            layer = node.layer
            key = _repeat_key(node, ins)
            hit = seen.get(key) if key is not None else None
            if hit is None:
                outs = layer.infer(ins)
                row = _row(graph, node, outs, dtypes)
                if key is not None:
                    seen[key] = (_state(layer), dict(row.__dict__))
            else:  # the same layer on the same inputs: its state and counts again
                state, counts = hit
                layer.__dict__.update(state)
                layer.inputs, layer.outputs = list(ins), list(state["outputs"])
                outs = layer.outputs
                row = object.__new__(LayerResult)
                row.__dict__.update(counts)
                row.name, row.sources, row.line = (node.name, [str(s) for s in node.sources],
                                                   node.mark.line)
                row.output_shapes, row.extra = list(row.output_shapes), dict(row.extra)
            rfs = layer.output_fields([fields[s] for s in node.sources])
            row.rf = rfs[0]
            for i, t in enumerate(outs):
                k = ref(Ref, (node.name, i))
                values[k] = t
                fields[k] = rfs[i]
            rows.append(row)
        for name, ref in graph.outputs:
            if ref not in values:
                n = len(graph.by_name[ref.node].layer.outputs)
                raise SpecError(f"outputs: {name!r}: {ref.node!r} has {n} output(s)")
    except SpecError as err:
        raise err.located(graph.spec.file) from None
    totals = Totals()
    totals.input_bytes = sum(tensor_bytes(t, act) for t in graph.inputs.values())
    timeline = _timeline(graph, rows, act)
    totals.peak_activation_bytes = max(live for live, _ in timeline)
    report = Report(
        name=graph.spec.name,
        file=graph.spec.file,
        batch=next(iter(graph.inputs.values())).shape[0],
        dtype=dtypes.dtype,
        inputs={n: t.shape for n, t in graph.inputs.items()},
        layers=rows,
        outputs={name: values[ref].shape for name, ref in graph.outputs},
        totals=totals,
        containers=graph.containers,
        graph=graph,
        train=train,
        timelines={"inference": timeline},
        dtypes=dtypes,
        fields=fields,
    )
    try:
        for s in sections.SECTIONS:
            s.rows(report)
        report.totals = sum_rows(rows, totals)
        for s in sections.SECTIONS:
            data = s.section(report)
            if data is not None:
                report.sections[s.name] = data
    except SpecError as err:
        raise err.located(graph.spec.file) from None
    return report


def _repeat_key(node: Node, ins: list[TensorInfo]) -> tuple | None:
    """What a layer's shapes and counts depend on: its type, its arguments as given and
    its inputs (and how the spec marks the node: frozen, pruned). A 10^4-layer spec
    repeats a few such keys; each is analysed once. None where the rules read more (a
    tied weight, a layer holding a block's graph) or an argument is a list."""
    layer = node.layer
    given = layer.given
    if given is None or node.tie is not None or layer.BLOCK_ARGS:
        return None
    return (type(layer), given, node.trainable, node.sparsity, node.sparsity_inherited, *ins)


def _state(layer: Any) -> dict[str, Any]:
    """A layer's attributes after its analysis, but where it comes from (its context)."""
    return {k: v for k, v in layer.__dict__.items() if k != "ctx"}


def _missing(graph: Graph, ref: Ref, node: Node) -> NoReturn:
    """``x:k`` past the outputs of a layer whose count follows from its input (Split by
    size): an error located at the reader."""
    n = len(graph.by_name[ref.node].layer.outputs)
    raise node.layer.fail(f"{ref.node!r} has {n} output(s) (0 to {n - 1}), not {ref.out}",
                          "from")


def _row(graph: Graph, node: Node, outs: list[TensorInfo], dtypes: Dtypes) -> LayerResult:
    layer = node.layer
    params = layer.params()
    if params > MAX_NUMEL:
        raise layer.fail(f"{params:,} parameters: more than 2**60 (torch cannot size its storage)")
    tied_to = None
    if node.tie is not None:
        owner = graph.by_name[node.tie].layer
        mine, theirs = layer.weight_shape(), owner.weight_shape()
        if mine is None or mine != theirs:
            raise layer.fail(f"tie: weight shape {list(mine or ())} differs from "
                             f"{node.tie}'s {list(theirs or ())}")
        params -= prod(mine)  # shared weights count once, on their owner
        tied_to = node.tie
    macs = layer.macs()
    nonzero_params = nonzero_macs = None
    w = layer.weight_shape() if node.sparsity is not None else None
    if node.sparsity is not None and w is None and not node.sparsity_inherited:
        raise layer.fail(f"sparsity: {node.type} has no weight to prune")
    if node.sparsity is not None and w is not None:
        pruned = round(prod(w) * node.sparsity)
        nonzero_params = params - pruned
        # MACs scale with the kept weights
        nonzero_macs = None if macs is None else macs - round(macs * node.sparsity)
    return LayerResult(
        name=node.name,
        type=node.type,
        sources=[str(s) for s in node.sources],
        shape=outs[0].shape,
        output_shapes=[t.shape for t in outs],
        params=params,
        trainable_params=params if node.trainable else 0,
        buffers=layer.buffers(),
        macs=macs,
        flops=layer.flops(macs),
        activation_bytes=0 if layer.HELD else sum(tensor_bytes(t, dtypes.activation)
                                                  for t in outs),
        # a layer's parameters are stored as one packed tensor (int4: whole bytes)
        weight_bytes=dtypes.weight_bytes(params),
        rf=None,  # set by the caller
        line=node.mark.line,
        tied_to=tied_to,
        nonzero_params=nonzero_params,
        nonzero_macs=nonzero_macs,
        active_params=layer.active_params(),
        extra=layer.extras(),
    )


def _timeline(graph: Graph, rows: list[LayerResult], dtype: str) -> list[tuple[int, str]]:
    """Bytes of tensors alive after each layer when running the graph in order
    (inference); the peak is the largest."""
    last_use: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for s in node.sources:
            last_use[s.node] = i
    for _, ref in graph.outputs:
        last_use[ref.node] = len(graph.nodes)
    size: dict[str, int] = {n: tensor_bytes(t, dtype) for n, t in graph.inputs.items()}
    live = sum(size.values())
    timeline = [(live, "inputs")]
    for i, (node, row) in enumerate(zip(graph.nodes, rows)):
        out = size[node.name] = row.activation_bytes
        live += out
        timeline.append((live, node.name))
        sources = node.sources
        for s in (sources[0].node,) if len(sources) == 1 else {x.node for x in sources}:
            if last_use.get(s) == i:
                live -= size[s]
        if last_use.get(node.name, -1) <= i:  # unused result dies at once
            live -= out
    return timeline
