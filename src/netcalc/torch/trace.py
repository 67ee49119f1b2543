"""A torch module -> a flat list of spec layers (:class:`Op`), each at its module path.

:func:`trace` runs ``torch.fx`` symbolic tracing with every module of a registered
torch.nn type as a leaf (its spec layer is the type of the same name), then runs the
graph once on meta tensors to learn every value. Each tensor-valued node becomes one
:class:`Op`:

* a leaf module: the spec layer of its class, named by its path (``layer1.0.conv1``), its
  arguments read from the module's attributes of the same (torch) names
  (:func:`leaf_args`); a leaf called a second time is named ``relu_1`` ...;
* a functional or tensor op (``x + y``, ``torch.cat``, ``x.view(...)``, ``x[:, 0]``, ...):
  the spec layer of :data:`OPS`, named by the path of the module whose forward calls it
  plus the op (``layer1.0.add``);
* a parameter or buffer read in forward (``get_attr``): a ``Parameter``/``Buffer`` layer
  at its attribute path (``class_token``), so state_dict keys stay the source's, made
  where it is first used (a weight passed to ``F.linear`` of its own ``nn.Linear`` is
  that Linear instead);
* a ``torch.fx.wrap``-ped function of torchvision: the layers :mod:`netcalc.torch.wrapped`
  writes for it.

Size arithmetic (``x.shape``, ``x.size(0)``, ``n // 2``) is evaluated, never a layer:
view arguments come from the measured output shape, per sample, so views stay
batch-generic (the trace runs at batch 2 so the batch dim can be told apart). A tensor
made from parameters and buffers only has no batch dim: its views are whole-shape
(``Reshape: {shape: [49, 49, -1], batch: false}``). What cannot be expressed raises
:class:`Unsupported` naming the op and the module path.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import fx, nn

from ..layers import REGISTRY

TRACE_BATCH = 2  # the batch of the meta run: dim 0 must be it, so views stay generic


class Unsupported(Exception):
    """An op or module netcalc cannot express: ``str`` names the op and the module path."""


@dataclass(frozen=True)
class Ref:
    """Output ``index`` (None: the only one) of the op at ``path``, or a spec input."""

    path: str
    index: int | None = None


@dataclass(frozen=True)
class Held:
    """A parameter or buffer read in forward (``get_attr``), not yet a layer."""

    target: str
    tensor: Any = field(compare=False, repr=False)


@dataclass
class Op:
    path: str  # full dotted name
    type: str
    args: dict[str, Any]
    inputs: list[Ref]
    shapes: list[tuple[int, ...]]  # output shapes, batch included
    params: int = 0  # parameters + buffers it owns (a leaf module, Parameter, Buffer)
    module: bool = False  # a leaf module (its name is a state_dict prefix)
    tie: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def leaf_type(module: nn.Module) -> str | None:
    """The spec type of a module netcalc expresses as one layer, or None."""
    cls = type(module)
    name = cls.__name__
    if name not in REGISTRY:
        return None
    if cls.__module__.startswith("torch.nn.") and getattr(nn, name, None) is cls:
        return name
    if name == "StochasticDepth" and cls.__module__.startswith("torchvision."):
        return name
    return None


def _plain(value: Any) -> Any:
    """A YAML-writable argument value: tuples as lists, one repeated value as a scalar."""
    if isinstance(value, torch.Size):
        value = tuple(value)
    if isinstance(value, (tuple, list)):
        items = [_plain(v) for v in value]
        if len(items) > 1 and all(v == items[0] for v in items) and \
                not isinstance(items[0], (list, dict)):
            return items[0]
        return items
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    raise Unsupported(f"argument value {value!r}")


def leaf_args(module: nn.Module, type_name: str) -> dict[str, Any]:
    """The spec arguments of a leaf module: each argument of the layer type read from the
    module's attribute of the same (torch) name; ``bias`` is whether the module holds one;
    input sizes (inferred from the input) and defaults are left out."""
    layer = REGISTRY[type_name]
    reader = getattr(layer, "args_from_torch", None)
    if reader is not None:
        try:
            return reader(module)
        except ValueError as exc:
            raise Unsupported(f"{type_name}: {exc}") from None
    args: dict[str, Any] = {}
    for name, arg in layer.args.items():
        if getattr(arg, "inferred", False):
            continue
        if name == "bias" and isinstance(getattr(module, "bias", None), (torch.Tensor, type(None))):
            value: Any = getattr(module, "bias", None) is not None
        elif hasattr(module, name):
            value = getattr(module, name)
        else:
            continue
        value = _plain(value)
        default = None if arg.required else arg.default
        if not arg.required and (value == default or value == _plain_default(arg.default)):
            continue
        args[name] = value
    return args


def _plain_default(value: Any) -> Any:
    try:
        return _plain(value)
    except Unsupported:
        return value


# ---------------------------------------------------------------------------- ops
# name -> handler(tracer, node, args: list of concrete/Ref values, kwargs) -> (type, args, inputs)
OpResult = tuple[str, dict[str, Any], list[Any]]
OPS: dict[str, Callable[..., OpResult]] = {}


def op(*names: str):
    def register(fn):
        for n in names:
            OPS[n] = fn
        return fn
    return register


def _bind(args: list, kwargs: dict, names: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    bound = dict(defaults)
    bound.update(zip(names, args))
    bound.update(kwargs)
    return bound


def _is_tensor(v: Any) -> bool:
    return isinstance(v, Ref)


def _elementwise(name: str, scalar_type: str | None = None):
    def handler(t: "Tracer", node, args, kwargs) -> OpResult:
        a, b = args[0], args[1]
        if _is_tensor(a) and _is_tensor(b):
            return name, {}, [a, b]
        tensor, const = (a, b) if _is_tensor(a) else (b, a)
        if scalar_type is None or not isinstance(const, (int, float)):
            raise Unsupported(f"{node.target} of a tensor and {const!r}")
        if name == "Scale" and node.target in (operator.truediv, operator.itruediv, "div",
                                               "div_", torch.div) and tensor is a:
            return "Scale", {"factor": 1 / const}, [tensor]
        if node.target in (operator.truediv, operator.itruediv) and tensor is b:
            raise Unsupported(f"division of {const!r} by a tensor")
        return scalar_type, {"factor": const}, [tensor]
    return handler


OPS.update({n: _elementwise("Add") for n in ("add", "iadd", "add_")})
OPS.update({n: _elementwise("Mul", "Scale") for n in ("mul", "imul", "mul_")})
OPS.update({n: _elementwise("Scale", "Scale") for n in ("truediv", "itruediv", "div", "div_")})


@op("matmul", "bmm", "mm")
def _matmul(t, node, args, kwargs):
    return "MatMul", {}, [args[0], args[1]]


@op("cat", "concat", "concatenate")
def _cat(t, node, args, kwargs):
    b = _bind(args, kwargs, ["tensors", "dim"], {"dim": 0})
    return "Concat", {"dim": b["dim"]}, list(b["tensors"])


@op("flatten")
def _flatten(t, node, args, kwargs):
    b = _bind(args, kwargs, ["input", "start_dim", "end_dim"], {"start_dim": 0, "end_dim": -1})
    return "Flatten", {"start_dim": b["start_dim"], "end_dim": b["end_dim"]}, [b["input"]]


def _reduce(name: str):
    def handler(t, node, args, kwargs):
        b = _bind(args, kwargs, ["input", "dim", "keepdim"], {"dim": None, "keepdim": False})
        if b["dim"] is None:
            raise Unsupported(f"{node.target} over every dim (the batch too)")
        return name, {"dim": _plain(b["dim"]), "keepdim": b["keepdim"]}, [b["input"]]
    return handler


OPS.update({"mean": _reduce("Mean"), "sum": _reduce("Sum"), "amax": _reduce("Amax")})


@op("chunk")
def _chunk(t, node, args, kwargs):
    b = _bind(args, kwargs, ["input", "chunks", "dim"], {"dim": 0})
    return "Chunk", {"chunks": b["chunks"], "dim": b["dim"]}, [b["input"]]


@op("split")
def _split(t, node, args, kwargs):
    b = _bind(args, kwargs, ["input", "split_size_or_sections", "dim"], {"dim": 0})
    size = b["split_size_or_sections"]
    return "Split", {"split_size_or_sections": _plain(list(size)) if isinstance(size, (list, tuple))
                     else size, "dim": b["dim"]}, [b["input"]]


def _softmax(name: str):
    def handler(t, node, args, kwargs):
        b = _bind(args, kwargs, ["input", "dim"], {"dim": None})
        return name, {"dim": b["dim"]}, [b["input"]]
    return handler


OPS.update({"softmax": _softmax("Softmax"), "log_softmax": _softmax("LogSoftmax")})


def _activation(name: str, *params: tuple[str, Any]):
    def handler(t, node, args, kwargs):
        names = ["input", *(p for p, _ in params)]
        b = _bind(args, kwargs, names, dict(params))
        return name, {p: b[p] for p, d in params if b[p] != d}, [b["input"]]
    return handler


for _name, _type, _params in (
        ("relu", "ReLU", ()), ("relu_", "ReLU", ()), ("relu6", "ReLU6", ()),
        ("gelu", "GELU", (("approximate", "none"),)), ("silu", "SiLU", ()),
        ("hardswish", "Hardswish", ()), ("hardsigmoid", "Hardsigmoid", ()),
        ("sigmoid", "Sigmoid", ()), ("tanh", "Tanh", ()), ("mish", "Mish", ()),
        ("elu", "ELU", (("alpha", 1.0),)), ("leaky_relu", "LeakyReLU", (("negative_slope", 0.01),)),
        ("hardtanh", "Hardtanh", (("min_val", -1.0), ("max_val", 1.0))),
        ("exp", "Exp", ()), ("clamp", "Clamp", (("min", None), ("max", None))),
        ("clip", "Clamp", (("min", None), ("max", None))),
        ("normalize", "Normalize", (("p", 2.0), ("dim", 1), ("eps", 1e-12)))):
    OPS[_name] = _activation(_type, *_params)


@op("dropout")
def _dropout(t, node, args, kwargs):
    b = _bind(args, kwargs, ["input", "p"], {"p": 0.5})
    return "Dropout", {"p": b["p"]}, [b["input"]]


@op("adaptive_avg_pool2d", "adaptive_avg_pool1d", "adaptive_max_pool2d", "adaptive_avg_pool3d")
def _adaptive(t, node, args, kwargs):
    b = _bind(args, kwargs, ["input", "output_size"], {})
    kind = node.target if isinstance(node.target, str) else node.target.__name__
    nd = kind[-2:]
    name = ("AdaptiveMaxPool" if "max" in kind else "AdaptiveAvgPool") + nd
    return name, {"output_size": _plain(b["output_size"])}, [b["input"]]


@op("avg_pool2d", "max_pool2d", "avg_pool1d", "max_pool1d")
def _pool(t, node, args, kwargs):
    kind = node.target if isinstance(node.target, str) else node.target.__name__
    if "max" in kind:
        names = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"]
        defaults = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False}
    else:
        names = ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"]
        defaults = {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True}
    b = _bind(args, kwargs, names, defaults)
    name = ("MaxPool" if "max" in kind else "AvgPool") + kind[-2:]
    out = {"kernel_size": _plain(b["kernel_size"])}
    for k in names[2:]:
        v = _plain(b[k]) if b[k] is not None else None
        if v not in (defaults[k], [], None) and not (k == "stride" and v == out["kernel_size"]):
            out[k] = v
    return name, out, [b["input"]]


@op("interpolate", "upsample")
def _interpolate(t, node, args, kwargs):
    b = _bind(args, kwargs, ["input", "size", "scale_factor", "mode", "align_corners"],
              {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None})
    out = {k: _plain(b[k]) for k in ("size", "scale_factor", "mode", "align_corners")
           if b[k] is not None}
    return "Upsample", out, [b["input"]]


@op("scaled_dot_product_attention")
def _sdpa(t, node, args, kwargs):
    b = _bind(args, kwargs, ["query", "key", "value", "attn_mask", "dropout_p", "is_causal",
                             "scale"], {"attn_mask": None, "dropout_p": 0.0, "is_causal": False,
                                        "scale": None})
    out = {k: b[k] for k in ("is_causal", "scale") if b[k] not in (None, False)}
    inputs = [b["query"], b["key"], b["value"]]
    if b["attn_mask"] is not None:
        inputs.append(b["attn_mask"])
    if kwargs.get("enable_gqa"):
        out["enable_gqa"] = True
    return "ScaledDotProductAttention", out, inputs


@op("einsum")
def _einsum(t, node, args, kwargs):
    operands = args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = list(operands[0])
    return "Einsum", {"equation": args[0]}, list(operands)


@op("roll")
def _roll(t, node, args, kwargs):
    b = _bind(args, kwargs, ["input", "shifts", "dims"], {"dims": None})
    if b["dims"] is None:
        raise Unsupported("roll without dims (over the flattened batch)")
    return "Roll", {"shifts": _plain(b["shifts"]), "dims": _plain(b["dims"])}, [b["input"]]


@op("pad")
def _pad(t, node, args, kwargs):
    b = _bind(args, kwargs, ["input", "pad", "mode", "value"], {"mode": "constant", "value": None})
    if b["mode"] != "constant":
        raise Unsupported(f"pad mode {b['mode']!r}")
    pad = list(b["pad"])
    nd = len(pad) // 2
    if b["value"] in (None, 0, 0.0):
        return f"ZeroPad{nd}d", {"padding": pad}, [b["input"]]
    return f"ConstantPad{nd}d", {"padding": pad, "value": b["value"]}, [b["input"]]


def _view_like(t, node, args, kwargs):
    """reshape/view/unflatten...: a Reshape to the measured per-sample shape (the whole
    shape for a tensor without a batch dim)."""
    if t.batchless(args[0]):
        return "Reshape", {"shape": list(t.shape_of(node)), "batch": False}, [args[0]]
    return "Reshape", {"shape": list(t.shape_of(node)[1:])}, [args[0]]


for _name in ("view", "reshape", "unflatten", "squeeze", "unsqueeze"):
    OPS[_name] = _view_like


@op("permute")
def _permute(t, node, args, kwargs):
    dims = args[1:] if len(args) > 2 or not isinstance(args[1], (list, tuple)) else args[1]
    dims = kwargs.get("dims", dims)
    return "Permute", {"dims": [int(d) for d in dims]}, [args[0]]


@op("transpose", "swapaxes")
def _transpose(t, node, args, kwargs):
    b = _bind(args, kwargs, ["input", "dim0", "dim1"], {})
    rank = len(t.shape_of(node))
    dims = list(range(rank))
    a, c = b["dim0"] % rank, b["dim1"] % rank
    dims[a], dims[c] = dims[c], dims[a]
    return "Permute", {"dims": dims}, [b["input"]]


@op("expand")
def _expand(t, node, args, kwargs):
    """Per sample; a tensor without the batch (a class token) takes it from the input."""
    shape = t.shape_of(node)
    source = t.shapes[node.args[0]].shape
    if source[0] == shape[0]:
        return "Expand", {"size": list(shape[1:])}, [args[0]]
    return "Expand", {"size": list(shape[1:])}, [args[0], Ref(next(iter(t.inputs)))]


@op("select")
def _select(t, node, args, kwargs):
    b = _bind(args, kwargs, ["input", "dim", "index"], {})
    return "Select", {"dim": b["dim"], "index": b["index"]}, [b["input"]]


# ops that return their input (or a copy of it) unchanged: no layer
PASS_THROUGH = {"contiguous", "clone", "detach", "float", "to", "type_as"}
# calls that produce no tensor and leave the graph alone
IGNORED = {"_assert", "_assert_async", "is_scripting", "is_tracing"}


def _op_name(node: fx.Node) -> str:
    target = node.target
    if isinstance(target, str):
        return target
    name = getattr(target, "__name__", str(target))
    return name


# ---------------------------------------------------------------------------- tracer
class LeafTracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return leaf_type(m) is not None


@dataclass
class Traced:
    ops: list[Op]
    inputs: dict[str, tuple[tuple[int, ...], str]]  # name -> (per-sample shape, dtype)
    outputs: list[Ref]
    scopes: dict[str, str]  # module path -> class name (every module on a path)
    owner: dict[str, str]  # op path -> the module path whose forward made it


class Tracer:
    """One module traced: see the module docstring."""

    def __init__(self, module: nn.Module, inputs: dict[str, torch.Tensor], opaque: bool = False):
        self.root = module
        self.inputs = inputs
        self.opaque = opaque  # what cannot be expressed becomes an Opaque layer
        self.values: dict[fx.Node, Any] = {}  # concrete values: Ref(s) for tensors, else values
        self.shapes: dict[fx.Node, Any] = {}  # the meta run's outputs
        self.ops: list[Op] = []
        self.held: dict[Held, Ref] = {}
        self.read: dict[Held, int] = {}  # where each was read (its layer's place if unused)
        self.taken: set[Held] = set()  # weights a wrapped function's layer holds (Linear)
        self.names: set[str] = set()
        self.scopes: dict[str, str] = {}
        self.owner: dict[str, str] = {}
        self.result: Any = None  # what the module returned
        self.no_batch: set[str] = set()  # ops made from parameters and buffers only

    def shape_of(self, node: fx.Node) -> tuple[int, ...]:
        return tuple(self.shapes[node].shape)

    def batchless(self, value: Any) -> bool:
        """Whether a tensor value has no batch dim (made from parameters and buffers)."""
        return isinstance(value, Ref) and value.path in self.no_batch

    def use(self, value: Any) -> Any:
        """A value as an input: a parameter or buffer becomes its layer where first used."""
        if not isinstance(value, Held):
            return value
        if value not in self.held:
            self.held[value] = self._held(value.target, value.tensor)
        return self.held[value]

    def unique(self, path: str) -> str:
        return self._unique(path)

    def emit(self, o: Op, scope: str) -> Ref:
        return self._add(o, scope, None)

    def run(self) -> Traced:
        try:
            graph = LeafTracer().trace(self.root)
        except Exception as exc:  # noqa: BLE001: fx's refusal, quoted in one line
            raise Unsupported(f"torch.fx cannot trace {type(self.root).__name__}: "
                              f"{type(exc).__name__}: {exc}") from exc
        gm = fx.GraphModule(self.root, graph)
        for path, m in self.root.named_modules():
            if path:
                self.scopes[path] = type(m).__name__
        placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        feeds = list(self.inputs.items())
        if len(feeds) > len(placeholders):
            raise Unsupported(f"{len(feeds)} inputs given, forward takes {len(placeholders)}")
        real = self._interpret(gm, graph, placeholders, feeds)
        self._unused_held()
        out_node = next(n for n in graph.nodes if n.op == "output")
        self.result = fx.map_arg(out_node.args[0], lambda n: real[n])
        outputs = self._refs_of(fx.map_arg(out_node.args[0], lambda n: self.use(self.values[n])))
        return Traced(self.ops, {name: (tuple(x.shape[1:]), "int64" if x.dtype == torch.int64
                                        else "float32") for name, x in feeds},
                      outputs, self.scopes, self.owner)

    def _refs_of(self, value: Any) -> list[Ref]:
        if isinstance(value, Ref):
            return [value]
        if isinstance(value, (tuple, list)):
            return [r for v in value for r in self._refs_of(v)]
        if isinstance(value, dict):
            return [r for v in value.values() for r in self._refs_of(v)]
        raise Unsupported(f"the model returns {type(value).__name__}, not tensors")

    def _interpret(self, gm, graph, placeholders, feeds) -> None:
        real: dict[fx.Node, Any] = {}
        for i, node in enumerate(placeholders):
            if i < len(feeds):
                name, tensor = feeds[i]
                real[node] = tensor
                self.values[node] = Ref(name)
            else:  # a default argument
                real[node] = node.args[0] if node.args else None
                self.values[node] = real[node]
        for node in graph.nodes:
            if node.op in ("placeholder", "output"):
                continue
            args = fx.map_arg(node.args, lambda n: real[n])
            kwargs = fx.map_arg(node.kwargs, lambda n: real[n])
            try:
                if node.op == "get_attr":
                    result = _fetch(gm, node.target)
                elif node.op == "call_module":
                    result = gm.get_submodule(node.target)(*args, **kwargs)
                elif node.op == "call_method":
                    result = getattr(args[0], node.target)(*args[1:], **kwargs)
                else:
                    result = node.target(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001: the model's own refusal
                where = node.target if node.op == "call_module" else self._scope(node) or "forward"
                raise InputRejected(f"{where}: {type(exc).__name__}: {exc}") from exc
            real[node] = result
            self.shapes[node] = result
            self.values[node] = self._convert(node, result)
        return real

    def _unused_held(self) -> None:
        """A parameter or buffer read but never used as a tensor (only its size): its
        layer all the same, where it was read, so the state_dict keys stay the source's."""
        for held, at in sorted(self.read.items(), key=lambda kv: -kv[1]):
            if held in self.held or held in self.taken:
                continue
            start = len(self.ops)
            self.use(held)
            made, self.ops[start:] = self.ops[start:], []
            self.ops[at:at] = made

    def _scope(self, node: fx.Node) -> str:
        stack = node.meta.get("nn_module_stack") or {}
        paths = [v[0] for v in stack.values()]
        if node.op == "call_module" and paths:
            paths = paths[:-1]
        return paths[-1] if paths else ""

    def _unique(self, path: str) -> str:
        name, k = path, 0
        while name in self.names:
            k += 1
            name = f"{path}_{k}"
        self.names.add(name)
        return name

    def _convert(self, node: fx.Node, result: Any) -> Any:
        """The node's value for later nodes: a Ref for a tensor made by a new layer, a
        concrete value for sizes and constants."""
        if not _has_tensor(result):
            return result  # size arithmetic, flags: evaluated, never a layer
        scope = self._scope(node)
        if node.op == "get_attr":
            held = Held(node.target, result)
            self.read.setdefault(held, len(self.ops))
            return held
        if node.op == "call_function" and _qualname(node.target) in WRAPPED:
            raw = fx.map_arg(node.args, lambda n: self.values[n])
            kraw = fx.map_arg(node.kwargs, lambda n: self.values[n])
            return WRAPPED[_qualname(node.target)](self, node, scope, list(raw), dict(kraw),
                                                   result)
        vals = fx.map_arg(node.args, lambda n: self.use(self.values[n]))
        kvals = fx.map_arg(node.kwargs, lambda n: self.use(self.values[n]))
        if node.op == "call_module":
            module = self.root.get_submodule(node.target)
            type_name = leaf_type(module)
            assert type_name is not None
            params = sum(p.numel() for p in module.parameters()) + \
                sum(b.numel() for b in module.buffers())
            try:
                args = leaf_args(module, type_name)
            except Unsupported as exc:
                if not self.opaque:
                    raise Unsupported(f"module {node.target}: {exc}") from None
                return self._opaque(self._unique(node.target), vals, kvals, result, scope,
                                    sum(p.numel() for p in module.parameters()), node.target)
            inputs = [v for v in (*vals, *kvals.values()) if isinstance(v, Ref)]
            if type_name == "MultiheadAttention" and len(set(inputs)) == 1:
                inputs = inputs[:1]  # self-attention: one input
            path = self._unique(node.target)
            if path != node.target and params:
                raise Unsupported(f"module {node.target} ({type_name}) is called twice")
            return self._add(Op(path, type_name, args, inputs, _shapes(result), params,
                                module=True), scope, result)
        name = _op_name(node)
        if name in IGNORED:
            return None
        if name in PASS_THROUGH:
            return vals[0]
        if name == "getitem":
            return self._getitem(node, vals, result, scope)
        if name == "layer_norm":
            return self._layer_norm(node, list(vals), dict(kvals), result, scope)
        where = f"{scope + '.' if scope else ''}{name}"
        path = f"{scope}.{name.rstrip('_')}" if scope else name.rstrip("_")
        try:
            type_name, args, inputs = self._op(node, name, where, vals, kvals)
        except Unsupported:
            if not self.opaque:
                raise
            return self._opaque(self._unique(path), vals, kvals, result, scope, 0, where)
        return self._add(Op(self._unique(path), type_name, args, inputs, _shapes(result)), scope,
                         result)

    def _op(self, node, name, where, vals, kvals) -> OpResult:
        handler = OPS.get(name)
        if handler is None:
            raise Unsupported(f"{where}: op {_describe(node)} has no netcalc layer")
        try:
            type_name, args, inputs = handler(self, node, list(vals), dict(kvals))
        except Unsupported as exc:
            raise Unsupported(f"{where}: {exc}") from None
        if any(not isinstance(i, Ref) for i in inputs):
            raise Unsupported(f"{where}: op {_describe(node)} on a tensor made outside "
                              "the model's modules (a constant)")
        if type_name == "Reshape" and args.get("batch", True) and \
                tuple(self.shape_of(node))[:1] != (TRACE_BATCH,):
            raise Unsupported(f"{where}: a view that moves the batch dim "
                              f"(shape {list(self.shape_of(node))})")
        return type_name, args, inputs

    def _opaque(self, path, vals, kvals, result, scope, params, where) -> Any:
        """An Opaque layer for what cannot be expressed (``--opaque``): the measured
        per-sample output shape and parameter count."""
        refs = _refs_in((vals, kvals))
        if not isinstance(result, torch.Tensor) or result.shape[:1] != (TRACE_BATCH,) \
                or not refs:
            raise Unsupported(f"{where}: not even as an Opaque layer (it needs an input and "
                              "one output with the batch at dim 0)")
        args = {"shape": list(result.shape[1:])}
        if params:
            args["params"] = params
        return self._add(Op(path, "Opaque", args, list(dict.fromkeys(refs)), _shapes(result),
                            params, module=bool(params)), scope, result)

    def _getitem(self, node, vals, result, scope) -> Any:
        base, index = vals[0], vals[1]
        if isinstance(base, (tuple, list)):
            return base[index]
        if not isinstance(base, Ref):
            return result
        if isinstance(index, Ref):  # a table indexed by a tensor (a buffer of indices)
            if len(self.shapes[node.args[1]].shape) != 1:
                raise Unsupported(f"{scope}.getitem: indexing with a tensor of more than 1 dim")
            name = f"{scope}.getitem" if scope else "getitem"
            return self._add(Op(self._unique(name), "IndexSelect", {"dim": 0}, [base, index],
                                _shapes(result)), scope, result)
        # indexing a tensor: one Slice or Select per indexed dim
        index = index if isinstance(index, tuple) else (index,)
        ref, dim = base, 0
        rank = len(self.shapes[node.args[0]].shape)
        steps = []
        for k, item in enumerate(index):
            if item is Ellipsis:  # the dims after it count from the end
                selected = sum(1 for kind, _ in steps if kind == "Select")
                dim = rank - selected - len(index[k + 1:])
                continue
            if isinstance(item, slice):
                if item != slice(None):
                    if dim == 0:
                        raise Unsupported(f"{scope}.getitem: a slice of the batch dim")
                    args = {"dim": dim, "start": item.start or 0}
                    if item.stop is not None:
                        args["end"] = item.stop
                    if item.step not in (None, 1):
                        args["step"] = item.step
                    steps.append(("Slice", args))
                dim += 1
            elif isinstance(item, int) and dim > 0:
                steps.append(("Select", {"dim": dim, "index": item}))
            else:
                raise Unsupported(f"{scope}.getitem: indexing with {type(item).__name__}")
        if not steps:
            return base
        name = f"{scope}.getitem" if scope else "getitem"
        for i, (kind, args) in enumerate(steps):
            last = i == len(steps) - 1
            shape = _shapes(result) if last else []
            ref = self._add(Op(self._unique(name), kind, args, [ref], shape), scope, None)
        return ref

    def _layer_norm(self, node, args, kwargs, result, scope) -> Ref:
        """F.layer_norm(x, shape, weight, bias, eps) with the module's own weight and bias
        (torchvision's LayerNorm2d): LayerNorm without affine, Mul weight, Add bias."""
        b = _bind(args, kwargs, ["input", "normalized_shape", "weight", "bias", "eps"],
                  {"weight": None, "bias": None, "eps": 1e-5})
        base = f"{scope}.layer_norm" if scope else "layer_norm"
        ln = {"normalized_shape": _plain(list(b["normalized_shape"])), "eps": b["eps"],
              "elementwise_affine": False}
        ref = self._add(Op(self._unique(base), "LayerNorm", ln, [b["input"]],
                           _shapes(result)), scope, None)
        for key, kind in (("weight", "Mul"), ("bias", "Add")):
            if b[key] is not None:
                ref = self._add(Op(self._unique(f"{base}_{key}"), kind, {}, [ref, b[key]],
                                   _shapes(result)), scope, None)
        return ref

    def _held(self, target: str, result: Any) -> Ref:
        base = getattr(result, "_base", None)
        if target.startswith("_tensor_constant") and base is not None:
            # fx ran a view of a buffer (MaxViT's index.view(-1)) and kept its result as a
            # constant: the buffer at its own path, then the view (whole: no batch dim)
            name = next((n for n, b in self.root.named_buffers() if b is base), None)
            if name is not None and base.numel() == result.numel():
                owner = name.rpartition(".")[0]
                ref = self.use(Held(name, base))
                view = f"{owner}.view" if owner else "view"
                return self._add(Op(self._unique(view), "Reshape",
                                    {"shape": list(result.shape), "batch": False}, [ref],
                                    [tuple(result.shape)]), owner, result)
        is_param = isinstance(result, nn.Parameter)
        kind = "Parameter" if is_param else "Buffer"
        args: dict[str, Any] = {"shape": list(result.shape)}
        if not is_param and result.dtype == torch.int64:
            args["dtype"] = "int64"
        elif not result.is_floating_point():
            raise Unsupported(f"{target}: a {result.dtype} buffer")
        owner = target.rpartition(".")[0]
        return self._add(Op(self._unique(target), kind, args, [], [tuple(result.shape)],
                            result.numel(), module=True), owner, result)

    def _add(self, o: Op, scope: str, result: Any) -> Any:
        o.args = _without_defaults(o.type, o.args)
        self.ops.append(o)
        if o.type in ("Parameter", "Buffer", "Constant") or \
                (o.inputs and all(r.path in self.no_batch for r in o.inputs)):
            self.no_batch.add(o.path)
        self.owner[o.path] = scope
        if isinstance(result, (tuple, list)):
            return tuple(Ref(o.path, i) for i in range(len(result)))
        return Ref(o.path)


