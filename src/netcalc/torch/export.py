"""Spec -> a readable, stand-alone PyTorch file (``netcalc export``).

    from netcalc.torch.export import export_source, load_source
    source = export_source("specs/resnet50.yaml")    # Python text
    ResNet50 = load_source(source)["ResNet50"]
    model = ResNet50()                               # torchvision's state_dict keys
    model.load_state_dict(torchvision.models.resnet50().state_dict())

The structure (classes, forward code) is written by :func:`netcalc.codegen.module_source`
without torch. What each layer's module is comes from the module the builder makes
(``Layer.torch_module``, the one place a layer says how torch computes it): its
constructor call is read back from the instance (every argument of the class's
``__init__`` is an attribute of that name, ``bias`` a flag) and proven by building it
again and comparing the two (type, ``repr``, parameter and buffer names, shapes and
dtypes). Modules torch lacks (``netcalc.torch.modules``: Add, Concat, Reshape, ...)
have their class source copied into the file, so it imports only torch.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import __version__
from ..codegen import Call, module_source, py_literal
from ..graph import Graph, Ref
from ..spec import Spec
from . import modules as helpers
from .crosscheck import CrossCheckResult, crosscheck
from .build import NetcalcModule, _module_of, index_bound, prepare
from .modules import HeldTensor

__all__ = ["export_source", "load_source", "module_call", "verify_source"]

_SKIP = {"self", "device", "dtype"}
_MISSING = object()


def export_source(spec_or_graph: str | Path | Spec | Graph, *, batch: int = 1,
                  input_shapes: dict[str, tuple[int, ...]] | None = None) -> str:
    """The spec as Python source: block classes and a model class (see the module doc)."""
    graph, _ = prepare(spec_or_graph, batch=batch, input_shapes=input_shapes)
    used: set[type] = set()
    nested: dict[str, str] = {}  # expert blocks' classes (MixtureOfExperts): top -> source
    calls, held, model = _layer_calls(graph, used, nested)
    classes = sorted(used, key=lambda c: inspect.getsourcelines(c)[1])
    helper_src = "\n\n".join([*(inspect.getsource(c) for c in classes), *nested.values()])
    imports = ["from functools import reduce"] if "reduce(" in helper_src else []
    return module_source(graph, calls, held, helpers=helper_src, ties=_ties(graph, model),
                         frozen=_frozen(model), header=_header(graph), imports=imports)


def _layer_calls(graph: Graph, used: set[type], nested: dict[str, str]
                 ) -> tuple[dict[str, Call], dict[str, tuple[Call, bool]], NetcalcModule]:
    """Each layer's constructor call (Parameter and Buffer layers: their tensor's)."""
    model = _module_of(graph, device="meta")
    calls: dict[str, Call] = {}
    held: dict[str, tuple[Call, bool]] = {}
    known: dict[str, Call] = {}  # one proof per distinct module
    for node in graph.nodes:
        module = model.layer(node.name)
        if isinstance(module, HeldTensor):
            held[node.name] = _held_expr(graph, node.name, module())
            continue
        try:
            if isinstance(module, helpers.MixtureOfExperts):
                calls[node.name] = _experts_call(node.layer, module, used, nested)
                continue
            key = repr(_state(module))
            if key not in known:
                known[key] = module_call(module, used, node.layer)
            calls[node.name] = known[key]
        except ValueError as exc:
            raise node.layer.fail(f"export: {exc}") from None
    return calls, held, model


def _experts_call(layer: Any, module: nn.Module, used: set[type],
                  nested: dict[str, str]) -> Call:
    """``MixtureOfExperts(d, top_k, [Expert() for _ in range(E)], router_bias)``: the
    router and the deterministic routing are netcalc's module (inlined, as every
    helper); the expert block is written as classes of its own (its spec's layers)."""
    graph = layer.expert_graph
    calls, held, model = _layer_calls(graph, used, nested)
    source = module_source(graph, calls, held, ties=_ties(graph, model), frozen=_frozen(model))
    body = source.split("from torch import nn\n", 1)[1].strip("\n")
    top = re.findall(r"^class (\w+)\(nn\.Module\):", body, re.M)[-1]
    if nested.get(top, body) != body:
        raise ValueError(f"two different expert blocks make a class {top!r}: give them "
                         "different block names")
    nested[top] = body
    used.add(helpers.MixtureOfExperts)
    return Call("MixtureOfExperts", kwargs=[
        ("d", py_literal(module.gate.in_features)), ("top_k", py_literal(module.top_k)),
        ("experts", f"[{top}() for _ in range({len(module.experts)})]"),
        ("router_bias", py_literal(module.gate.bias is not None))],
        order=("d", "top_k", "experts", "router_bias"))


def load_source(source: str, name: str = "netcalc_exported") -> dict[str, Any]:
    """Run exported source in a fresh namespace (as importing the file would)."""
    namespace: dict[str, Any] = {"__name__": name}
    exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace


def verify_source(spec_or_graph: str | Path | Spec | Graph, source: str, *, batch: int = 1,
                  input_shapes: dict[str, tuple[int, ...]] | None = None,
                  device: str = "meta") -> CrossCheckResult:
    """Cross-check the model class of exported ``source`` against the spec (shapes,
    params, buffers and MACs per layer, as ``netcalc verify`` does), on ``device``."""
    graph, _ = prepare(spec_or_graph, batch=batch, input_shapes=input_shapes)
    namespace = load_source(source)
    top = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, nn.Module)
           and v.__module__ == namespace["__name__"]][-1]
    with torch.device(device):
        model = top()
    return crosscheck(graph, batch=batch, device=device, module=model, rf=False)


