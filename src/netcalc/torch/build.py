"""Spec -> a real ``torch.nn.Module``: the user's model, named like the report.

    from netcalc.torch import build
    model = build("specs/resnet18.yaml")            # float32, CPU
    model.get_submodule("layer1.0.conv1")           # nn.Conv2d, as in the report
    y = model(torch.randn(1, 3, 224, 224))
    big = build("specs/llama7b.yaml", device="meta")  # shapes and params, no memory

What the module is:

* one submodule per layer node, at the node's report name. Torch forbids dots in
  child names, so every dotted prefix (a block instance, a repeat group) is a plain
  :class:`Container` holding the next path segment (``layer1`` -> ``0`` ->
  ``conv1``). Containers hold modules; they are not called (the graph is run by
  the root's ``forward``; a block may take inputs from anywhere before it);
* ``forward(*inputs, **named)`` takes the spec's inputs positionally in spec order
  or by name, runs the nodes in graph order and returns the single output, or a
  tuple in the order of the spec's ``outputs:`` (``return_dict=True``: a dict keyed
  by the output names). A layer with several outputs (``OUTPUTS``, e.g. LSTM's
  ``output, h_n, c_n``) returns them as a (possibly nested) tuple; its items, flattened,
  are the layer's outputs in ``OUTPUTS`` order;
* a Parameter or Buffer layer's tensor sits at the layer's path itself
  (``encoder.pos_embedding``, torchvision's key), registered on the enclosing
  container; :meth:`NetcalcModule.layer` returns the module that reads it. An int64
  Buffer is filled with valid indices for the tables its readers index;
* ``tie: other`` makes the layer's main weight (the parameter of shape
  :meth:`Layer.weight_shape`) the very Parameter of ``other``, so ``parameters()``
  yields it once and training updates both; ``trainable: false`` sets
  ``requires_grad=False`` on the parameters the layer owns;
* built under ``torch.device(device)``, so ``device="meta"`` allocates nothing.

The forward is straight-line code generated from the graph
(:func:`netcalc.codegen.builder_forward`: one call per layer, no per-node interpreter);
tensors are freed as soon as no later node needs them (inference memory follows the
report's peak).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..analysis import Report, analyze_graph
from ..codegen import builder_forward
from ..errors import SpecError
from ..graph import Graph, Ref
from ..graph import build as build_graph
from ..layers.base import INT
from ..spec import Spec
from ..spec import load as load_spec
from .guard import is_out_of_memory, one_line
from .modules import HeldTensor

__all__ = ["Container", "NetcalcModule", "adopt", "build_module", "example_inputs", "flatten_outputs",
           "index_bound", "prepare"]


class Container(nn.Module):
    """A block instance or repeat group: holds the next path segment's modules.

    Not callable on its own: the root module's ``forward`` runs the graph.
    """

    def __init__(self, label: str = ""):
        super().__init__()
        self.label = label

    def extra_repr(self) -> str:
        return self.label


def flatten_outputs(value: Any) -> list[Any]:
    """A module's return value as a flat list: tensors, tuples and lists of them."""
    if isinstance(value, (tuple, list)):
        out: list[Any] = []
        for v in value:
            out.extend(flatten_outputs(v))
        return out
    return [value]


def prepare(spec_or_graph: str | Path | Spec | Graph, *, batch: int = 1,
            input_shapes: dict[str, tuple[int, ...]] | None = None) -> tuple[Graph, Report]:
    """A graph whose layers know their input shapes (analysed), and its report."""
    if isinstance(spec_or_graph, Graph):
        graph = spec_or_graph
    else:
        spec = spec_or_graph if isinstance(spec_or_graph, Spec) else load_spec(spec_or_graph)
        graph = build_graph(spec, batch, input_shapes)
    return graph, analyze_graph(graph)


