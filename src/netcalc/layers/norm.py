"""Normalisation layers: BatchNorm, GroupNorm, InstanceNorm, LayerNorm (and torchvision's
LayerNorm2d), RMSNorm, LRN.

Arguments, defaults and parameter/buffer layouts are torch.nn's. Input-size
arguments (``num_features``, ``num_channels``) are inferred from dim 1 of the input
and checked when given; ``normalized_shape`` of LayerNorm/RMSNorm defaults to the
last dim of the input.

Params / buffers::

    BatchNorm*, InstanceNorm*   params 2C if affine;  buffers 2C+1 if track_running_stats
                                (running_mean, running_var, num_batches_tracked)
    GroupNorm                   params 2C if affine
    LayerNorm                   prod(normalized_shape) * (weight + bias)
    LayerNorm2d                 C * (weight + bias)
    RMSNorm                     prod(normalized_shape) if elementwise_affine
    LocalResponseNorm           0

No MACs: every norm is element-wise FLOPs, per element of the input (netcalc counts
inference; the O(channels) work of finishing statistics -- sqrt, reciprocal -- is
ignored)::

    running statistics (BatchNorm*, InstanceNorm* with track_running_stats):
        2   x * scale + shift (mean, var, weight and bias folded into scale, shift)
    statistics of the input (GroupNorm, LayerNorm, BatchNorm*/InstanceNorm* without
    running statistics):
        5   mean (1 add), variance (square + add), normalise (subtract, multiply)
        +2  if affine (multiply weight, add bias); LayerNorm: +1 weight, +1 bias
    RMSNorm:
        3   mean of squares (square + add), multiply by 1/rms;  +1 weight
    LocalResponseNorm:
        size + 5   square, window average (size), * alpha, + k, ** beta, divide

Receptive field: every norm is treated as point-wise: the output keeps the field of
its input. The statistics (batch, group, layer or window across channels) depend on
more positions, but like receptive-field calculators (Araujo et al. 2019, the
``receptive_field`` package) netcalc ignores them; this holds for LayerNorm/RMSNorm
even when ``normalized_shape`` covers spatial dims.
"""

from __future__ import annotations

from math import prod
from typing import Any, ClassVar

from ..args import Arg, Bool, Float, IntList, PosInt
from .base import (ACC, FP32, Grads, Layer, MacFree, Parameterless, Saved, Shape, register,
                   saved_extra, saved_input)

STATS_FLOPS = 5   # mean, variance and normalisation, per element
AFFINE_FLOPS = 2  # weight multiply + bias add, per element
FOLDED_FLOPS = 2  # x * scale + shift with running statistics
RMS_FLOPS = 3     # mean of squares and the multiply by 1/rms, per element

_LAYOUT = {1: "3-d (N, C, L)", 2: "4-d (N, C, H, W)", 3: "5-d (N, C, D, H, W)"}


def _input_stats_flops(affine: bool) -> int:
    """Per element, normalising with statistics of the input (not running ones)."""
    return STATS_FLOPS + (AFFINE_FLOPS if affine else 0)


class _Pointwise(MacFree):
    """Shared tail of the norms: no MACs, point-wise receptive field, torch by name,
    and a backward that keeps the input and two statistics per normalised group (mean
    and inverse deviation: ``native_batch_norm``'s ``save_mean, save_invstd``,
    ``native_layer_norm``'s and ``native_group_norm``'s ``mean, rstd``) in float32."""

    #: statistics kept per normalised group (RMSNorm keeps only the inverse rms)
    STATS_KEPT: ClassVar[int] = 2

    def groups(self) -> int:
        """Number of normalised groups (each has its own statistics)."""
        raise NotImplementedError

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        return [saved_input()] + [saved_extra(self.groups(), ACC)] * self.STATS_KEPT

    def receptive_field(self, fields):
        return fields[0]

    def torch_module(self) -> Any:
        return self.torch_namesake()