def _header(graph: Graph) -> str:
    spec = graph.spec
    where = Path(spec.file).name if spec.file else "a spec"
    title = repr(spec.name or "")[1:-1]
    return (f"# {title or 'Model'}: generated by `netcalc export` (netcalc {__version__}) from "
            f"{repr(where)[1:-1]}.\n"
            "# Module paths and state_dict keys are the spec's layer names; every layer's\n"
            "# numbers are in `netcalc shapes` of the spec. Needs only torch.")


# ---------------------------------------------------------------- constructors
def module_call(module: nn.Module, used: set[type] | None = None,
                layer: Any = None) -> Call:
    """The constructor call that makes a module equal to ``module`` (proven by making
    it): from the module's attributes, else (torch.nn classes that keep no attribute
    per argument, as TransformerEncoderLayer) from the layer's own arguments."""
    used = set() if used is None else used
    tries = [lambda: _call(module, used, True), lambda: _call(module, used, False)]
    if layer is not None and getattr(nn, type(module).__name__, None) is type(module):
        args = layer.arg_values()
        tries += [lambda: _from_args(module, args, {}), lambda: _from_args(module, args,
                                                                          {"batch_first": True})]
    for attempt in tries:
        try:
            call = attempt()
        except ValueError:
            continue
        if _same(module, call, used):
            return call
    raise ValueError(f"cannot write {type(module).__name__} as code: rebuilding it from its "
                     "arguments gives a different module")


def _from_args(module: nn.Module, args: dict[str, Any], extra: dict[str, Any]) -> Call:
    params = _params(type(module))
    call = Call(f"nn.{type(module).__name__}", order=tuple(p.name for p in params))
    for p in params:
        value = {**args, **extra}.get(p.name, _MISSING)
        if value is _MISSING or (p.default is not p.empty and _equal(value, p.default)):
            continue
        try:
            call.kwargs.append((p.name, py_literal(value)))
        except TypeError:
            raise ValueError(p.name) from None
    return call


def _params(cls: type) -> list[inspect.Parameter]:
    """The arguments of ``cls``'s constructor; one taking ``*args, **kwargs`` passes
    them on to its base's, whose arguments are then its own too (AttentionOutput's
    are MultiheadAttention's and ``masked``; LSTM's are RNNBase's less ``mode``, which
    LSTM fixes)."""
    out: list[inspect.Parameter] = []
    for base in cls.__mro__:
        if "__init__" not in vars(base) or base is nn.Module:
            continue
        params = [p for p in inspect.signature(base.__init__).parameters.values()
                  if p.name not in _SKIP]
        out += [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
                and all(p.name != q.name for q in out) and not (base is not cls and
                                                                 p.name == "mode")]
        if not any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            break
    return out


def _callee(cls: type, used: set[type]) -> str:
    if getattr(nn, cls.__name__, None) is cls:
        return f"nn.{cls.__name__}"
    if getattr(helpers, cls.__name__, None) is cls and cls is not HeldTensor:
        used.add(cls)
        return cls.__name__
    raise ValueError(f"{cls.__module__}.{cls.__qualname__} is neither a torch.nn class nor one "
                     "of netcalc's modules")