class NetcalcModule(nn.Module):
    """The model of a spec: see the module docstring. Build it with :func:`build_module`."""

    def __init__(self, graph: Graph, *, return_dict: bool = False):
        super().__init__()
        self.spec_name = graph.spec.name
        self.input_names: tuple[str, ...] = tuple(graph.inputs)
        self.output_names: tuple[str, ...] = tuple(name for name, _ in graph.outputs)
        self.return_dict = return_dict
        self.layer_names: tuple[str, ...] = tuple(n.name for n in graph.nodes)
        self._held: dict[str, HeldTensor] = {}
        for node in graph.nodes:
            try:
                module = node.layer.torch_module()
            except SpecError:
                raise
            except Exception as exc:  # a torch refusal is the spec's problem: say where
                if is_out_of_memory(exc):  # the machine's limit: the caller may fall back
                    raise
                raise node.layer.fail(f"torch cannot build {node.type}: {one_line(exc)}") \
                    from exc
            self._place(node.name, module, graph.containers)
        self._fill_indices(graph)
        self._tie_and_freeze(graph)
        self.__dict__["_graph"] = _Shared(graph)  # not copied by deepcopy: read only
        self._compile(())

    # ---------------------------------------------------------------- structure
    def _place(self, name: str, module: nn.Module, labels: dict[str, str]) -> None:
        parts = name.split(".")
        parent: nn.Module = self
        for i, part in enumerate(parts[:-1]):
            child = parent._modules.get(part)
            if child is None:
                _check_free(parent, part, ".".join(parts[: i + 1]))
                child = Container(labels.get(".".join(parts[: i + 1]), ""))
                parent.add_module(part, child)
            elif not isinstance(child, Container):
                raise SpecError(f"layer {name!r} would nest inside layer {'.'.join(parts[:i + 1])!r}")
            parent = child
        _check_free(parent, parts[-1], name)
        if isinstance(module, HeldTensor):
            module.bind(parent, parts[-1])
            self._held[name] = module
        else:
            parent.add_module(parts[-1], module)

    def layer(self, name: str) -> nn.Module:
        """The module that computes layer ``name`` (for a Parameter or Buffer, the module
        reading the tensor that sits at ``name``)."""
        held = self._held.get(name)
        return held if held is not None else self.get_submodule(name)

    def _fill_indices(self, graph: Graph) -> None:
        with torch.no_grad():
            for name, held in self._held.items():
                t = getattr(held.owner, held.name)
                if t.dtype == torch.int64:
                    bound = index_bound(graph, Ref(name)) or t.numel()
                    t.copy_((torch.arange(t.numel()) % bound).reshape(t.shape))

    def _tie_and_freeze(self, graph: Graph) -> None:
        owned_by_earlier: set[int] = set()
        for node in graph.nodes:
            module = self.layer(node.name)
            if node.tie is not None:
                owner_node = graph.by_name[node.tie]
                owner = self.get_submodule(node.tie)
                mine_path, _ = _main_weight(module, node.layer.weight_shape(), node.name)
                theirs_path, theirs = _main_weight(owner, owner_node.layer.weight_shape(),
                                                   node.tie)
                holder_path, _, attr = mine_path.rpartition(".")
                holder = module.get_submodule(holder_path) if holder_path else module
                setattr(holder, attr, theirs)
            mine = [p for p in module.parameters() if id(p) not in owned_by_earlier]
            if not node.trainable:
                for p in mine:
                    p.requires_grad_(False)
            owned_by_earlier.update(id(p) for p in mine)

    # ---------------------------------------------------------------- running
    def _compile(self, regions: Sequence[str]) -> None:
        """The forward: straight-line code generated from the graph
        (:func:`netcalc.codegen.builder_forward`), compiled once per distinct source."""
        self.__dict__["_fwd"] = _compiled(builder_forward(self._graph.value, regions))

    def checkpoint(self, regions: Sequence[str]) -> None:
        """Run each region (a block instance or container path) under
        ``torch.utils.checkpoint`` (``use_reentrant=False``): it keeps its inputs and
        runs its forward again in backward. Its layers must be consecutive in graph order."""
        self._compile(tuple(regions))

    def forward(self, *args: torch.Tensor, **kwargs: torch.Tensor) -> Any:
        if kwargs or len(args) != len(self.input_names):
            args = self._bind(args, kwargs)
        results = self._fwd(self, *args)
        if self.return_dict:
            return dict(zip(self.output_names, results))
        return results[0] if len(results) == 1 else results

    def _bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        names = self.input_names
        if len(args) > len(names):
            raise TypeError(f"{self.spec_name} takes {len(names)} input(s) "
                            f"({', '.join(names)}), got {len(args)}")
        values = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                raise TypeError(f"{self.spec_name} has no input {k!r} ({', '.join(names)})")
            if k in values:
                raise TypeError(f"input {k!r} given twice")
            values[k] = v
        missing = [n for n in names if n not in values]
        if missing:
            raise TypeError(f"{self.spec_name}: missing input(s) {', '.join(missing)}")
        return tuple(values[n] for n in names)

    def named_layers(self) -> Iterable[tuple[str, nn.Module]]:
        """(report name, module) of every layer node, in graph order."""
        for name in self.layer_names:
            yield name, self.layer(name)


