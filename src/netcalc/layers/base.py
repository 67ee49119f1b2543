"""The layer contract and the registry.

Everything about one layer type lives in one class: its arguments (torch's names
and defaults), its shape rule, parameter and buffer counts, MACs, element-wise
FLOPs, receptive-field rule and torch builder. A subclass that leaves one of these
out cannot be registered: a missing rule is an error, never a silent 0. Types
without parameters or without MACs say so by inheriting :class:`Parameterless` or
:class:`MacFree` (both, plus no element-wise FLOPs: :class:`DataMovement`).

Training adds two rules, read by :mod:`netcalc.training`: ``backward_macs(grads)``
(the products of the gradients backward computes, given which inputs need one and
whether the weights do) and ``saved(grads, device)`` (the tensors autograd keeps for
the backward: :class:`Saved`, after ``tools/autograd/derivatives.yaml``). ``VIEW``,
``AUTOCAST`` and ``inplace`` say how the layer's output relates to its input's storage
and what ``torch.autocast`` does with it.

Life of a layer in a graph::

    layer = Conv2d(raw_args, ctx)      # validates arguments, fills defaults
    outs = layer.infer([x])            # shape rule; records inputs and outputs
    layer.params(), layer.macs(), ...  # counts, from the recorded shapes
    layer.receptive_field([rf_x])      # RF of the output
    layer.torch_module()               # nn.Module (imports torch lazily)

Counting conventions (netcalc's, torchvision's ``_ops``): 1 MAC = one
multiply-accumulate of a convolution or matrix product; bias, norms, activations,
pooling, adds and softmax are not MACs but element-wise FLOPs, and
``flops = 2*macs + elementwise_flops``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from math import prod
from typing import Any, ClassVar, NamedTuple, Sequence

from ..args import REQUIRED, Arg
from ..errors import Mark, SpecError, did_you_mean
from ..rf import RF

Shape = tuple[int, ...]

FLOAT = "float"
INT = "int64"
#: torch computes a tensor's storage bytes in int64: 2**60 elements of up to 8 bytes fit
MAX_NUMEL = 2**60

# What torch.autocast does with a layer (torch/amp autocast op lists): LOWER ops
# (conv, linear, matmul, attention, RNNs) run in the 16-bit dtype, casting their inputs
# and weights; FP32 ops (softmax, norms but BatchNorm, reductions) run in float32;
# FOLLOW ops run in the dtype of their input (promoting when inputs differ).
LOWER, FP32, FOLLOW = "lower", "fp32", "follow"
# MIXED: a block of ops (torch's transformer layers) whose 16-bit ops cast what they
# read and whose residual stream keeps its input's dtype: no input is cast, the output
# has the input's width, the weights are cast as LOWER ones, its intermediate tensors
# are listed with the LOW tag.
MIXED = "mixed"


class AttentionCache(NamedTuple):
    """One attention, as a KV cache sees it (see :meth:`Layer.attention_caches`).

    ``query`` and ``kv`` index the layer's inputs; ``elements`` are the key + value
    elements one key position of one sample holds (all kv heads: ``H_kv*E + H_kv*Ev``);
    ``length`` the key length S; ``causal`` whether a causal mask (or ``window``, a
    sliding window of that many keys) limits each query to earlier keys.
    """

    query: int
    kv: tuple[int, ...]
    elements: int
    length: int
    causal: bool
    window: int | None = None


@dataclass(frozen=True)
class TensorInfo:
    """What the analytic engine knows of a tensor: its shape (batch at dim 0) and kind."""

    shape: Shape
    dtype: str = FLOAT  # "float" (the --dtype) or "int64" (token ids)

    @property
    def numel(self) -> int:
        return prod(self.shape)


_MEMO_SIZE = 1024  # distinct argument sets remembered per layer type


def _given(raw: dict[str, Any]) -> tuple | None:
    """Arguments as given, as a hashable key (types kept: 1 and 1.0 and True differ);
    None when one is a list."""
    key = (*raw.items(), *map(type, raw.values()))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _frozen(value: Any) -> bool:
    """An argument value that instances may share: a scalar, or a tuple of scalars."""
    if type(value) is tuple:
        return all(map(_frozen, value))
    return value is None or type(value) in (int, float, bool, str)


@dataclass
class Ctx:
    """Where a layer comes from, for error messages."""

    name: str
    mark: Mark
    arg_marks: dict[str, Mark] = field(default_factory=dict)

    def error(self, message: str, arg: str | None = None) -> SpecError:
        mark = self.arg_marks.get(arg, self.mark) if arg else self.mark
        return SpecError(f"{self.name}: {message}", mark)


class Grads(NamedTuple):
    """Which gradients the backward of one layer computes, as autograd decides: one
    flag per input (it descends from a trainable parameter) and one for the layer's own
    weights (trainable, with parameters)."""

    inputs: tuple[bool, ...]
    weight: bool

    @property
    def any(self) -> bool:
        return self.weight or any(self.inputs)


INPUT, OUTPUT, EXTRA, FOLDED, WEIGHT = "input", "output", "extra", "folded", "weight"
ACT = "act"  # an extra kept in the activation dtype
ACC = "acc"  # statistics: float32, or float64 for float64 activations (torch's opmath)
LOW = "low"  # made by a 16-bit op: 2 bytes under autocast, else the activation dtype
# CPU's math attention computes a 16-bit q, k, v in float32 (opmath): UPCAST, an opmath
# copy kept only when the activations are 16-bit; FULL, kept (at the activation width)
# only when they are not (the operand the copy replaces)
UPCAST, FULL = "upcast", "full"


class Saved(NamedTuple):
    """One tensor autograd keeps for a layer's backward: input or output ``index`` of
    the layer (shared with every layer that keeps the same storage), or an EXTRA tensor
    of ``numel`` elements that only this layer keeps (pooling indices, a dropout mask,
    normalisation statistics), in ``dtype`` (ACT: the activation dtype), or a FOLDED
    input: input ``index`` reshaped by the kernel so that its dims ``merged`` become one
    (torch.matmul's ``reshape`` to ``bmm``'s 3-d operand): a view sharing the input's
    storage when its layout allows, else a copy of ``numel`` elements only this layer
    keeps (``reshape``'s rule: merged dims must be adjacent in memory), or a WEIGHT of
    ``numel`` elements as the kernel gets it: the parameter itself (no activation
    storage), except under ``torch.autocast``, where a 16-bit layer (``AUTOCAST =
    LOWER``) gets a 16-bit cast of it, a new storage that backward keeps."""

    kind: str
    index: int = 0
    numel: int = 0
    dtype: str = ACT
    merged: tuple[int, ...] = ()


def saved_input(i: int = 0) -> Saved:
    return Saved(INPUT, i)


def saved_output(i: int = 0) -> Saved:
    return Saved(OUTPUT, i)


def saved_extra(numel: int, dtype: str = ACT) -> Saved:
    return Saved(EXTRA, 0, numel, dtype)


def saved_folded(i: int, numel: int, merged: tuple[int, ...]) -> Saved:
    return Saved(FOLDED, i, numel, ACT, merged)


def saved_weight(numel: int) -> Saved:
    return Saved(WEIGHT, 0, numel)


REGISTRY: dict[str, type["Layer"]] = {}

# Methods every registered layer type must define somewhere below Layer.
CONTRACT = ("shape", "params", "macs", "elementwise_flops", "receptive_field", "torch_module",
            "backward_macs", "saved")
DEVICES = ("cuda", "cpu")  # the kernels that decide what backward keeps


def register(cls: type["Layer"]) -> type["Layer"]:
    """Class decorator: add a concrete layer type to the registry."""
    missing = [m for m in CONTRACT if getattr(cls, m) is getattr(Layer, m)]
    missing += [f for f in ("PARAMS_FORMULA", "MACS_FORMULA") if not getattr(cls, f)]
    if missing:
        raise TypeError(f"layer {cls.__name__} does not define {', '.join(missing)}")
    if cls.__name__ in REGISTRY:
        raise TypeError(f"layer {cls.__name__} registered twice")
    REGISTRY[cls.__name__] = cls
    return cls


class Layer:
    """Base class. Subclasses declare ``Arg`` class attributes and the contract methods."""

    #: argument given by a bare scalar (``Linear: 10``); None when the type takes none
    PRIMARY: ClassVar[str | None] = None
    #: how many inputs: (min, max); max None = any number
    ARITY: ClassVar[tuple[int, int | None]] = (1, 1)
    #: names of the outputs; references pick them with ``layer:name``
    OUTPUTS: ClassVar[tuple[str, ...]] = ("output",)
    #: input dtypes accepted: FLOAT only by default
    ACCEPTS: ClassVar[tuple[str, ...]] = (FLOAT,)
    #: number of spatial dims of the layer (convs, pools); 1 for others
    nd: ClassVar[int] = 1
    #: one line for ``netcalc layers``; falls back to the class docstring
    SUMMARY: ClassVar[str] = ""
    #: formula strings for ``netcalc layers``; required, like the contract methods
    PARAMS_FORMULA: ClassVar[str] = ""
    MACS_FORMULA: ClassVar[str] = ""
    #: a token-embedding table: its parameters are not in Kaplan's N (see sequence.py)
    EMBEDDING: ClassVar[bool] = False
    #: output 0 is a view of input 0 (shares its storage): reshapes, permutes, identity
    VIEW: ClassVar[bool] = False
    #: what torch.autocast does with the layer: LOWER, FP32 or FOLLOW (see above)
    AUTOCAST: ClassVar[str] = FOLLOW
    #: the output is the layer's own parameter or buffer (Parameter, Buffer): counted as
    #: weights or buffers, never as an activation
    HELD: ClassVar[bool] = False
    #: modules torch builds for one such layer, itself included (``len(list(m.modules()))``):
    #: what it counts toward the limit of layers after expansion (graph.MAX_NODES), since
    #: analysing it costs about as much as analysing its parts
    MODULES: ClassVar[int] = 1
    #: arguments that name a block of the spec's ``blocks:`` (MixtureOfExperts' ``expert``):
    #: the graph builder expands the block into a graph of its own and hands it to
    #: :meth:`bind_block`
    BLOCK_ARGS: ClassVar[tuple[str, ...]] = ()

    args: ClassVar[dict[str, Arg]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        collected: dict[str, Arg] = {}
        for base in reversed(cls.__mro__[1:]):  # the bases' own, already collected
            collected.update(base.__dict__.get("args", {}))
        for key, value in cls.__dict__.items():
            if isinstance(value, Arg):
                value.attr = key
                value.name = value.name or key
                collected[value.name] = value
        cls.args = collected

    # ------------------------------------------------------------------ arguments
    def __init__(self, raw: dict[str, Any] | None, ctx: Ctx):
        self.ctx = ctx
        raw = raw or {}
        #: the arguments as given, hashable (None: a list argument): with the inputs, all
        #: that the layer's shapes and counts depend on (netcalc.analysis reuses them)
        self.given = _given(raw)
        self.__dict__.update(self._checked(raw, ctx, self.given))
        self.inputs: list[TensorInfo] = []
        self.outputs: list[TensorInfo] = []
        self.validate()

    @classmethod
    def _checked(cls, raw: dict[str, Any], ctx: Ctx, key: tuple | None) -> dict[str, Any]:
        """The normalised argument values by attribute, defaults filled in, or a located
        error. Remembered per distinct set of scalar arguments ``key`` (a 10^4-layer spec
        repeats a few): the same arguments check the same way, and the values are
        immutable."""
        if key is not None:
            memo = cls.__dict__.get("_checked_memo")
            if memo is None:
                memo = cls._checked_memo = {}
            hit = memo.get(key)
            if hit is not None:
                return hit
        for k in raw:
            if k not in cls.args:
                hint = did_you_mean(str(k), cls.args)
                raise ctx.error(f"{cls.__name__} has no argument {k!r}{hint}", k)
        values = dict(cls._defaults())  # keyed by attribute, as the instance holds them
        for name, value in raw.items():
            if value is None:
                continue
            arg = cls.args[name]
            try:
                values[arg.attr] = arg.type.check(value, cls.nd)
            except ValueError as exc:
                raise ctx.error(f"argument {name}: {exc}", name) from None
        for name, arg in cls.args.items():
            if arg.required and arg.attr not in values:
                raise ctx.error(f"{cls.__name__} needs argument {name!r}", None)
        if key is not None and len(memo) < _MEMO_SIZE and all(map(_frozen, values.values())):
            memo[key] = values
        return values

    @classmethod
    def _defaults(cls) -> dict[str, Any]:
        """Normalised defaults by attribute, computed once per class (specs can have 10^5
        layers)."""
        cached = cls.__dict__.get("_default_values")
        if cached is None:
            cached = {}
            for arg in cls.args.values():
                if arg.required:
                    continue
                value = None if arg.default is REQUIRED else arg.default
                if value is not None and not isinstance(value, (bool, str)):
                    value = arg.type.check(value, cls.nd)
                cached[arg.attr] = value
            cls._default_values = cached
        return cached

    def validate(self) -> None:
        """Cross-argument constraints that need no input shape (override)."""

    def fail(self, message: str, arg: str | None = None) -> SpecError:
        return self.ctx.error(message, arg)

    def dim_index(self, dim: int, rank: int, arg: str = "dim", batch: bool = True) -> int:
        """``dim`` as a non-negative axis of a rank-``rank`` input (torch's negative dims
        count from the end), or a located error; ``batch=False`` refuses dim 0."""
        d = dim + rank if dim < 0 else dim
        if not 0 <= d < rank:
            raise self.fail(f"{arg}={dim} is out of range for a {rank}-d input", arg)
        if d == 0 and not batch:
            raise self.fail(f"{type(self).__name__} along the batch dim (dim 0) is not "
                            "supported: samples must stay independent", arg)
        return d

    def output_names(self) -> tuple[str, ...] | None:
        """Names ``layer:name`` picks (``layer:k`` picks the k-th): ``OUTPUTS``. None: numbered
        outputs whose count is known only from the input shape (Split by size)."""
        return self.OUTPUTS

    def check_inferred(self, name: str, actual: Any) -> Any:
        """Fill an input-size argument from the input, or check the given value."""
        attr = self.args[name].attr
        given = getattr(self, attr)
        if given is not None and given != actual:
            raise self.fail(f"{name}={given!r} but the input gives {actual!r}", name)
        setattr(self, attr, actual)
        return actual

    # ------------------------------------------------------------------ shapes
    def infer(self, inputs: Sequence[TensorInfo]) -> list[TensorInfo]:
        lo, hi = self.ARITY
        n = len(inputs)
        if n < lo or (hi is not None and n > hi):
            want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
            raise self.fail(f"{type(self).__name__} takes {want} input(s), got {n}", "from")
        for t in inputs:
            if t.dtype not in self.ACCEPTS:
                raise self.fail(self.dtype_message(t))
        self.inputs = list(inputs)
        result = self.shape(*(t.shape for t in inputs))
        shapes = [result] if result and isinstance(result[0], int) else list(result)
        for s in shapes:
            if s and min(s) <= 0:
                raise self.fail(f"output shape {list(s)} has a non-positive size "
                                f"(input {self.in_shapes_text()})")
            if prod(s) > MAX_NUMEL:
                raise self.fail(f"output shape {list(s)} has more than 2**60 elements "
                                "(torch cannot size its storage)")
        self.outputs = [TensorInfo(tuple(s), self.out_dtype()) for s in shapes]
        return self.outputs

    def dtype_message(self, t: TensorInfo) -> str:
        return (f"{type(self).__name__} needs a float input, got {t.dtype} "
                f"(token ids go through Embedding first)")

    def out_dtype(self) -> str:
        return self.inputs[0].dtype if self.inputs else FLOAT

    def in_shapes_text(self) -> str:
        return ", ".join(str(list(t.shape)) for t in self.inputs)

    @property
    def x(self) -> Shape:
        """Shape of the first input."""
        return self.inputs[0].shape

    @property
    def y(self) -> Shape:
        """Shape of the first output."""
        return self.outputs[0].shape

    def shape(self, *inputs: Shape) -> Shape | Sequence[Shape]:
        """Output shape(s) from input shapes (batch at dim 0); raise self.fail on misuse."""
        raise NotImplementedError

    # ------------------------------------------------------------------ counts
    def params(self) -> int:
        """Number of parameters, as ``sum(p.numel() for p in module.parameters())``."""
        raise NotImplementedError

    def buffers(self) -> int:
        """Number of buffer elements, as ``sum(b.numel() for b in module.buffers())``."""
        return 0

    def weight_shape(self) -> Shape | None:
        """Shape of the main weight, for ``tie:`` and ``sparsity:``; None if there is none."""
        return None

    def param_tensors(self) -> int:
        """Number of parameter tensors (optimizers keep per-tensor state such as Adam's
        ``step``): a weight, and a bias when the layer's ``bias`` argument is on."""
        if not self.params():
            return 0
        return 1 + (getattr(self, "bias", False) is True)

    def largest_param_tensor(self) -> int | None:
        """Elements of the largest parameter tensor, for a layer without one main weight
        (:meth:`weight_shape` None) that holds several tensors; None: all its parameters
        count as one."""
        return None

    def active_params(self) -> int | None:
        """Parameters one token uses, where that is fewer than :meth:`params` (a mixture
        of experts: the router and ``top_k`` experts); None: all of them."""
        return None

    def bind_block(self, arg: str, graph: Any) -> None:
        """Receive the graph (:class:`netcalc.graph.Graph`) of the block that argument
        ``arg`` (one of ``BLOCK_ARGS``) names."""
        raise NotImplementedError

    def int_buffers(self) -> int:
        """Buffer elements that are int64 whatever the dtype (``num_batches_tracked``)."""
        return 0

    def macs(self) -> int:
        """Multiply-accumulates of one forward pass of the recorded input (batch included)."""
        raise NotImplementedError

    def elementwise_flops(self) -> int:
        """FLOPs that are not MACs (bias adds, activations, norms, pooling, softmax)."""
        raise NotImplementedError

    def flops(self, macs: int | None = None) -> int:
        """2 x MACs + element-wise FLOPs (``macs``: the MACs, when already computed)."""
        return 2 * (self.macs() if macs is None else macs) + self.elementwise_flops()

    # ------------------------------------------------------------------ training
    def backward_macs(self, grads: Grads) -> int:
        """MACs of this layer's backward: the products computing each input gradient
        ``grads.inputs`` asks for, plus the weight gradient when ``grads.weight``."""
        raise NotImplementedError

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """Tensors autograd keeps for this layer's backward on ``device`` ("cpu" or
        "cuda"), asked only when ``grads.any``. Buffers are not listed; a parameter is
        listed as ``saved_weight`` where the kernel keeps it (it is no activation, but
        under autocast its 16-bit cast is)."""
        raise NotImplementedError

    def view_permutation(self) -> tuple[int, ...] | None:
        """For a VIEW layer that reorders dims (Permute): output dim i is input dim p[i].
        None for views that keep the order (a reshape of a non-contiguous tensor
        copies it)."""
        return None

    def view_dropped_dim(self) -> int | None:
        """For a VIEW layer that removes a dim of its input (Select): that dim, else None.
        The view keeps the input's strides: a gap where the dim was."""
        return None

    def output_order(self, device: str) -> tuple[int, ...] | None:
        """The physical order of output 0's dims when the kernel does not write it
        contiguously (a permutation of its logical dims), else None: tells training
        whether a later reshape is a view or a copy."""
        return None

    def index_bound(self, i: int) -> int | None:
        """Exclusive bound of the values input ``i`` may hold when it indexes a table
        (Embedding's ``num_embeddings``); None for inputs that are not indices. The torch
        builder fills index buffers and token inputs within it."""
        return None

    def writes_input(self) -> bool:
        """True when the layer overwrites its first input (``inplace: true``)."""
        return bool(getattr(self, "inplace", False))

    def extras(self) -> dict[str, Any]:
        """Figures shown beside the counts (``LayerResult.extra``), e.g. ``causal_macs``."""
        return {}

    def receptive_field(self, fields: list[RF | None]) -> RF | None:
        """Receptive field of the output, given those of the inputs."""
        raise NotImplementedError

    def output_fields(self, fields: list[RF | None]) -> list[RF | None]:
        """Receptive field of each output: the layer's one field, unless outputs differ
        (the pieces of a Chunk or Split along a spatial dim)."""
        return [self.receptive_field(fields)] * len(self.outputs)

    # ------------------------------------------------------------------ sequence models
    # Read by the sequence section (sequence.py); a layer without attention keeps these.
    def attention_terms(self) -> list[tuple[int, int]]:
        """(key length S, attention width d_attn) of each attention inside the layer."""
        return []

    def causal_macs(self) -> int | None:
        """MACs counting only the products a causal mask keeps; None without a causal mask."""
        return None

    def window_macs(self) -> int | None:
        """MACs counting only the products a sliding window keeps; None without one."""
        return None

    def attention_caches(self) -> list["AttentionCache"]:
        """Each attention inside the layer, as a KV cache would hold it (which of the
        layer's inputs give its query and its keys/values; the sequence section tells
        self- from cross-attention by whether those descend from the token input)."""
        return []

    # ------------------------------------------------------------------ torch
    def torch_module(self) -> Any:
        """A torch.nn.Module computing this layer (imports torch lazily)."""
        raise NotImplementedError

    def torch_namesake(self, **overrides: Any) -> Any:
        """``torch.nn.<this type's name>(**arguments)``: the builder of the many types
        whose arguments are torch's own."""
        import torch.nn as nn

        return getattr(nn, type(self).__name__)(**{**self.arg_values(), **overrides})

    # ------------------------------------------------------------------ docs
    @classmethod
    def summary(cls) -> str:
        if cls.SUMMARY:
            return cls.SUMMARY
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc else ""

    def arg_values(self) -> dict[str, Any]:
        """Argument values by their spec (and torch) names."""
        return {name: getattr(self, arg.attr) for name, arg in self.args.items()}


def numel(shape: Shape) -> int:
    return prod(shape)


# Declared zeros. A type inherits one of these on purpose; one that just forgets a
# count still fails ``register``.
class Parameterless(Layer):
    """Layers without parameters (activations, pools, merges, ...): ``params = 0``, and
    no main weight, so ``tie:`` and ``sparsity:`` refuse them."""

    PARAMS_FORMULA = "0"

    def params(self) -> int:
        return 0


class MacFree(Layer):
    """Layers without a convolution or matrix product: ``MACs = 0``, their work (if any)
    is element-wise FLOPs, forward and backward."""

    MACS_FORMULA = "0"

    def macs(self) -> int:
        return 0

    def backward_macs(self, grads: Grads) -> int:
        """0: no products backward either (element-wise gradients)."""
        return 0


class DataMovement(Parameterless, MacFree):
    """Layers that only move or copy values (padding, reshapes, dropout at inference):
    no parameters, no MACs, no element-wise FLOPs, and a backward that needs only
    sizes (``saved`` is empty; reflection/replication padding and dropout override)."""

    def elementwise_flops(self) -> int:
        return 0

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """Nothing: the backward needs only sizes."""
        return []


def matmul_backward(macs: int, grads: Grads, first: bool, second: bool) -> int:
    """A product ``C = A @ B`` of ``macs`` MACs costs as many again for ``dA = dC @ B^T``
    and for ``dB = A^T @ dC`` (derivatives.yaml ``mm``): one per gradient needed."""
    return macs * (first + second)
