"""One real training step of a spec's module, measured per layer.

    from netcalc.torch.trainstep import measure_step
    step = measure_step(graph, device="cpu", optimizer="adamw")
    step.saved["layer1.0.conv1"]     # bytes autograd keeps, first kept by this layer
    step.backward_flops_total        # FlopCounterMode's count for loss.backward()

The protocol (what ``netcalc verify --train`` proves the analysis against):

* the module of :func:`netcalc.torch.build.build_module`, ``train()``, float32
  (``bf16``: converted to bfloat16; ``amp-*``: ``torch.autocast`` around the forward),
  the regions of ``checkpoint`` under ``torch.utils.checkpoint(use_reentrant=False)``;
  inputs that do not require grad;
* the loss outside the model: the sum over all outputs of
  ``out.float().square().mean()``, or with ``loss="cross-entropy"`` a cross-entropy
  over the last output (classes on its last dim) against random targets;
* ``loss.backward()``, then one ``optimizer.step()``: the second step of a run (one
  unmeasured step first allocates the optimizer state; ``zero_grad(set_to_none=True)``
  frees the gradients), the outputs held by the caller until the step ends.

Measured:

``saved``
    the distinct storages (``untyped_storage`` identity) packed by
    ``torch.autograd.graph.saved_tensors_hooks`` during the model's forward, parameters
    and buffers excluded, attributed to the innermost layer whose forward was running
    when the storage was first packed (a checkpoint region's inputs, saved by the
    region, to the region's first layer); bytes = the storage's ``nbytes``;
``backward_flops``
    ``torch.utils.flop_counter.FlopCounterMode`` per layer module, its counts at the end
    of ``loss.backward()`` less those at the end of the forward (recomputed checkpoint
    regions count in backward, as FlopCounterMode sees them);
``optimizer_bytes``
    the ``nbytes`` of every tensor in ``optimizer.state`` after the step (AdamW's
    ``step`` scalars included);
``peak_bytes``
    the largest total of live tensor storages during forward, backward and the optimizer
    step (:class:`LiveStorages`: every op's outputs, held by weak references; the
    parameters, buffers and inputs from the start); on CUDA also
    ``torch.cuda.max_memory_allocated`` (``cuda_peak_bytes``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode

from ..graph import Graph
from .build import NetcalcModule, _module_of, flatten_outputs, inputs_for

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
PRECISIONS = ("fp32", "bf16", "amp-bf16", "amp-fp16")
LOSSES = ("square", "cross-entropy")


@dataclass
class StepMeasurement:
    """What one real training step showed, per layer (report names) and in total."""

    device: str
    saved: dict[str, int]  # bytes of the storages each layer is the first to keep
    saved_total: int
    backward_flops: dict[str, int]
    backward_flops_total: int
    optimizer_bytes: int
    peak_bytes: int
    cuda_peak_bytes: int | None = None
    notes: list[str] = field(default_factory=list)


# ============================================================================ attribution
class Layers:
    """Which layer is at work: the innermost layer module whose forward runs (the
    forward, and a checkpoint region's recomputation), else, in backward, the layer
    whose autograd node runs. The nodes a layer's forward creates are its own (claimed
    when its forward returns, walking back from its outputs to nodes claimed before).

    FlopCounterMode's own module tracker cannot say this: it enters a module when all
    its output gradients are ready and leaves when all its input gradients are, so with
    a residual branch the whole main path's backward also counts on the ``Add``."""

    def __init__(self, model: NetcalcModule):
        self.running: list[str] = []
        self.readers: list[Any] = []  # called with (layer, its inputs) as a forward starts
        self.node: str | None = None
        self.owner: dict[Any, str] = {}  # autograd node -> layer (holds the node)
        self.handles: list[Any] = []
        for name, module in model.named_layers():
            self.handles.append(module.register_forward_pre_hook(
                lambda m, a, name=name: self._enter(name, a)))
            self.handles.append(module.register_forward_hook(
                lambda m, a, out, name=name: self._leave(name, out), always_call=True))

    @property
    def current(self) -> str:
        return self.running[-1] if self.running else self.node or ""

    def _enter(self, name: str, args: tuple) -> None:
        for read in self.readers:
            read(name, args)
        self.running.append(name)

    def _leave(self, name: str, out: Any) -> None:  # None: a value would replace `out`
        self.running.pop()
        todo = [t.grad_fn for t in flatten_outputs(out)
                if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or node in self.owner or type(node).__name__ == "AccumulateGrad":
                continue
            self.owner[node] = name
            self.handles.append(node.register_prehook(lambda g, name=name: self._run(name)))
            self.handles.append(node.register_hook(lambda gi, go: self._run(None)))
            todo.extend(n for n, _ in node.next_functions)

    def _run(self, name: str | None) -> None:
        self.node = name

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.owner.clear()


class LayerFlops(TorchDispatchMode):
    """FLOPs per layer at work (:class:`Layers`), by FlopCounterMode's own formulas.
    Entered below a FlopCounterMode, it sees exactly the ops that one counts."""

    def __init__(self, layers: Layers, registry: dict[Any, Any]):
        super().__init__()
        self.layers = layers
        self.registry = registry
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.registry.get(func._overloadpacket)
        if formula is not None:
            name = self.layers.current
            self.counts[name] = self.counts.get(name, 0) + int(formula(*args, **kwargs,
                                                                       out_val=out))
        return out


# ============================================================================ saved tensors
@contextlib.contextmanager
def recording_saved(model: NetcalcModule, layers: Layers) -> Iterator[dict[str, int]]:
    """Bytes of the storages autograd packs while the context is open, per layer at
    work. A storage packed between two layers' forwards (a checkpoint region saving its
    inputs) goes to the first layer whose forward then reads it."""
    per: dict[str, int] = {}
    own = {StorageWeakRef(t.untyped_storage()).cdata
           for t in (*model.parameters(), *model.buffers())}
    seen: dict[int, StorageWeakRef] = {}  # the weak reference pins the key while we hold it
    between: dict[int, int] = {}  # storage -> bytes, packed outside any layer

    def pack(t: torch.Tensor) -> torch.Tensor:
        ref = StorageWeakRef(t.untyped_storage())
        if ref.cdata not in own and ref.cdata not in seen:
            seen[ref.cdata] = ref
            n = t.untyped_storage().nbytes()
            if layers.running:
                per[layers.running[-1]] = per.get(layers.running[-1], 0) + n
            else:
                between[ref.cdata] = n
        return t

    def reads(name: str, args: tuple) -> None:
        for a in args:
            if isinstance(a, torch.Tensor) and between:
                n = between.pop(StorageWeakRef(a.untyped_storage()).cdata, 0)
                if n:
                    per[name] = per.get(name, 0) + n

    layers.readers.append(reads)
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield per
    finally:
        layers.readers.remove(reads)
    if between:
        per[""] = sum(between.values())  # never read by a layer: shown, never dropped


# ============================================================================ memory
class LiveStorages(TorchDispatchMode):
    """The largest total of live tensor storages seen after any op.

    Every op's output storages are registered by a weak reference (which also pins
    their identity); the running total is pruned of dead storages only when it could
    exceed the peak so far, so the cost stays near linear."""

    def __init__(self, tensors: list[torch.Tensor]):
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.total = 0
        self.peak = 0
        for t in tensors:
            self._add(t)
        self._update()

    def _add(self, t: torch.Tensor) -> None:
        if t.device.type == "meta":
            return
        storage = t.untyped_storage()
        ref = StorageWeakRef(storage)
        if ref.cdata not in self.live:
            n = storage.nbytes()
            self.live[ref.cdata] = (ref, n)
            self.total += n

    def _update(self) -> None:
        if self.total <= self.peak:
            return
        dead = [k for k, (ref, _) in self.live.items() if ref.expired()]
        for k in dead:
            self.total -= self.live.pop(k)[1]
        self.peak = max(self.peak, self.total)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._add(t)
        self._update()
        return out


# ============================================================================ the step
def make_optimizer(name: str, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """torch's optimizer for ``--optimizer`` with its default settings (no fused kernel)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3)
    if name == "momentum":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-3)
    raise ValueError(f"unknown optimizer {name!r} ({' | '.join(OPTIMIZERS)})")


def loss_of(outputs: list[torch.Tensor], loss: str,
            generator: torch.Generator) -> torch.Tensor:
    """The loss outside the model (see the module docstring)."""
    if loss == "square":
        return sum(o.float().square().mean() for o in outputs)
    if loss == "cross-entropy":
        logits = outputs[-1].float()
        logits = logits.reshape(-1, logits.shape[-1])
        target = torch.randint(0, logits.shape[-1], (logits.shape[0],), generator=generator)
        return torch.nn.functional.cross_entropy(logits, target.to(logits.device))
    raise ValueError(f"unknown loss {loss!r} ({' | '.join(LOSSES)})")


def autocast_of(dev: torch.device, precision: str) -> Any:
    if not precision.startswith("amp-"):
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16 if precision == "amp-bf16"
                          else torch.float16)


def _steady_state(opt: torch.optim.Optimizer, model: NetcalcModule, inputs: list,
                  loss: str, gen: torch.Generator, autocast: Any) -> None:
    """One unmeasured step first, so that the measured one is a step of training in its
    steady state (netcalc.training's peak): optimizer states allocated, gradients freed
    by ``zero_grad()`` before the forward."""
    with autocast:
        outputs = [o for o in flatten_outputs(model(*inputs))
                   if isinstance(o, torch.Tensor) and o.requires_grad]
    loss_of(outputs, loss, gen).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def measure_step(graph: Graph, *, device: str = "cpu", optimizer: str = "adamw",
                 precision: str = "fp32", checkpoint: tuple[str, ...] = (),
                 loss: str = "square", seed: int = 0) -> StepMeasurement:
    """Run one training step of ``graph``'s module and measure it (module docstring).

    ``checkpoint`` lists regions (block instance or container paths), already expanded."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} ({' | '.join(PRECISIONS)})")
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dtype = torch.bfloat16 if precision == "bf16" else None
    model = _module_of(graph, device=dev, dtype=dtype).train()
    model.checkpoint(checkpoint)
    inputs = inputs_for(graph, device=dev, dtype=dtype, generator=gen)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(optimizer, params) if params else None  # a frozen model: no step
    if opt is not None:
        _steady_state(opt, model, inputs, loss, gen, autocast_of(dev, precision))
    autocast = autocast_of(dev, precision)
    cuda = dev.type == "cuda"
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    states = [t for s in (opt.state.values() if opt is not None else ())
              for t in s.values() if isinstance(t, torch.Tensor)]
    memory = LiveStorages([*model.parameters(), *model.buffers(), *inputs, *states])
    layers = Layers(model)
    counter = FlopCounterMode(display=False)
    flops = LayerFlops(layers, counter.flop_registry)
    try:
        with memory:
            with flops, counter:
                with recording_saved(model, layers) as saved, autocast:
                    outputs = [o for o in flatten_outputs(model(*inputs))
                               if isinstance(o, torch.Tensor) and o.requires_grad]
                forward_total = counter.get_total_flops()
                flops.counts.clear()
                value = loss_of(outputs, loss, gen)
                value.backward()  # the caller still holds `outputs`, as a training loop does
                del value
            if opt is not None:
                opt.step()
            del outputs
    finally:
        layers.remove()
    backward_total = counter.get_total_flops() - forward_total
    states = opt.state.values() if opt is not None else []
    state_bytes = sum(t.nbytes for s in states for t in s.values() if isinstance(t, torch.Tensor))
    cuda_peak = None
    if cuda:
        torch.cuda.synchronize(dev)
        cuda_peak = int(torch.cuda.max_memory_allocated(dev))
    return StepMeasurement(
        device=dev.type, saved=saved, saved_total=sum(saved.values()),
        backward_flops=flops.counts, backward_flops_total=int(backward_total),
        optimizer_bytes=int(state_bytes), peak_bytes=memory.peak, cuda_peak_bytes=cuda_peak)