class InputRejected(Exception):
    """The model refused the example input (its own error, quoted)."""


def _without_defaults(type_name: str, args: dict[str, Any]) -> dict[str, Any]:
    spec_args = REGISTRY[type_name].args
    out = {}
    for k, v in args.items():
        arg = spec_args[k]
        if not arg.required and (v == arg.default or v == _plain_default(arg.default)):
            continue
        out[k] = v
    return out


def _fetch(gm: nn.Module, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _refs_in(value: Any) -> list[Ref]:
    if isinstance(value, Ref):
        return [value]
    if isinstance(value, (tuple, list)):
        return [r for v in value for r in _refs_in(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _refs_in(v)]
    return []


def _has_tensor(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return True
    if isinstance(value, (tuple, list)):
        return any(_has_tensor(v) for v in value)
    if isinstance(value, dict):
        return any(_has_tensor(v) for v in value.values())
    return False


def _shapes(result: Any) -> list[tuple[int, ...]]:
    if isinstance(result, torch.Tensor):
        return [tuple(result.shape)]
    if isinstance(result, (tuple, list)):
        return [s for r in result for s in _shapes(r)]
    return []


def _qualname(target: Any) -> str:
    return f"{getattr(target, '__module__', '')}.{getattr(target, '__name__', '')}"


def _describe(node: fx.Node) -> str:
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__name__", str(target))
    return f"{module}.{name}" if module else name


from .wrapped import WRAPPED  # noqa: E402: wrapped.py builds on the names above