def adopt(graph: Graph, module: nn.Module) -> NetcalcModule:
    """A :class:`NetcalcModule` view of a module made elsewhere (an exported file's
    model class), so that everything that reads a built module can read it.

    The view shares the module's children, parameters and buffers (the same objects:
    hooks on ``view.get_submodule("layer1.0.conv1")`` fire in the module's forward)
    and runs the module class's own ``forward`` on them. A Parameter or Buffer layer is
    a tensor at its path: its :class:`HeldTensor` is called once before each forward,
    so per-layer hooks see it.
    """
    view = NetcalcModule.__new__(NetcalcModule)
    nn.Module.__init__(view)
    for attr in ("_modules", "_parameters", "_buffers", "_non_persistent_buffers_set"):
        view.__dict__[attr] = module.__dict__[attr]
    view.spec_name = graph.spec.name
    view.input_names = tuple(graph.inputs)
    view.output_names = tuple(name for name, _ in graph.outputs)
    view.return_dict = False
    view.layer_names = tuple(n.name for n in graph.nodes)
    view._held = {}
    for node in graph.nodes:
        if node.layer.HELD:
            parent, _, last = node.name.rpartition(".")
            held = HeldTensor.__new__(HeldTensor)
            nn.Module.__init__(held)
            held.__dict__.update(owner=view.get_submodule(parent) if parent else view, name=last)
            view._held[node.name] = held
    forward = type(module).forward
    several = len(view.output_names) > 1

    def run(self: NetcalcModule, *inputs: Any) -> tuple[Any, ...]:
        for held in self._held.values():
            held()
        result = forward(self, *inputs)
        return tuple(result) if several else (result,)

    view.__dict__["_fwd"] = run
    return view


class _Shared:
    """Holds the graph on the module without deepcopy copying it."""

    def __init__(self, value: Any):
        self.value = value

    def __deepcopy__(self, memo: dict) -> "_Shared":
        return self


@lru_cache(maxsize=64)
def _compiled(source: str) -> Any:
    namespace: dict[str, Any] = {"checkpoint": checkpoint, "_outs": _outs}
    exec(compile(source, "<netcalc forward>", "exec"), namespace)
    return namespace["forward"]


def _outs(result: Any, n: int, name: str) -> list[Any]:
    """A layer's outputs: its module's return value flattened (LSTM: output, h_n, c_n)."""
    outs = flatten_outputs(result)
    if len(outs) < n:
        raise RuntimeError(f"{name}: the module returned {len(outs)} output(s), "
                           f"the layer has {n}")
    return outs[:n]


_RESERVED = set(dir(NetcalcModule)) | {"training", "spec_name", "input_names", "output_names",
                                       "return_dict", "layer_names", "label"}


def _check_free(parent: nn.Module, part: str, path: str) -> None:
    if part in parent._modules:
        raise SpecError(f"two layers are named {path!r}")
    if (isinstance(parent, NetcalcModule) and part in _RESERVED) or hasattr(parent, part):
        raise SpecError(f"layer name {path!r}: {part!r} is an attribute of torch.nn.Module "
                        "(or of netcalc's NetcalcModule); rename the layer to build it in torch")


