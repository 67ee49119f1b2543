"""Named counting conventions: why two tools disagree on the MACs of the same model.

netcalc's own numbers (the ``netcalc`` convention, torchvision's ``_ops``: MACs of
convolutions and matrix products only, defined with the core engine) are one
convention among several. The three tools people compare against each follow
their own rules; this module states those rules, layer type by layer type, in one
table, and applies them to analysis results so that ::

    netcalc shapes spec.yaml --convention fvcore

prints, per layer and in total, exactly the number that tool prints. No torch is
imported here: every rule reads only the layer's type, arguments and the input and
output shapes the analysis recorded. ``netcalc verify`` (:mod:`netcalc.torch.crosscheck`)
runs the real tools and proves each rule: equality, not tolerance.

The conventions
---------------

``netcalc`` (unit MAC, the default)
    1 MAC per multiply-accumulate of a convolution (``numel(out) * C_in/groups *
    prod(k)``; transposed: over the input), a Linear/Bilinear/MatMul product, the
    q·k and p·v products of attention (full L×S, also when causal) and every gate
    product of an RNN at every step. Bias, norms, activations, pooling, resampling,
    adds and softmax are not MACs (they are element-wise FLOPs).

``fvcore`` (unit "flop" = 1 per fused multiply-add: same unit as MAC)
    ``fvcore.nn.FlopCountAnalysis(model, inputs).by_module()`` with its default op
    handles (fvcore 0.1.5 ``_DEFAULT_SUPPORTED_OPS``), model in ``eval()``. It counts
    the ops of a jit trace: ``aten::_convolution`` (same as netcalc; but a string
    ``padding: same|valid`` with ``padding_mode: zeros`` traces as
    ``aten::_convolution_mode``, unhandled: 0),
    ``aten::linear``
    / ``addmm`` / ``matmul`` / ``bmm`` / ``einsum``, ``aten::batch_norm`` (eval: 1 per
    element, 2 with affine; with batch statistics, i.e. ``track_running_stats:
    false``: 4, 5 with affine), ``group_norm`` / ``layer_norm`` / ``instance_norm``
    (4 per element, 5 with an affine weight), ``upsample_nearest2d`` (1 per output
    element), ``upsample_bilinear2d`` (4 per output element),
    ``adaptive_avg_pool2d`` (1 per INPUT element). Every other op counts 0 (it is
    "unsupported" and only warned about): RNN/LSTM/GRU (``aten::lstm``...),
    ``scaled_dot_product_attention`` (so attention counts only its projections),
    ``bilinear``, ``rms_norm``, ``embedding``, max/avg pooling (but
    ``adaptive_avg_pool2d``), 1-d/3-d, bicubic, trilinear and nearest-exact
    resampling, activations, softmax, adds, padding. ``aten::matmul`` is
    ``prod(a.shape) * b.shape[-1]``: a broadcast batch of ``b`` is not counted.
    ``aten::einsum`` is numpy's count for its optimal contraction path
    (``np.einsum_path(..., optimize="optimal")``, "Optimized FLOP count" / 2, floored):
    for two operands the product of the sizes of every label of both operands, halved
    (floored) when no label is summed; labels of one operand only are not summed away
    first, as torch does. Parameters, buffers, slicing, reductions, scaling and rotary
    embeddings count 0.

``flopcounter`` (unit FLOP = 2 per MAC)
    ``torch.utils.flop_counter.FlopCounterMode`` (torch 2.x): only ``mm``, ``addmm``,
    ``bmm``, ``baddbmm``, ``convolution`` and the fused SDPA kernels
    (``_scaled_dot_product_{flash,efficient,cudnn}_attention``) are counted, 2 per
    MAC; everything element-wise counts 0. It counts the ops torch actually
    dispatches, so the fused kernel torch picks decides:

    * on CPU, ``scaled_dot_product_attention`` of 4-d q, k, v with equal head dims
      runs ``_scaled_dot_product_flash_attention_for_cpu``, which is not in the
      registry: the attention products count 0 (MultiheadAttention and the
      Transformer layers always take this path: only their projections count).
      Other ranks, or ``Ev != E``, run the math path (``bmm``): counted;
    * on CPU, float32 ``LSTM`` without ``proj_size`` runs oneDNN's fused kernel when
      oneDNN is enabled (the default): 0. With projections, in float64, or GRU/RNN:
      counted;
    * on CUDA, RNN/LSTM/GRU run cuDNN: 0; every SDPA kernel is counted;
    * on ``meta`` every op decomposes: everything is counted (= 2 × netcalc).

    ``Bilinear`` (``aten::_trilinear``) counts 0. ``torch.einsum`` decomposes into
    ``bmm`` for each pair that contracts a label (2 x netcalc's Einsum MACs); its
    element-wise products and sums count 0.

``torchinfo`` (unit Mult-Adds, as ``torchinfo.summary(...).total_mult_adds``)
    torchinfo does not look at the ops at all: for every module it saw called it
    multiplies parameter counts by output sizes, then sums the LEAF modules only:

    * a module whose class name contains ``Conv`` (transposed ones too):
      ``(weight + bias elements) * N * prod(output spatial dims)``: the bias is
      counted, and a transposed conv is charged per OUTPUT position;
    * any other leaf module, for parameters named exactly ``weight`` / ``bias``:
      ``elements * output.shape[0]`` -- the batch only: a Linear on ``(N, L, F)``
      counts ``N * params`` (the L positions are ignored), a BatchNorm/LayerNorm/
      PReLU counts ``N * params``, an Embedding ``N * V * E``;
    * other parameters with ``weight``/``bias`` in their name (``weight_ih_l0`` of an
      RNN/LSTM/GRU): ``elements * output.shape[0] * output.shape[1]`` (N * L);
    * modules with children are not leaves and modules that are never called do not
      count: ``nn.MultiheadAttention`` (its ``out_proj`` is used as a tensor, not
      called) counts 0, so a TransformerEncoderLayer counts only its two Linear and
      its LayerNorm modules (``N * params`` each);
    * parameterless layers count 0 (attention products, MatMul, Einsum, pools...);
      a Parameter layer is a tensor at the layer's path, not a module: 0;
    * a tied weight counts on every layer that uses it.

Rules are per layer type (:data:`TABLE`); :func:`table_rows` lists them for the
docs and ``netcalc`` renderers, :func:`apply` rewrites a report's MACs and FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from math import prod
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .analysis import LayerResult, Report
    from .layers.base import Grads, Layer

NAMES = ("netcalc", "fvcore", "flopcounter", "torchinfo")


@dataclass(frozen=True)
class Context:
    """Where the tool runs: its number can depend on the kernels torch picks there."""

    device: str = "cpu"  # cpu | cuda | meta
    onednn: bool = True  # torch.backends.mkldnn enabled and available (CPU)
    dtype: str = "float32"


DEFAULT_CONTEXT = Context()

Count = Callable[["Layer", Context], int]


@dataclass(frozen=True)
class Rule:
    id: str  # e.g. "fvcore.norm": short, shown in verdicts
    text: str  # the rule in words, with its formula
    count: Count


BackwardCount = Callable[["Layer", "Grads", Context], int]


@dataclass(frozen=True)
class BackwardRule:
    id: str
    text: str
    count: BackwardCount  # in the convention's unit


@dataclass
class Convention:
    name: str
    unit: str  # what one count is: "MAC", "FLOP", "Mult-Add"
    scale: int  # counts per multiply-accumulate (FLOP: 2)
    summary: str
    rules: dict[str, Rule] = field(default_factory=dict)
    #: the backward pass, per layer type (only conventions that count one have these)
    backward: dict[str, BackwardRule] = field(default_factory=dict)

    def backward_rule(self, layer_type: str) -> BackwardRule:
        return self.backward.get(layer_type) or BackwardRule(
            f"{self.name}.backward", "the layer's backward MACs", _scaled_backward(self.scale))

    def rule(self, layer_type: str) -> Rule:
        rule = self.rules.get(layer_type)
        if rule is None:
            return Rule(f"{self.name}.unlisted", f"{layer_type} is not in the {self.name} table: "
                        "counted as netcalc's MACs", _scaled(self.scale))
        return rule

    def count(self, layer: "Layer", ctx: Context = DEFAULT_CONTEXT) -> tuple[int, Rule]:
        """This convention's count for one analysed layer, and the rule that gave it."""
        rule = self.rule(type(layer).__name__)
        return int(rule.count(layer, ctx)), rule

    def layer_count(self, row: "LayerResult", layer: "Layer | None",
                    ctx: Context = DEFAULT_CONTEXT) -> tuple[int, Rule]:
        if self.name == "netcalc" or layer is None:
            return row.macs * self.scale, self.rules.get(row.type) or _NETCALC_RULE
        return self.count(layer, ctx)


