"""Training cost: backward MACs, the activations autograd keeps, and a step's memory.

A report made with :class:`TrainOptions` (``netcalc shapes --train``) covers one
training step at the report's batch: the model in train mode, a loss outside the
model, ``loss.backward()`` and ``optimizer.step()``. It adds per layer
``backward_macs``, ``backward_flops`` and ``saved_bytes``, and the ``training``
section. Everything follows from the layers' two training rules
(:meth:`~netcalc.layers.base.Layer.backward_macs`, :meth:`~netcalc.layers.base.Layer.saved`)
and from how autograd works:

* **Which gradients.** A graph input (images, token ids) needs no gradient; a value
  needs one when it descends from a trainable parameter, as ``requires_grad``
  propagates. A layer whose inputs need none and whose weights are frozen
  (``trainable: false``) records nothing and has no backward.
* **Saved tensors.** Storages, not tensors: a tensor kept by two layers (a ReLU's
  output that is also the next conv's input) counts once, on the first layer that
  keeps it (``saved_bytes`` rows sum to ``saved_activation_bytes``); views (Flatten,
  Reshape, Permute, Select, Identity) share their input's storage, except a reshape of
  a permuted tensor, which copies; a MatMul keeps its operands as bmm gets them, views
  when their batch dims merge in place, else copies (Swin's one-window stage keeps the
  whole qkv storage through k and v); an in-place layer (``inplace: true``) writes into
  its input's storage, and one that overwrites a tensor an earlier layer keeps is
  refused, as torch's backward would fail. Parameters and buffers are not activations.
* **Checkpointing** (``checkpoint``: names of block instances or containers; a repeat
  group makes one region per instance, as ``torch.utils.checkpoint`` is used per
  transformer block): a region keeps only its inputs and runs its forward again
  during backward (``recompute_macs``); ``backward_macs`` excludes that.
* **Precision** (torch's meaning): ``fp32``; ``bf16``, the model converted
  (``model.to(torch.bfloat16)``: weights, gradients, optimizer states and activations
  2 bytes); ``amp-bf16``/``amp-fp16``, ``torch.autocast``: fp32 weights, gradients and
  states, the layers autocast runs in 16 bits (``Layer.AUTOCAST``: convolutions, linear
  layers, matrix products, attention, RNNs) cast their inputs and produce 16-bit
  outputs, float32-listed ops (softmax, layer and group norm) produce float32 on CUDA
  (CPU's autocast lists none of them: there they follow their input, measured with
  torch 2.14), the others follow their input; torch's transformer layers (``AUTOCAST = MIXED``) run
  their blocks in 16 bits and keep their residual stream at their input's dtype.
  Each 16-bit layer's trainable weights are cast once per forward, into autocast's
  cache. A cast that the layer's backward reads (``Saved`` kind WEIGHT: a conv's
  weight always, a Linear's or an attention projection's when its input needs a
  gradient, as ``derivatives.yaml`` saves ``mat2`` only for ``mat1``'s gradient) is a
  saved tensor of that layer, in its ``saved_bytes`` as autograd's saved-tensor hooks
  see it, and lives until its backward; the other casts (biases, the first layer's
  weight) are ``cast_cache_bytes`` and die when autocast exits after the forward. A
  cast storage is in one of the two, never both, so the peak counts it once.
* **Optimizer state** (``optimizer_bytes``, what torch allocates): ``sgd`` none,
  ``momentum`` one buffer per parameter, ``adam``/``adamw`` two (``exp_avg``,
  ``exp_avg_sq``) plus a float32 ``step`` scalar per parameter tensor.
* **The loss** is outside the model: the sum over all outputs of
  ``out.float().square().mean()`` (it keeps a float32 copy of a 16-bit output), or
  with ``loss="cross-entropy"`` ``F.cross_entropy`` over the last output (class dim
  last), which keeps its float32 log-softmax and the int64 targets (``loss_bytes``).
* **The peak** (``peak_bytes``) is the steady state of training, a step after the
  first: optimizer states exist, gradients were freed by ``zero_grad()``
  (``set_to_none=True``). Live storages are followed through the forward (each output
  freed after its last use unless kept for backward or returned), the loss, the
  backward in reverse layer order (input and weight gradients allocated, each layer's
  saved tensors and output gradients freed after its backward; a checkpointed region
  recomputed and its tensors held while its backward runs) and the optimizer step
  (Adam's temporaries: on CUDA torch's default ``foreach`` implementation makes one
  float copy of all parameters (``_foreach_sqrt``); on CPU the per-parameter loop
  makes two of the largest tensor). Kernels' private workspaces are not counted.

``device`` (default ``cuda``, where people train) picks the kernels whose saved
tensors differ (a dropout mask is a bool tensor on CUDA, a float one on CPU; see
each layer's ``saved``).

MAC convention: ``backward_macs`` counts the products of the gradients exactly
(``groups`` included: a depthwise conv's weight gradient is as cheap as its forward);
``backward_flops = 2 * backward_macs``: element-wise backward work (activation
derivatives, norm backward) is not counted, as torch's FlopCounterMode does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import TYPE_CHECKING, Any

from .dtypes import INT_BYTES
from .errors import SpecError, did_you_mean
from .graph import Ref
from .layers.base import (ACC, ACT, EXTRA, FOLDED, FP32, FULL, INPUT, INT, LOW, LOWER, MIXED,
                          UPCAST, WEIGHT, Grads, Layer)

if TYPE_CHECKING:
    from .analysis import Report

#: optimizer -> state tensors per parameter
OPTIMIZERS = {"sgd": 0, "momentum": 1, "adam": 2, "adamw": 2}
STEP_BYTES = 4  # Adam's float32 `step` tensor per parameter tensor
PRECISIONS = ("fp32", "bf16", "amp-bf16", "amp-fp16")
LOSSES = ("square", "cross-entropy")
DEVICES = ("cuda", "cpu")
#: --dtype -> the precision a training report defaults to
PRECISION_OF_DTYPE = {"float32": "fp32", "bfloat16": "bf16"}
TAG_BYTES = {ACC: 4, "int64": INT_BYTES, "bool": 1, "float32": 4}


@dataclass(frozen=True)
class TrainOptions:
    """What one training step does. ``precision`` None: from the report's dtype."""

    device: str = "cuda"
    optimizer: str = "adamw"
    precision: str | None = None
    checkpoint: tuple[str, ...] = ()
    loss: str = "square"

    def validate(self) -> "TrainOptions":
        for option, value, choices in (("--device", self.device, DEVICES),
                                       ("--optimizer", self.optimizer, tuple(OPTIMIZERS)),
                                       ("--loss", self.loss, LOSSES)):
            if value not in choices:
                raise SpecError(f"unknown value {value!r} ({' | '.join(choices)})", file=option)
        if self.precision is not None and self.precision not in PRECISIONS:
            raise SpecError(f"unknown precision {self.precision!r} ({' | '.join(PRECISIONS)})",
                            file="--precision")
        return self

    def resolved_precision(self, dtype: str) -> str:
        if self.precision is not None:
            return self.precision
        if dtype not in PRECISION_OF_DTYPE:
            raise SpecError(f"training at --dtype {dtype} needs --precision "
                            f"({' | '.join(PRECISIONS)})", file="--dtype")
        return PRECISION_OF_DTYPE[dtype]