def _need_two_values(layer: Layer, n: int, x: Shape) -> None:
    """torch refuses statistics of a single value (F.batch_norm/instance_norm/group_norm:
    "Expected more than 1 value per channel when training"), in eval mode too."""
    if n <= 1:
        raise layer.fail(f"{type(layer).__name__} computes statistics of the input over only "
                         f"{n} value (input {list(x)}); torch refuses it (more than 1 needed)")


class _RunningNorm(_Pointwise):
    """BatchNorm / InstanceNorm: per-channel statistics, optional running buffers.

    The input is ``(N, C, *spatial)`` with ``nd`` spatial dims (``RANKS`` widens it)."""

    PRIMARY = None
    #: accepted input ranks and their description; default: nd + 2 dims
    RANKS: ClassVar[tuple[int, ...]] = ()
    LAYOUT: ClassVar[str] = ""
    PARAMS_FORMULA = "2*C if affine"

    num_features = Arg(PosInt, inferred=True, doc="channels (dim 1)")
    eps = Arg(Float(0.0), 1e-5)
    momentum = Arg(Float(0.0, 1.0), 0.1, doc="running-statistics update factor")
    affine = Arg(Bool(), True)
    track_running_stats = Arg(Bool(), True)

    def shape(self, x: Shape) -> Shape:
        if len(x) not in (self.RANKS or (self.nd + 2,)):
            raise self.fail(f"{type(self).__name__} needs a {self.LAYOUT or _LAYOUT[self.nd]} "
                            f"input, got {list(x)}")
        self.check_inferred("num_features", x[1])
        if not self.track_running_stats:  # statistics of the input, even in eval
            _need_two_values(self, self.stats_size(x), x)
        return x

    def stats_size(self, x: Shape) -> int:
        """Values behind each statistic: N * spatial (BatchNorm), spatial (InstanceNorm)."""
        return x[0] * prod(x[2:])

    def groups(self) -> int:
        return prod(self.x) // self.stats_size(self.x)

    def params(self) -> int:
        return 2 * self.num_features if self.affine else 0

    def buffers(self) -> int:
        return 2 * self.num_features + 1 if self.track_running_stats else 0

    def int_buffers(self) -> int:
        return 1 if self.track_running_stats else 0

    def param_tensors(self) -> int:
        return 2 if self.affine else 0

    def elementwise_flops(self) -> int:
        per = FOLDED_FLOPS if self.track_running_stats else _input_stats_flops(self.affine)
        return prod(self.x) * per


@register
class BatchNorm1d(_RunningNorm):
    """Batch normalisation over (N, C) or (N, C, L), per channel."""

    RANKS = (2, 3)
    LAYOUT = "2-d (N, C) or 3-d (N, C, L)"


@register
class BatchNorm2d(_RunningNorm):
    """Batch normalisation over (N, C, H, W), per channel."""

    nd = 2


@register
class BatchNorm3d(_RunningNorm):
    """Batch normalisation over (N, C, D, H, W), per channel."""

    nd = 3


class _InstanceNorm(_RunningNorm):
    affine = Arg(Bool(), False)
    track_running_stats = Arg(Bool(), False)

    def stats_size(self, x: Shape) -> int:
        return prod(x[2:])

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``instance_norm`` runs ``batch_norm`` on the input viewed as (1, N*C, ...):
        the input and per-(sample, channel) statistics, and with ``affine`` the weight
        repeated N times (``weight.repeat(N)``, a new tensor batch_norm keeps for the
        input gradient). Measured on CPU; the same composite on CUDA."""
        kept = super().saved(grads, device)
        return kept + [saved_extra(self.x[0] * self.num_features)] if self.affine else kept


@register
class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation over (N, C, L): per sample and channel."""