def _scaled(scale: int) -> Count:
    return lambda layer, ctx: scale * layer.macs()


def _scaled_backward(scale: int) -> BackwardCount:
    return lambda layer, grads, ctx: scale * layer.backward_macs(grads)


_NETCALC_RULE = Rule("netcalc", "netcalc's MACs (the layer's MACS_FORMULA)", _scaled(1))

# ----------------------------------------------------------------------------- helpers


def _in(layer: "Layer", i: int = 0) -> tuple[int, ...]:
    return layer.inputs[i].shape


def _out(layer: "Layer", i: int = 0) -> tuple[int, ...]:
    return layer.outputs[i].shape


def _zero(layer: "Layer", ctx: Context) -> int:
    return 0


def _macs(layer: "Layer", ctx: Context) -> int:
    return layer.macs()


def _twice(layer: "Layer", ctx: Context) -> int:
    return 2 * layer.macs()


def _parts(conv: str) -> Count:
    """Composite layers (torch's Transformer layers): the sum of their parts' rules."""
    def count(layer: "Layer", ctx: Context) -> int:
        c = CONVENTIONS[conv]
        return sum(c.count(part, ctx)[0] for part in getattr(layer, "parts", []))
    return count


def _gated(flag: str, on: int, off: int) -> Count:
    return lambda layer, ctx: prod(_in(layer)) * (on if getattr(layer, flag) else off)