@dataclass
class _Storage:
    """One tensor's storage on the training timeline: its size and lifetime."""

    nbytes: int
    created: int  # forward step that made it (-1: a graph input)
    last_use: int = -1  # last forward step that reads it
    keepers: list[int] = field(default_factory=list)  # nodes whose backward keeps it
    returned: bool = False  # a model output: held by the caller all step long
    weight_cast: bool = False  # autocast's 16-bit copy of a weight, kept for backward


class _Step:
    """One pass over the graph that follows storages through a training step."""

    def __init__(self, report: "Report", opts: TrainOptions):
        self.report = report
        self.graph = graph = report.graph
        self.opts = opts
        self.precision = opts.resolved_precision(report.dtype)
        self.amp = self.precision.startswith("amp")
        self.width = 2 if self.precision == "bf16" else 4  # weights, grads, states
        self.nodes = graph.nodes
        self.index = {n.name: i for i, n in enumerate(self.nodes)}
        self.storages: list[_Storage] = []
        self.storage: dict[Ref, int] = {}
        self.value_width: dict[Ref, int] = {}
        #: physical order of each value's dims, None when contiguous (see _permuted);
        #: None entries are gaps, dims a Select removed from a permuted tensor
        self.order: dict[Ref, tuple[int | None, ...] | None] = {}
        self.needs: dict[Ref, bool] = {}
        self.grads: list[Grads | None] = []
        self.prefixes: list[str] = []  # the checkpoint regions, as layer-path prefixes
        self.regions = self._regions()
        # per node: storages it keeps in forward / would keep when recomputed, cast bytes
        self.kept: list[list[int]] = [[] for _ in self.nodes]
        self.recomputed: list[list[int]] = [[] for _ in self.nodes]
        self.cast_bytes = [0] * len(self.nodes)
        self.saved_bytes = [0] * len(self.nodes)

    # ------------------------------------------------------------------ storages
    def _new(self, nbytes: int, step: int) -> int:
        self.storages.append(_Storage(nbytes, step))
        return len(self.storages) - 1

    def numel(self, ref: Ref) -> int:
        node = self.graph.by_name.get(ref.node)
        if node is None:
            return self.graph.inputs[ref.node].numel
        return node.layer.outputs[ref.out].numel

    def nbytes(self, ref: Ref) -> int:
        """Bytes of a value at the width it has in the step."""
        return self.numel(ref) * self.value_width[ref]

    def graded(self) -> list[Ref]:
        """The outputs the loss sends a gradient to: every output that needs one, or
        (cross-entropy) the last of them."""
        graded = [ref for _, ref in self.graph.outputs if self.needs[ref]]
        return graded[-1:] if self.opts.loss == "cross-entropy" else graded

    # ------------------------------------------------------------------ checkpoint regions
    def _regions(self) -> list[int | None]:
        """Region index of each node (None: not checkpointed)."""
        names = self.opts.checkpoint
        region: list[int | None] = [None] * len(self.nodes)
        if not names:
            return region
        containers = self.graph.containers
        prefixes: list[str] = []
        for name in names:
            instances = [name] if name in containers else []
            if name in containers and "×" in containers[name]:  # a repeat group
                instances = sorted({c for c in containers if c.startswith(name + ".")
                                    and "." not in c[len(name) + 1:]},
                                   key=lambda c: int(c.rsplit(".", 1)[1]))
            if not instances and name in self.index:
                instances = [name]
            if not instances:
                known = list(containers) + list(self.index)
                raise SpecError(f"{name!r} names no block instance, container or layer of "
                                f"the spec{did_you_mean(name, known)}", file="--checkpoint")
            prefixes += instances
        self.prefixes = prefixes
        index = {p: r for r, p in reversed(list(enumerate(prefixes)))}
        for i, node in enumerate(self.nodes):
            parts = node.name.split(".")
            for k in range(1, len(parts) + 1):  # the node and its containers, outermost first
                r = index.get(".".join(parts[:k]))
                if r is not None:
                    region[i] = r
                    break
        return region

    # ------------------------------------------------------------------ forward
    def forward(self) -> None:
        base = self.width if self.precision == "bf16" else 4
        for name, t in self.graph.inputs.items():
            ref = Ref(name)
            w = INT_BYTES if t.dtype == INT else base
            self.storage[ref] = self._new(t.numel * w, -1)
            self.storages[-1].returned = True  # the caller holds the inputs
            self.value_width[ref] = w
            self.order[ref] = None
            self.needs[ref] = False
        reaches = self._reaching_outputs()
        kept_by: dict[int, int] = {}  # storage -> first keeper
        region_kept: dict[int, set[int]] = {}
        rows = self.report.layers
        for i, (node, row) in enumerate(zip(self.nodes, rows)):
            layer = node.layer
            for s in node.sources:
                self.storages[self.storage[s]].last_use = i
            grads = Grads(tuple(self.needs[s] for s in node.sources),
                          node.trainable and layer.params() > 0)
            # a layer no output depends on records its saved tensors, but never runs a
            # backward: no gradients, no optimizer state for its weights
            self.grads.append(grads if grads.any and reaches[i] else None)
            seen, out_width = self._autocast(i, node.sources, layer)
            outs = self._outputs(i, node.sources, layer, out_width)
            for k, t in enumerate(layer.outputs):
                ref = Ref(node.name, k)
                self.needs[ref] = grads.any and t.dtype != INT
            if not grads.any:
                continue
            if layer.writes_input():
                keeper = kept_by.get(self.storage[node.sources[0]])
                if keeper is not None:
                    raise layer.fail(
                        f"inplace {type(layer).__name__} overwrites {node.sources[0]}, which "
                        f"{self.nodes[keeper].name} keeps for backward: torch's backward "
                        f"would fail (set inplace: false)", "inplace")
            keys = self._saved_keys(i, node.sources, layer, grads, seen, outs, out_width)
            if self.amp and layer.AUTOCAST in (LOWER, MIXED) and grads.weight:
                kept_casts = sum(self.storages[k].nbytes for k in keys
                                 if self.storages[k].weight_cast)
                self.cast_bytes[i] = (row.params if row.trainable_params else 0) * 2 - kept_casts
            r = self.regions[i]
            if r is None:
                self.kept[i] = keys
            else:
                self.recomputed[i] = keys
                held = region_kept.setdefault(r, set())
                for s in node.sources:  # the region keeps its inputs from outside it
                    j = self.index.get(s.node)
                    if (j is None or self.regions[j] != r) and self.storage[s] not in held:
                        held.add(self.storage[s])
                        self.kept[i].append(self.storage[s])
            for key in self.kept[i]:
                self.storages[key].keepers.append(i)
                if key not in kept_by:
                    kept_by[key] = i
                    self.saved_bytes[i] += self.storages[key].nbytes
        for _, ref in self.graph.outputs:
            self.storages[self.storage[ref]].returned = True

    def _reaching_outputs(self) -> list[bool]:
        """Whether some output of the model depends on each node."""
        reaches = [False] * len(self.nodes)
        for _, ref in self.graph.outputs:
            reaches[self.index[ref.node]] = True
        for i in range(len(self.nodes) - 1, -1, -1):
            if reaches[i]:
                for s in self.nodes[i].sources:
                    if s.node in self.index:
                        reaches[self.index[s.node]] = True
        return reaches

    def trained(self, i: int) -> int:
        """Trainable parameters of node i that get a gradient (0 when none do)."""
        g = self.grads[i]
        return self.report.layers[i].trainable_params if g is not None and g.weight else 0

    def _autocast(self, i: int, sources: list[Ref], layer: Layer) -> tuple[list[int], int]:
        """Storages the layer reads (autocast's casts are new, transient storages) and
        the width of its outputs."""
        seen = [self.storage[s] for s in sources]
        floats = [self.value_width[s] for s in sources if self.value_width[s] != INT_BYTES]
        if not self.amp:
            return seen, max(floats, default=self.width)
        if layer.AUTOCAST == MIXED:  # the residual stream: the first input's width
            return seen, self.value_width[sources[0]]
        want = {LOWER: 2, FP32: 4}.get(layer.AUTOCAST)
        if layer.AUTOCAST == FP32 and self.opts.device == "cpu":
            want = None  # CPU's float32 list has none of them: they follow their input
        if want is None:
            return seen, max(floats, default=4)
        for j, s in enumerate(sources):
            w = self.value_width[s]
            if w != INT_BYTES and w != want:
                seen[j] = self._new(self.numel(s) * want, i)
                self.storages[seen[j]].last_use = i
        return seen, want

    def _outputs(self, i: int, sources: list[Ref], layer: Layer, width: int) -> list[int]:
        node = self.nodes[i]
        keys = []
        for k, t in enumerate(layer.outputs):
            ref = Ref(node.name, k)
            w = INT_BYTES if t.dtype == INT else width
            src = sources[0] if sources else None
            if k == 0 and src is not None and layer.writes_input():
                key, order = self.storage[src], self.order[src]
            elif layer.HELD:  # a parameter or buffer: weights, not an activation
                key, order = self._new(0, i), None
            elif src is not None and layer.VIEW:  # every output (Chunk, Split) views it
                dims, dropped = layer.view_permutation(), layer.view_dropped_dim()
                if dims is not None:  # a permuted view: track the physical order
                    key, order = self.storage[src], _permuted(self.order[src], dims)
                elif dropped is not None and self.order[src] is not None:
                    key, order = self.storage[src], _dropped(self.order[src], dropped)
                elif self.order[src] is None:
                    key, order = self.storage[src], None
                else:  # reshaping a non-contiguous tensor copies it
                    key, order = self._new(t.numel * w, i), None
                w = self.value_width[src]
            else:
                key, order = self._new(t.numel * w, i), None
                if k == 0:
                    order = layer.output_order(self.opts.device)
            self.storage[ref], self.value_width[ref], self.order[ref] = key, w, order
            keys.append(key)
        return keys

    def _saved_keys(self, i: int, sources: list[Ref], layer: Layer, grads: Grads,
                    seen: list[int], outs: list[int], width: int) -> list[int]:
        keys: list[int] = []
        for k in layer.saved(grads, self.opts.device):
            if k.kind == INPUT:
                key = seen[k.index]
            elif k.kind == FOLDED:
                src = sources[k.index]
                order = self.order[src] if seen[k.index] == self.storage[src] else None
                shape = layer.inputs[k.index].shape
                key = (seen[k.index] if _merges(order, k.merged, shape) else
                       self._new(k.numel * self.value_width[src], i))
            elif k.kind == EXTRA:
                low = 2 if self.amp else width  # the width of a 16-bit op's result
                if k.dtype in (UPCAST, FULL) and (k.dtype == UPCAST) != (low == 2):
                    continue
                per = {ACT: width, LOW: low, FULL: low, UPCAST: TAG_BYTES[ACC]}.get(
                    k.dtype) or TAG_BYTES[k.dtype]
                key = self._new(k.numel * per, i)
            elif k.kind == WEIGHT:
                # a parameter, no activation; under autocast a 16-bit layer keeps the cast
                # its kernel got (in a checkpointed region the cached cast, cast_bytes)
                if not (self.amp and layer.AUTOCAST in (LOWER, MIXED)) or \
                        (grads.weight and self.regions[i] is not None):
                    continue
                key = self._new(k.numel * 2, i)
                self.storages[key].weight_cast = True
            else:
                key = outs[k.index]
            if key not in keys:
                keys.append(key)
        return keys

    # ------------------------------------------------------------------ memory
    def param_tensors(self) -> int:
        """Trainable parameter tensors (a tied weight is its owner's tensor)."""
        total = 0
        for i, node in enumerate(self.nodes):
            if self.trained(i):
                total += node.layer.param_tensors() - (1 if node.tie else 0)
        return total

    def largest_tensor(self) -> int:
        sizes = [prod(w) if (w := n.layer.weight_shape()) else
                 min(self.trained(i), n.layer.largest_param_tensor() or self.trained(i))
                 for i, n in enumerate(self.nodes) if self.trained(i)]
        return max(sizes, default=0)