@register
class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation over (N, C, H, W): per sample and channel."""

    nd = 2


@register
class InstanceNorm3d(_InstanceNorm):
    """Instance normalisation over (N, C, D, H, W): per sample and channel."""

    nd = 3


@register
class GroupNorm(_Pointwise):
    """Group normalisation over (N, C, *): statistics per sample and group of channels."""

    PRIMARY = "num_groups"
    PARAMS_FORMULA = "2*C if affine"

    num_groups = Arg(PosInt, doc="channel groups; C must be divisible by it")
    num_channels = Arg(PosInt, inferred=True, doc="channels (dim 1)")
    eps = Arg(Float(0.0), 1e-5)
    affine = Arg(Bool(), True)

    def validate(self) -> None:
        if self.num_channels is not None:
            self._check_groups(self.num_channels)

    def _check_groups(self, c: int) -> None:
        if c % self.num_groups:
            raise self.fail(f"num_channels={c} is not divisible by num_groups={self.num_groups}",
                            "num_groups")

    def shape(self, x: Shape) -> Shape:
        if len(x) < 2:
            raise self.fail(f"GroupNorm needs an (N, C, *) input, got {list(x)}")
        self._check_groups(self.check_inferred("num_channels", x[1]))
        _need_two_values(self, x[0] * (x[1] // self.num_groups) * prod(x[2:]), x)
        return x

    AUTOCAST = FP32

    def params(self) -> int:
        return 2 * self.num_channels if self.affine else 0

    def groups(self) -> int:
        return self.x[0] * self.num_groups

    def param_tensors(self) -> int:
        return 2 if self.affine else 0

    def elementwise_flops(self) -> int:
        return prod(self.x) * _input_stats_flops(self.affine)


class _ShapeNorm(_Pointwise):
    """LayerNorm / RMSNorm: statistics over the trailing ``normalized_shape`` dims.

    ``params = prod(normalized_shape) * affine_terms()`` and, per input element,
    ``STATS + affine_terms()`` FLOPs: one multiply or add per affine term."""

    PRIMARY = "normalized_shape"
    #: element-wise FLOPs of the statistics and normalisation, per element
    STATS: ClassVar[int] = STATS_FLOPS

    normalized_shape = Arg(IntList(1), None,
                           doc="trailing dims to normalise over; default: the last dim")
    elementwise_affine = Arg(Bool(), True)

    def shape(self, x: Shape) -> Shape:
        ns = self.normalized_shape
        if ns is None:
            if len(x) < 2:
                raise self.fail(f"{type(self).__name__} needs an (N, *, features) input, "
                                f"got {list(x)}")
            self.normalized_shape = ns = (x[-1],)
        if len(ns) >= len(x) or tuple(x[len(x) - len(ns):]) != tuple(ns):
            raise self.fail(f"normalized_shape {list(ns)} does not match the trailing dims of "
                            f"the input {list(x)} (the batch dim cannot be normalised over)",
                            "normalized_shape")
        return x

    AUTOCAST = FP32

    def affine_terms(self) -> int:
        """Learnt tensors of shape ``normalized_shape``: weight (and bias)."""
        return int(self.elementwise_affine)

    def groups(self) -> int:
        return prod(self.x[:len(self.x) - len(self.normalized_shape)])

    def params(self) -> int:
        return prod(self.normalized_shape) * self.affine_terms()

    def param_tensors(self) -> int:
        return self.affine_terms()

    def elementwise_flops(self) -> int:
        return prod(self.x) * (self.STATS + self.affine_terms())

    def weight_shape(self) -> Shape | None:
        return tuple(self.normalized_shape) if self.elementwise_affine else None


@register
class LayerNorm(_ShapeNorm):
    """Layer normalisation over the trailing ``normalized_shape`` dims of each sample."""

    PARAMS_FORMULA = "prod(normalized_shape) * (weight + bias) if elementwise_affine"

    eps = Arg(Float(0.0), 1e-5)
    bias = Arg(Bool(), True, doc="learn an additive bias (only with elementwise_affine)")

    def affine_terms(self) -> int:
        return (1 + int(self.bias)) if self.elementwise_affine else 0


@register
class LayerNorm2d(LayerNorm):
    """LayerNorm over the channels of (N, C, H, W), at each position (torchvision's).

    torchvision.models.convnext.LayerNorm2d: ``x.permute(0, 2, 3, 1)``, ``F.layer_norm``
    over C, permute back (ConvNeXt's stem, downsampling and head). As LayerNorm with
    ``normalized_shape = [C]``: params ``C * (weight + bias)``, per element 5 FLOPs + 1
    weight + 1 bias, statistics per (sample, position); autograd keeps the (permuted
    view of the) input and the float32 mean and rstd, as LayerNorm's. The module is
    torchvision's own code (an nn.LayerNorm subclass), so checkpoints load."""

    PARAMS_FORMULA = "C * (weight + bias) if elementwise_affine"

    normalized_shape = Arg(IntList(1), None, doc="[C]; default: the channels (dim 1)")

    def shape(self, x: Shape) -> Shape:
        if len(x) != 4:
            raise self.fail(f"LayerNorm2d needs a 4-d (N, C, H, W) input, got {list(x)}")
        if self.normalized_shape is None:
            self.normalized_shape = (x[1],)
        if tuple(self.normalized_shape) != (x[1],):
            raise self.fail(f"normalized_shape {list(self.normalized_shape)} is not the "
                            f"channels [{x[1]}] of the input {list(x)}", "normalized_shape")
        return x

    def groups(self) -> int:
        return prod(self.x) // self.x[1]

    def torch_module(self) -> Any:
        from ..torch.modules import LayerNorm2d as TorchLayerNorm2d

        return TorchLayerNorm2d(**self.arg_values())


@register
class RMSNorm(_ShapeNorm):
    """Root-mean-square normalisation (torch.nn.RMSNorm): x / rms(x) * weight."""

    PARAMS_FORMULA = "prod(normalized_shape) if elementwise_affine"
    STATS = RMS_FLOPS
    STATS_KEPT = 1

    eps = Arg(Float(0.0), None, doc="default: torch.finfo(dtype).eps")

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """CPU (measured): torch composes ``rms_norm`` of ``pow``, ``mean``, ``rsqrt`` and
        ``mul``: autograd keeps the input and the inverse rms per row, and the weight's
        ``mul`` keeps the normalised input for the weight gradient (a 16-bit input is first
        upcast, and the float32 copy is kept instead of the input: not modelled). CUDA:
        the fused ``_fused_rms_norm`` keeps the input and the float32 inverse rms
        (derivatives.yaml; not measured here)."""
        kept = [saved_input(), saved_extra(self.groups(), ACC)]
        if device == "cpu" and self.elementwise_affine and grads.weight:
            kept.append(saved_extra(prod(self.x)))
        return kept

    def torch_module(self) -> Any:
        import torch.nn as nn

        if not hasattr(nn, "RMSNorm"):
            raise RuntimeError("torch.nn.RMSNorm needs torch >= 2.4")
        return nn.RMSNorm(**self.arg_values())


@register
class LocalResponseNorm(Parameterless, _Pointwise):
    """Local response normalisation across ``size`` neighbouring channels (AlexNet)."""

    PRIMARY = "size"

    size = Arg(PosInt, doc="number of neighbouring channels")
    alpha = Arg(Float(), 1e-4)
    beta = Arg(Float(), 0.75)
    k = Arg(Float(), 1.0)

    def shape(self, x: Shape) -> Shape:
        if len(x) < 3:
            raise self.fail(f"LocalResponseNorm needs an (N, C, *) input with at least one "
                            f"dim after C, got {list(x)}")
        return x

    def elementwise_flops(self) -> int:
        return prod(self.x) * (self.size + 5)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """torch composes it (``F.local_response_norm``): ``x*x``, zero-padded along the
        channels by ``size - 1`` and averaged (``avg_pool``, which keeps its padded
        input), then ``mul(alpha).add(k).pow(beta)`` (``pow`` keeps its input) and
        ``x / div`` (keeps ``x`` and ``div``): the input, the padded squares and two
        tensors of the input's size. Measured on CPU; the same ops on CUDA."""
        n, c = self.x[:2]
        padded = n * (c + self.size - 1) * prod(self.x[2:])
        return [saved_input(), saved_extra(padded), saved_extra(prod(self.x)),
                saved_extra(prod(self.x))]