def _call(module: nn.Module, used: set[type], compact: bool) -> Call:
    cls = type(module)
    call = Call(_callee(cls, used))
    params = _params(cls)
    call.order = tuple(p.name for p in params)
    for p in params:
        value = getattr(module, p.name, _MISSING)
        if p.name == "bias" and not isinstance(value, bool):  # a flag in torch: the tensor
            value = any(n.rpartition(".")[2].endswith("bias")
                        for n, _ in module.named_parameters())
        if value is _MISSING:
            if p.default is p.empty:
                raise ValueError(f"cannot write {cls.__name__}: no attribute {p.name!r}")
            continue
        if isinstance(value, nn.Module):
            call.kwargs.append((p.name, _call(value, used, compact)))
            continue
        if compact and isinstance(value, tuple) and len(value) > 1 and \
                len(set(value)) == 1 and type(value[0]) is int and call.callee[:3] == "nn.":
            value = value[0]  # kernel_size=3 for (3, 3): torch.nn repeats it
        if p.default is not p.empty and _equal(value, p.default):
            try:
                call.defaults[p.name] = py_literal(p.default)
            except TypeError:
                pass
            continue
        try:
            call.kwargs.append((p.name, py_literal(value)))
        except TypeError:
            raise ValueError(f"cannot write {cls.__name__}'s {p.name} "
                             f"({type(value).__name__}) as a literal") from None
    return call


def _equal(a: Any, b: Any) -> bool:
    try:
        return type(a) is type(b) and bool(a == b)
    except Exception:
        return False


def _same(module: nn.Module, call: Call, used: set[type]) -> bool:
    namespace = {"nn": nn, "torch": torch, **{c.__name__: c for c in used}}
    try:
        with torch.device("meta"):
            made = eval(call.render(0, 10**9), namespace)  # noqa: S307 (our own literals)
    except Exception:
        return False

    return _state(made) == _state(module)


def _state(module: nn.Module) -> list[Any]:
    """What makes two modules the same: per submodule its type and plain attributes
    (``(3, 3)`` read as ``3``: torch.nn repeats an int over the dims), every tensor's
    name, shape, dtype and kind."""
    out: list[Any] = []
    for name, m in module.named_modules():
        attrs = {k: _norm(v) for k, v in vars(m).items() if not k.startswith("_")
                 and not isinstance(v, (torch.Tensor, nn.Module))}
        out.append((name, type(m), attrs))
    out += [(n, tuple(t.shape), t.dtype, isinstance(t, nn.Parameter))
            for n, t in [*module.named_parameters(), *module.named_buffers()]]
    return out


def _norm(v: Any) -> Any:
    if isinstance(v, (tuple, list)) and len(v) > 1 and all(type(x) is int for x in v) and \
            len(set(v)) == 1:
        return v[0]
    if v is None or isinstance(v, (bool, int, float, str, tuple, list)):
        return v
    return (type(v), getattr(v, "__name__", None))


# ---------------------------------------------------------------- tensors, ties, freezing
def _held_expr(graph: Graph, name: str, t: torch.Tensor) -> tuple[Call, bool]:
    """The constructor of a Parameter or Buffer layer's tensor, drawn as the builder
    draws it (its sizes are arguments: blocks that differ only there share a class)."""
    size = py_literal(tuple(t.shape))
    if isinstance(t, nn.Parameter):
        return Call("nn.init.normal_", [Call("torch.empty", [], [("size", size)])],
                    [("std", "0.02")]), True
    if t.dtype == torch.int64:
        bound = index_bound(graph, Ref(name)) or t.numel()
        count = Call("torch.arange", [], [("end", str(t.numel()))])
        return Call("torch.reshape", [Call("torch.remainder", [count], [("other", str(bound))])],
                    [("shape", size)]), False
    return Call("torch.ones", [], [("size", size)]), False


def _ties(graph: Graph, model: NetcalcModule) -> list[tuple[str, str]]:
    """(path of a tied parameter, path of the parameter it is), from the built module."""
    first: dict[int, str] = {}
    for n, p in model.named_parameters():
        first.setdefault(id(p), n)
    out = []
    for node in graph.nodes:
        if node.tie is None:
            continue
        for n, p in model.get_submodule(node.name).named_parameters(remove_duplicate=False):
            path = f"{node.name}.{n}"
            if first.get(id(p), path) != path:
                out.append((path, first[id(p)]))
    return out


def _frozen(model: NetcalcModule) -> list[str]:
    return [n for n, p in model.named_parameters() if not p.requires_grad]