def layer_grads(report: "Report") -> list[Grads | None]:
    """Which gradients each layer's backward computes (None: it has none)."""
    assert report.train is not None
    step = _Step(report, report.train)
    step.forward()
    return step.grads


def checkpoint_regions(report: "Report") -> list[str]:
    """The checkpoint regions of a training report, as layer-path prefixes (a repeat
    group named in ``checkpoint`` gives one per instance)."""
    assert report.train is not None
    return _Step(report, report.train).prefixes


Order = tuple[int | None, ...]


def _permuted(order: Order | None, dims: tuple[int, ...]) -> Order | None:
    """Physical order after ``permute(dims)`` of a tensor stored in ``order`` (the
    logical dims in memory order, None: contiguous; None entries: gaps); None again
    when contiguous."""
    rank = len(dims)
    before = order or tuple(range(rank))
    after = tuple(None if d is None else dims.index(d) for d in before)
    return None if after == tuple(range(rank)) else after


def _dropped(order: Order, dim: int) -> Order:
    """Physical order after ``select(dim, i)`` of a tensor stored in ``order``: the dim
    leaves a gap (the view keeps the other dims' strides)."""
    return tuple(None if d is None or d == dim else d - (d > dim) for d in order)


def _merges(order: Order | None, merged: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    """Whether ``reshape`` merges the logical dims ``merged`` (in order, sizes > 1) of a
    tensor stored in ``order`` as a view: they follow each other in memory, with no gap
    and no other dim of size > 1 between them."""
    if order is None or len(merged) < 2:
        return True
    phys = [d for d in order if d is None or shape[d] != 1]
    start = phys.index(merged[0])
    return tuple(phys[start:start + len(merged)]) == merged


def analyze_training(report: "Report") -> dict[str, Any]:
    """Fill the report's per-layer training figures; return the training section."""
    opts = report.train
    assert opts is not None and report.graph is not None
    step = _Step(report, opts)
    step.forward()
    rows = report.layers
    for i, (node, row) in enumerate(zip(step.nodes, rows)):
        g = step.grads[i]
        row.backward_macs = node.layer.backward_macs(g) if g is not None else 0
        row.backward_flops = 2 * row.backward_macs
        row.saved_bytes = step.saved_bytes[i]
    if not any(step.needs[ref] for _, ref in report.graph.outputs):
        raise SpecError("nothing to train: no output depends on a trainable parameter")
    return _memory(report, step)


def _memory(report: "Report", step: _Step) -> dict[str, Any]:
    t = report.totals
    opts = step.opts
    w = step.width
    trainable = sum(step.trained(i) for i in range(len(step.nodes)))
    int_buffers = sum(n.layer.int_buffers() for n in step.nodes)
    buffer_bytes = (sum(r.buffers for r in report.layers) - int_buffers) * \
        (2 if step.precision == "bf16" else 4) + int_buffers * INT_BYTES
    param_bytes = sum(r.params for r in report.layers) * w
    states = OPTIMIZERS[opts.optimizer] * trainable * w
    if opts.optimizer in ("adam", "adamw"):
        states += STEP_BYTES * step.param_tensors()
    graded = step.graded()
    out_grad = sum(step.nbytes(r) for r in graded)
    loss_bytes = _loss_bytes(step, graded)
    timeline = _timeline(report, step, param_bytes + buffer_bytes + states, loss_bytes)
    report.timelines["training"] = timeline
    peak, phase = max(timeline, key=lambda point: point[0])
    section = {
        "device": opts.device,
        "optimizer": opts.optimizer,
        "precision": step.precision,
        "loss": opts.loss,
        "checkpoint": list(opts.checkpoint),
        "param_bytes": param_bytes,
        "buffer_bytes": buffer_bytes,
        "gradient_bytes": trainable * w,
        "optimizer_bytes": states,
        "cast_cache_bytes": sum(step.cast_bytes),
        "output_gradient_bytes": out_grad,
        "loss_bytes": loss_bytes,
        "peak_bytes": peak,
        "peak_phase": phase,
        "recompute_macs": sum(n.layer.macs() for n, r in zip(step.nodes, step.regions)
                              if r is not None),
    }
    t.train_peak_bytes = peak
    return section


def _loss_bytes(step: _Step, graded: list[Ref]) -> int:
    """What the loss keeps for its backward: a float32 copy of each 16-bit output
    (``square``), or the float32 log-softmax and the int64 targets (cross-entropy)."""
    if step.opts.loss == "cross-entropy":
        ref = graded[-1]
        shape = step.graph.by_name[ref.node].layer.outputs[ref.out].shape
        return prod(shape) * 4 + prod(shape[:-1]) * INT_BYTES
    return sum(step.numel(r) * 4 for r in graded if step.value_width[r] != 4)


Timeline = list[tuple[int, str]]


def _timeline(report: "Report", step: _Step, baseline: int, loss_bytes: int) -> Timeline:
    """Bytes of live storages at each point of the step where they may peak (after each
    layer's forward, in the loss, at each layer's backward, in the optimizer step), with
    the point's name. Each is affine in the batch (netcalc.fit relies on it)."""
    n = len(step.nodes)
    st = step.storages
    alloc = [0] * (n + 1)
    free_after = [0] * (n + 1)
    live = baseline
    for s in st:
        if s.created < 0:
            live += s.nbytes
        else:
            alloc[s.created] += s.nbytes
        if not s.keepers and not s.returned:
            free_after[max(s.last_use, s.created, 0)] += s.nbytes
    cast = step.cast_bytes
    timeline: Timeline = [(live, "forward")]
    for i in range(n):
        live += alloc[i] + cast[i]
        timeline.append((live, f"forward, {step.nodes[i].name}"))
        live -= free_after[i]
    live -= sum(cast)  # autocast exits: its cache of weight casts is cleared
    graded = step.graded()
    transient = max((step.numel(r) * 4 for r in graded), default=0)
    live += loss_bytes
    timeline.append((live + transient, "loss"))
    # the loss's backward holds float32 temporaries of the output's size beside the
    # output gradient: three for square().mean() (measured on CPU: a head of 1024 x
    # 50257 logits peaks at four output sizes: mean's gradient, 2 * grad, times x, the
    # gradient handed on), one for cross-entropy (its log-softmax's gradient)
    scratch = (1 if step.opts.loss == "cross-entropy" else 3) * transient
    live += sum(step.nbytes(r) for r in graded)  # output gradients
    timeline.append((live + scratch, "loss backward"))
    live -= loss_bytes
    live = _backward(report, step, live, timeline)
    if step.opts.optimizer in ("adam", "adamw"):
        trainable = sum(step.trained(i) for i in range(len(step.nodes)))
        temps = (trainable if step.opts.device == "cuda" else 2 * step.largest_tensor())
        live += temps * step.width
    timeline.append((live, "optimizer step"))
    return timeline


def _backward(report: "Report", step: _Step, live: int, timeline: Timeline) -> int:
    """Follow the backward in reverse layer order; the live bytes after it."""
    st = step.storages
    n = len(step.nodes)
    release: list[list[int]] = [[] for _ in range(n)]  # storages freed after node's backward
    for key, s in enumerate(st):
        if s.keepers and not s.returned:
            release[min(s.keepers)].append(key)
    grad_of: dict[Ref, int] = {ref: step.nbytes(ref) for ref in step.graded()}
    weight_grads = [step.trained(i) for i in range(n)]
    for i, node in enumerate(step.nodes):
        if node.tie and step.trained(i):  # the shared weight's gradient is made here first
            owner = step.index[node.tie]
            tied = node.layer.params() - report.layers[i].params
            weight_grads[i] += tied
            weight_grads[owner] -= tied
    w = step.width
    region_first = {}
    for i, r in enumerate(step.regions):
        if r is not None:
            region_first.setdefault(r, i)
    held_recompute = 0
    for i in range(n - 1, -1, -1):
        g = step.grads[i]
        node = step.nodes[i]
        r = step.regions[i]
        if r is not None and (i == n - 1 or step.regions[i + 1] != r):  # entering a region
            recomputed = {k for j in range(region_first[r], i + 1) for k in step.recomputed[j]
                          if not st[k].keepers and not st[k].returned}
            held_recompute = sum(st[k].nbytes for k in recomputed) + \
                sum(step.cast_bytes[j] for j in range(region_first[r], i + 1))
            live += held_recompute
        outs = [Ref(node.name, k) for k in range(len(node.layer.outputs))]
        if g is not None:
            for s, needed in zip(node.sources, g.inputs):
                if needed and s not in grad_of:
                    if node.layer.VIEW and outs[0] in grad_of:
                        # the input's gradient is a view of the output's: it lives on
                        grad_of[s], grad_of[outs[0]] = grad_of[outs[0]], 0
                    else:
                        grad_of[s] = step.nbytes(s)
                        live += grad_of[s]
            if g.weight and not node.layer.HELD:
                live += max(weight_grads[i], 0) * w
            timeline.append((live, f"backward, {node.name}"))
        if node.layer.HELD:  # its output's gradient is the parameter's: it lives on
            grad_of.pop(outs[0], 0)
        for o in outs:
            live -= grad_of.pop(o, 0)
        live -= sum(st[k].nbytes for k in release[i])
        if r is not None and i == region_first[r]:
            live -= held_recompute
    return live