# ----------------------------------------------------------------------------- fvcore
def _fv_conv(layer: "Layer", ctx: Context) -> int:
    same_or_valid = isinstance(getattr(layer, "padding", 0), str)
    if same_or_valid and getattr(layer, "padding_mode", "zeros") == "zeros":
        return 0  # aten::_convolution_mode; other padding modes pad first, then conv(padding=0)
    return layer.macs()


def _fv_batchnorm(layer: "Layer", ctx: Context) -> int:
    n = prod(_in(layer))
    if layer.track_running_stats:  # eval: aten::batch_norm with training=False
        return n * (2 if layer.affine else 1)
    return n * (5 if layer.affine else 4)  # batch statistics even in eval


def _fv_layernorm(layer: "Layer", ctx: Context) -> int:
    return prod(_in(layer)) * (5 if layer.elementwise_affine else 4)


def _fv_matmul(layer: "Layer", ctx: Context) -> int:
    a, b = _in(layer, 0), _in(layer, 1)
    return prod(a) * (b[-1] if len(b) >= 2 else 1)


def _fv_mha(layer: "Layer", ctx: Context) -> int:
    n, length, s, _ = layer._lengths
    e = layer.embed_dim
    return n * (2 * length * e * e + s * e * layer.kdim + s * e * layer.vdim)


def _fv_upsample(layer: "Layer", ctx: Context) -> int:
    mode = getattr(layer, "mode", "nearest")
    nd = len(_out(layer)) - 2
    per = {("nearest", 2): 1, ("bilinear", 2): 4}.get((mode, nd), 0)
    return prod(_out(layer)) * per


def _fv_adaptive_avg(layer: "Layer", ctx: Context) -> int:
    return prod(_in(layer)) if len(_in(layer)) == 4 else 0