def _main_weight(module: nn.Module, shape: tuple[int, ...] | None, name: str) -> tuple[str, nn.Parameter]:
    """The parameter that ``tie:`` shares: named ``weight`` (or ``*.weight``) of ``shape``."""
    candidates = [(n, p) for n, p in module.named_parameters(remove_duplicate=False)
                  if n.split(".")[-1].endswith("weight") and tuple(p.shape) == tuple(shape or ())]
    candidates.sort(key=lambda np_: (np_[0].split(".")[-1] != "weight", np_[0].count(".")))
    if not candidates:
        raise SpecError(f"{name}: tie: no weight of shape {list(shape or ())} in the torch module")
    return candidates[0]


def build_module(spec_or_graph: str | Path | Spec | Graph, *, batch: int = 1,
                 input_shapes: dict[str, tuple[int, ...]] | None = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                 return_dict: bool = False) -> NetcalcModule:
    """Build the spec as a trainable ``nn.Module`` (see the module docstring).

    ``batch`` and ``input_shapes`` only matter for layers whose torch arguments
    depend on the input (inferred ``in_channels``, ``in_features``, ...): the module
    accepts any batch size. ``dtype`` (e.g. ``torch.float64``) converts the floating
    parameters and buffers; ``device="meta"`` allocates no weights.
    """
    graph, _ = prepare(spec_or_graph, batch=batch, input_shapes=input_shapes)
    return _module_of(graph, device=device, dtype=dtype, return_dict=return_dict)


def _module_of(graph: Graph, *, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None, return_dict: bool = False) -> NetcalcModule:
    with torch.device(device):
        model = NetcalcModule(graph, return_dict=return_dict)
    if dtype is not None:
        model.to(dtype=dtype)
    return model


build = build_module


def example_inputs(spec_or_graph: str | Path | Spec | Graph, *, batch: int = 1,
                   input_shapes: dict[str, tuple[int, ...]] | None = None,
                   device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                   fill: str = "randn", generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, ...]:
    """Inputs for the built module, in spec order.

    Float inputs: ``fill`` is ``randn``, ``rand`` (uniform [0, 1)), ``ones``.
    Token ids (int64 inputs): uniform in ``[0, V)`` where ``V`` is the smallest table
    size the readers index (:func:`index_bound`; 1 when none does).
    """
    graph = spec_or_graph if isinstance(spec_or_graph, Graph) else \
        prepare(spec_or_graph, batch=batch, input_shapes=input_shapes)[0]
    return inputs_for(graph, device=device, dtype=dtype, fill=fill, generator=generator)


def inputs_for(graph: Graph, *, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None, fill: str = "randn",
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    dtype = dtype or torch.get_default_dtype()
    out = []
    for name, info in graph.inputs.items():
        shape = info.shape
        if info.dtype == INT:
            high = index_bound(graph, Ref(name)) or 1
            if str(device) == "meta":
                out.append(torch.empty(shape, dtype=torch.int64, device="meta"))
            else:
                out.append(torch.randint(0, high, shape, dtype=torch.int64, generator=generator)
                           .to(device))
            continue
        if str(device) == "meta":
            out.append(torch.empty(shape, dtype=dtype, device="meta"))
        elif fill == "ones":
            out.append(torch.ones(shape, dtype=dtype, device=device))
        elif fill == "rand":
            out.append(torch.rand(shape, dtype=dtype, generator=generator).to(device))
        elif fill == "randn":
            out.append(torch.randn(shape, dtype=dtype, generator=generator).to(device))
        else:
            raise ValueError(f"fill: randn | rand | ones, got {fill!r}")
    return tuple(out)


def index_bound(graph: Graph, ref: Ref) -> int | None:
    """Exclusive bound of valid values for the int64 tensor ``ref``: the smallest table
    size its readers index (:meth:`Layer.index_bound`), looking through int64 views
    (a Buffer reshaped before indexing); None when nothing indexes with it."""
    bounds = []
    for node in graph.nodes:
        for i, s in enumerate(node.sources):
            if s != ref:
                continue
            b = node.layer.index_bound(i)
            if b is None and node.layer.VIEW and node.layer.outputs[0].dtype == INT:
                b = index_bound(graph, Ref(node.name))
            if b is not None:
                bounds.append(b)
    return min(bounds, default=None)