def _fv_einsum(layer: "Layer", ctx: Context) -> int:
    """fvcore's einsum handle: numpy's optimal path, "Optimized FLOP count" // 2."""
    shapes = [t.shape for t in layer.inputs]
    if len(shapes) == 2:  # one contraction: numpy's count without numpy
        labels = frozenset().union(*layer.operands)
        whole = prod(layer.sizes[c] for c in labels)
        return whole if labels - set(layer.out_labels) else whole // 2
    import numpy as np  # fvcore's own dependency

    eq = layer.equation
    order = dict.fromkeys(c for c in eq if c.isalpha())
    eq = eq.translate({ord(c): 97 + i for i, c in enumerate(order)})
    path = np.einsum_path(eq, *(np.empty(s) for s in shapes), optimize="optimal")[1]
    line = next(x for x in path.split("\n") if "optimized flop" in x.lower())
    return int(float(line.split(":")[-1]) // 2)


_FV_TEXT_ZERO = "0: no fvcore handle for its ops (unsupported, warned about)"
_FV_TEXT_IGNORED = "0: only data movement (ignored by fvcore)"

# ----------------------------------------------------------------------------- flopcounter


def _fc_lstm(layer: "Layer", ctx: Context) -> int:
    if ctx.device == "meta":
        return 2 * layer.macs()
    if ctx.device == "cuda":
        return 0
    fused = ctx.onednn and ctx.dtype in ("float32", "bfloat16", "float16") and not layer.proj_size
    return 0 if fused else 2 * layer.macs()


def _fc_rnn(layer: "Layer", ctx: Context) -> int:
    return 0 if ctx.device == "cuda" else 2 * layer.macs()


def _fc_sdpa(layer: "Layer", ctx: Context) -> int:
    if ctx.device == "cpu" and layer.fused_on_cpu(training=False):
        return 0  # _scaled_dot_product_flash_attention_for_cpu: not in the registry
    return 2 * layer.macs()


def _fc_sdpa_backward(layer: "Layer", grads: "Grads", ctx: Context) -> int:
    if ctx.device == "cpu" and layer.fused_on_cpu(training=True, grads=grads):
        return 0
    return 2 * layer.backward_macs(grads)


def _fc_mha(layer: "Layer", ctx: Context) -> int:
    if ctx.device == "cpu":
        return 2 * _fv_mha(layer, ctx)  # the attention products run the CPU flash kernel
    return 2 * layer.macs()


def _fc_conv_backward(layer: "Layer", grads: "Grads", ctx: Context) -> int:
    """conv_backward_flop: the input gradient as the forward; the weight gradient is
    counted as a convolution of the transposed input and output gradient whose shape
    ignores ``groups``: groups times the real products."""
    return 2 * layer.macs() * (grads.inputs[0] + layer.groups * grads.weight)


def _fc_backward_if(forward: Count) -> BackwardCount:
    """Counted (2 per MAC) where the forward is counted, 0 where the kernel is fused."""
    return lambda layer, grads, ctx: 2 * layer.backward_macs(grads) if forward(layer, ctx) else 0


def _fc_mha_backward(layer: "Layer", grads: "Grads", ctx: Context) -> int:
    if ctx.device == "cpu" and layer.fused_on_cpu(grads):  # the CPU flash kernel
        return 2 * layer.projection_backward_macs(grads)
    return 2 * layer.backward_macs(grads)


def _fc_parts_backward(layer: "Layer", grads: "Grads", ctx: Context) -> int:
    c = CONVENTIONS["flopcounter"]
    return sum(c.backward_rule(type(p).__name__).count(p, layer.part_grads(p, grads), ctx)
               for p in getattr(layer, "parts", []))


# ----------------------------------------------------------------------------- torchinfo
def _ti_leaf(layer: "Layer", ctx: Context) -> int:
    """Leaf module with parameters named weight/bias: N * params (batch only)."""
    return _out(layer)[0] * layer.params()


def _ti_conv(layer: "Layer", ctx: Context) -> int:
    y = _out(layer)
    return layer.params() * y[0] * prod(y[2:])


def _ti_rnn(layer: "Layer", ctx: Context) -> int:
    y = _out(layer)
    return layer.params() * y[0] * y[1]


# ----------------------------------------------------------------------------- the table
CONVENTIONS: dict[str, Convention] = {
    "netcalc": Convention("netcalc", "MAC", 1, "netcalc's own count (torchvision's _ops): "
                          "MACs of convolutions and matrix products"),
    "fvcore": Convention("fvcore", "MAC", 1, "fvcore FlopCountAnalysis, default handles, eval "
                         "(1 per fused multiply-add)"),
    "flopcounter": Convention("flopcounter", "FLOP", 2, "torch.utils.flop_counter."
                              "FlopCounterMode (2 per MAC; matrix products only)"),
    "torchinfo": Convention("torchinfo", "Mult-Add", 1, "torchinfo.summary total_mult_adds "
                            "(parameters x output sizes of leaf modules)"),
}


def _add(conv: str, types: str, rule_id: str, text: str, count: Count) -> None:
    for t in types.split():
        CONVENTIONS[conv].rules[t] = Rule(f"{conv}.{rule_id}", text, count)


CONV = "Conv1d Conv2d Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d"
NORM_STATS = "GroupNorm InstanceNorm1d InstanceNorm2d InstanceNorm3d"
BATCHNORM = "BatchNorm1d BatchNorm2d BatchNorm3d"
ACTIVATIONS = ("ReLU ReLU6 LeakyReLU PReLU ELU SELU CELU GELU Sigmoid SiLU Mish Tanh Hardtanh "
               "Hardsigmoid Hardswish Softplus Softmax LogSoftmax Softmin Exp Clamp Normalize")
MOVES = ("Identity Flatten Unflatten Reshape Permute Dropout Dropout1d Dropout2d Dropout3d "
         "AlphaDropout FeatureAlphaDropout Concat")
POOLS = ("MaxPool1d MaxPool2d MaxPool3d AvgPool1d AvgPool2d AvgPool3d AdaptiveMaxPool1d "
         "AdaptiveMaxPool2d AdaptiveMaxPool3d LPPool1d LPPool2d LPPool3d")
PADS = ("ZeroPad1d ZeroPad2d ZeroPad3d ConstantPad1d ConstantPad2d ConstantPad3d "
        "ReflectionPad1d ReflectionPad2d ReflectionPad3d ReplicationPad1d ReplicationPad2d "
        "ReplicationPad3d")
RESAMPLE = "Upsample"
PIXEL = "PixelShuffle PixelUnshuffle ChannelShuffle"
MATRIX = "Linear MatMul"
RNNS = "RNN GRU LSTM"
TRANSFORMERS = "TransformerEncoderLayer TransformerDecoderLayer"
MOE = "MixtureOfExperts"  # counted by its parts: the router and the expert's layers
EMBEDDINGS = "Embedding EmbeddingBag"
ELEMENTWISE = "Add Mul"
TENSORS = "Parameter Buffer Constant"
PARTS = "Chunk Split Slice Select Gather IndexSelect Roll Expand StochasticDepth"
REDUCTIONS = "Mean Sum Amax"
POINTWISE = "Scale RotaryEmbedding"

# netcalc: the engine's own MACS_FORMULA for every type
for _t in " ".join([CONV, NORM_STATS, BATCHNORM, ACTIVATIONS, MOVES, POOLS, PADS, RESAMPLE,
                    PIXEL, MATRIX, RNNS, TRANSFORMERS, MOE, EMBEDDINGS, ELEMENTWISE, "Bilinear",
                    "LayerNorm LayerNorm2d RMSNorm LocalResponseNorm MultiheadAttention",
                    "ScaledDotProductAttention AdaptiveAvgPool1d AdaptiveAvgPool2d",
                    "AdaptiveAvgPool3d", TENSORS, PARTS, REDUCTIONS, POINTWISE,
                    "Einsum"]).split():
    CONVENTIONS["netcalc"].rules[_t] = _NETCALC_RULE



def _unknown(layer: "Layer", ctx: Context) -> int:
    raise ValueError("an Opaque layer's MACs are unknown")  # apply() never asks (macs None)


# Opaque (netcalc import --opaque): only its measured shape and params are known
for _name in NAMES:
    _add(_name, "Opaque", "unknown", "unknown: an Opaque layer carries its measured output "
         "shape and parameter count, not its operations (MACs and FLOPs are null)", _unknown)

# fvcore
_add("fvcore", CONV, "conv", "aten::_convolution: N * prod(weight) * prod(out spatial) "
     "(transposed: in spatial) = netcalc; but padding 'same'/'valid' with padding_mode zeros "
     "traces as aten::_convolution_mode, which fvcore does not handle: 0", _fv_conv)
_add("fvcore", "Linear", "linear", "aten::linear: prod(input) * out_features = netcalc", _macs)
_add("fvcore", "MatMul", "matmul", "aten::matmul: prod(a.shape) * b.shape[-1] (a broadcast "
     "batch of b is not counted)", _fv_matmul)
_add("fvcore", BATCHNORM, "batchnorm", "aten::batch_norm in eval: numel * (2 if affine else 1); "
     "track_running_stats false (batch statistics): numel * (5 if affine else 4)",
     _fv_batchnorm)
_add("fvcore", NORM_STATS, "norm", "aten::group_norm/instance_norm: numel(input) * (5 if "
     "affine else 4)", _gated("affine", 5, 4))
_add("fvcore", "LayerNorm LayerNorm2d", "norm", "aten::layer_norm: numel(input) * (5 if elementwise_affine "
     "else 4)", _fv_layernorm)
_add("fvcore", "AdaptiveAvgPool2d", "adaptive_avg_pool2d", "aten::adaptive_avg_pool2d: "
     "numel(input) * 1", _fv_adaptive_avg)
_add("fvcore", RESAMPLE, "upsample", "aten::upsample_nearest2d: numel(output); "
     "upsample_bilinear2d: 4 * numel(output); other modes and ranks: 0", _fv_upsample)
_add("fvcore", "MultiheadAttention", "attention", "aten::linear projections only: "
     "N*(2*L*E*E + S*E*kdim + S*E*vdim); scaled_dot_product_attention is unsupported (0)",
     _fv_mha)
_add("fvcore", TRANSFORMERS, "parts", "sum of its parts under fvcore's rules "
     "(attention projections, feed-forward linears, 5 per element per LayerNorm)",
     _parts("fvcore"))
_add("fvcore", MOE, "parts", "sum of its parts under fvcore's rules (the router and the "
     "expert's layers on the routed tokens; the routing itself: 0)", _parts("fvcore"))
_add("fvcore", " ".join([RNNS, "ScaledDotProductAttention Bilinear RMSNorm LocalResponseNorm",
                         EMBEDDINGS, ACTIVATIONS, POOLS, ELEMENTWISE, PIXEL,
                         "AdaptiveAvgPool1d AdaptiveAvgPool3d"]),
     "unsupported", _FV_TEXT_ZERO, _zero)
_add("fvcore", " ".join([MOVES, PADS, TENSORS, PARTS]), "ignored", _FV_TEXT_IGNORED, _zero)
_add("fvcore", " ".join([REDUCTIONS, POINTWISE]), "unsupported", _FV_TEXT_ZERO, _zero)
_add("fvcore", "Einsum", "einsum", "aten::einsum: numpy's optimal-path count // 2; two "
     "operands: prod(sizes of all labels), halved (floored) when no label is summed",
     _fv_einsum)

# flopcounter
_add("flopcounter", CONV, "conv", "aten.convolution: 2 * netcalc", _twice)
_add("flopcounter", MATRIX, "mm", "aten.mm/addmm/bmm after decomposition: 2 * netcalc", _twice)
_add("flopcounter", "Bilinear", "unregistered", "aten._trilinear is not in the registry: 0",
     _zero)
_add("flopcounter", "LSTM", "lstm", "CPU: 0 when oneDNN runs it (float32/16, no proj_size), "
     "else 2 * netcalc; CUDA (cuDNN): 0; meta: 2 * netcalc", _fc_lstm)
_add("flopcounter", "RNN GRU", "rnn", "CPU and meta: the cell's mm/addmm, 2 * netcalc; "
     "CUDA (cuDNN): 0", _fc_rnn)
_add("flopcounter", "ScaledDotProductAttention", "sdpa", "CPU with 4-d q, k, v of equal head "
     "dims: the CPU flash kernel, 0; otherwise (math path, CUDA kernels, meta) 2 * netcalc",
     _fc_sdpa)
_add("flopcounter", "MultiheadAttention", "attention", "CPU: 2 * projections (the attention "
     "products run the CPU flash kernel); CUDA and meta: 2 * netcalc", _fc_mha)
_add("flopcounter", TRANSFORMERS, "parts", "sum of its parts under FlopCounterMode's rules",
     _parts("flopcounter"))
_add("flopcounter", MOE, "parts", "sum of its parts under FlopCounterMode's rules (the "
     "router's and the experts' mm on the tokens routed to each)", _parts("flopcounter"))
_add("flopcounter", "Einsum", "einsum", "einsum decomposes into one bmm per pair that "
     "contracts a label: 2 * netcalc (element-wise products and sums: 0)", _twice)
_add("flopcounter", " ".join([TENSORS, PARTS, REDUCTIONS, POINTWISE]), "elementwise",
     "0: only mm, addmm, bmm, baddbmm, convolution and SDPA kernels are counted", _zero)
_add("flopcounter", " ".join([BATCHNORM, NORM_STATS, "LayerNorm LayerNorm2d RMSNorm",
                              "LocalResponseNorm",
                              ACTIVATIONS, MOVES, POOLS, PADS, RESAMPLE, PIXEL, EMBEDDINGS,
                              ELEMENTWISE, "AdaptiveAvgPool1d AdaptiveAvgPool2d",
                              "AdaptiveAvgPool3d"]),
     "elementwise", "0: only mm, addmm, bmm, baddbmm, convolution and SDPA kernels are counted",
     _zero)

def _add_backward(types: str, rule_id: str, text: str, count: BackwardCount) -> None:
    for t in types.split():
        CONVENTIONS["flopcounter"].backward[t] = BackwardRule(f"flopcounter.{rule_id}", text,
                                                              count)


# flopcounter, backward (loss.backward(); a checkpointed layer also counts its recomputed
# forward, under the forward rules)
_add_backward(CONV, "conv_backward", "conv_backward_flop: input gradient 2 * netcalc; weight "
              "gradient 2 * groups * netcalc (its shape ignores groups)", _fc_conv_backward)
_add_backward("Bilinear", "unregistered", "aten._trilinear backward is not in the registry: 0",
              lambda layer, grads, ctx: 0)
_add_backward("LSTM", "lstm", "as the forward: 0 when oneDNN (CPU) or cuDNN (CUDA) runs it, "
              "else 2 * netcalc", _fc_backward_if(_fc_lstm))
_add_backward("RNN GRU", "rnn", "as the forward: CPU 2 * netcalc, CUDA (cuDNN) 0",
              _fc_backward_if(_fc_rnn))
_add_backward("ScaledDotProductAttention", "sdpa", "as the forward, but dropout in training "
              "or a bias input that needs a gradient takes the math path on CPU: the CPU flash kernel's backward is not in the "
              "registry (0); the math path 2 * netcalc", _fc_sdpa_backward)
_add_backward("MultiheadAttention", "attention", "CPU: 2 * the projections' backward (the "
              "attention products run the CPU flash kernel), 2 * netcalc when an attn_mask "
              "needs a gradient (math path); CUDA: 2 * netcalc",
              _fc_mha_backward)
_add_backward(MOE, "parts", "sum of its parts under FlopCounterMode's backward rules",
              _fc_parts_backward)
_add_backward(TRANSFORMERS, "parts", "sum of its parts under FlopCounterMode's backward rules",
              _fc_parts_backward)

# torchinfo
_add("torchinfo", CONV, "conv", "class name contains 'Conv': (weight + bias) * N * "
     "prod(output spatial), bias included, transposed convs per OUTPUT position", _ti_conv)
_add("torchinfo", " ".join(["Linear Bilinear PReLU LayerNorm LayerNorm2d RMSNorm", BATCHNORM,
                            NORM_STATS,
                            EMBEDDINGS]),
     "weight_x_batch", "leaf with weight/bias: params * output.shape[0] (the batch only: a "
     "Linear on (N, L, F) ignores L)", _ti_leaf)
_add("torchinfo", RNNS, "rnn_weights", "weight_ih_l0...: params * output.shape[0] * "
     "output.shape[1] (N * L)", _ti_rnn)
_add("torchinfo", "MultiheadAttention", "not_leaf", "nn.MultiheadAttention has a child "
     "(out_proj) that is never called: 0", _zero)
_add("torchinfo", TRANSFORMERS, "parts", "leaf modules only: the feed-forward Linears and "
     "LayerNorms, params * N each; attention 0", _parts("torchinfo"))
_add("torchinfo", MOE, "parts", "leaf modules only: the router and, per expert called, "
     "its leaf modules on the tokens routed to it", _parts("torchinfo"))
_add("torchinfo", " ".join([ACTIVATIONS.replace("PReLU ", ""), MOVES, POOLS, PADS, RESAMPLE,
                            PIXEL, ELEMENTWISE, "MatMul ScaledDotProductAttention",
                            "LocalResponseNorm AdaptiveAvgPool1d AdaptiveAvgPool2d",
                            "AdaptiveAvgPool3d"]),
     "no_params", "no parameters: 0", _zero)
_add("torchinfo", " ".join([TENSORS, PARTS, REDUCTIONS, POINTWISE, "Einsum"]), "no_module",
     "no parameter of a leaf module (a Parameter is a tensor at the layer's path, not a "
     "module): 0", _zero)


# ----------------------------------------------------------------------------- API
def get(name: str) -> Convention:
    """The convention called ``name`` (ValueError naming the choices otherwise)."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown convention {name!r} ({' | '.join(NAMES)})") from None


def table_rows(layer_types: list[str] | None = None) -> list[dict[str, str]]:
    """The documented table: one row per layer type, each convention's rule text."""
    from .layers import REGISTRY

    types = layer_types if layer_types is not None else sorted(REGISTRY)
    rows = []
    for t in types:
        row = {"type": t}
        for name in NAMES:
            row[name] = CONVENTIONS[name].rule(t).text
        rows.append(row)
    return rows


def add_up(values: list) -> Any:
    """A total of an unknowable metric (netcalc.metrics.total): None when one is."""
    from .metrics import total

    return total(values)


def apply(report: "Report", name: str, ctx: Context = DEFAULT_CONTEXT) -> "Report":
    """A copy of ``report`` whose MACs and FLOPs follow convention ``name``.

    Per layer, ``macs`` becomes the tool's count in MAC units (a FLOP count is
    halved) and ``flops = 2 * macs``; ``extra["convention"]`` names the rule. Totals
    are re-summed; ``sections["convention"]`` gives the tool's total in its own unit.
    ``netcalc`` returns the report unchanged.
    """
    conv = get(name)
    if name == "netcalc":
        return report
    rows = []
    total: int | None = 0
    for r in report.layers:
        node = report.graph.by_name.get(r.name) if report.graph is not None else None
        if r.macs is None:  # an Opaque layer: unknown under every convention
            rows.append(r)
            total = None
            continue
        count, rule = conv.layer_count(r, node.layer if node else None, ctx)
        total = None if total is None else total + count
        macs = count // conv.scale if count % conv.scale == 0 else count / conv.scale
        extra = dict(r.extra)
        extra["convention"] = rule.id
        nonzero = r.nonzero_macs
        if r.nonzero_macs is not None and node is not None:  # a pruned layer
            nonzero = macs - round(macs * node.sparsity)
        rows.append(replace(r, macs=macs, flops=2 * macs, nonzero_macs=nonzero, extra=extra))
    totals = replace(report.totals, macs=add_up([r.macs for r in rows]),
                     flops=add_up([r.flops for r in rows]),
                     nonzero_macs=add_up([r.macs if r.nonzero_macs is None else r.nonzero_macs
                                          for r in rows]))
    sections = dict(report.sections)
    sections["convention"] = {"name": name, "unit": conv.unit, "total": total,
                              "rule": conv.summary}
    return replace(report, layers=rows, totals=totals, sections=sections)


__all__ = ["CONVENTIONS", "Context", "Convention", "DEFAULT_CONTEXT", "NAMES", "Rule", "apply",
           "get", "table_rows"]
