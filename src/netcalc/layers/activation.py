"""Element-wise activations and the softmax family.

Every type here keeps the shape of its input, has no MACs and (except PReLU) no
parameters, and is point-wise for the receptive field. Arguments are torch.nn's;
``inplace`` is accepted where torch has it: it changes no count, only which storages a
training step keeps (netcalc.training).

Element-wise FLOPs are ``numel(input) * cost`` with this per-element cost (one
FLOP per add, multiply, compare, exp, log, erf, tanh or pow; thop and ptflops count
ReLU as 1 the same way)::

    ReLU 1          max(x, 0)
    ReLU6 2         min(max(x, 0), 6)
    LeakyReLU 2     compare, multiply
    PReLU 2         compare, multiply
    ELU 4           compare, exp, subtract, multiply
    SELU 5          ELU + scale
    CELU 5          compare, divide, exp, subtract, multiply
    GELU 5          x/sqrt2, erf, +1, *x, *0.5        (approximate='tanh': 9)
    Sigmoid 3       exp(-x), +1, reciprocal
    SiLU 4          sigmoid + multiply
    Mish 5          softplus (exp, +1, log), tanh, multiply
    Tanh 1
    Hardtanh 2      clamp
    Hardsigmoid 4   +3, clamp, /6
    Hardswish 5     hardsigmoid + multiply
    Softplus 6      *beta, exp, +1, log, /beta, threshold compare
    Softmax 5       max, subtract, exp, sum, divide  (along ``dim``)
    LogSoftmax 5    max, subtract, exp, sum, subtract log-sum
    Softmin 6       negate + softmax
    Exp 1
    Clamp 1         one compare per bound given (2 with min and max)
    Normalize 3     square, sum, divide (along ``dim``), + 2 per vector: root, max(., eps)

Exp, Clamp and Normalize are torch functions without an nn module (``torch.exp``,
``torch.clamp``, ``F.normalize``: Swin-V2's cosine attention and its logit scale); their
modules are in :mod:`netcalc.torch.modules`. Normalize is ``x / max(||x||_p, eps)`` along
``dim`` (torch's defaults: p 2, dim 1, eps 1e-12); like the softmax family it mixes the
positions along ``dim``.

Softmax, LogSoftmax and Softmin take ``dim`` default -1 (torch's default ``None`` is
deprecated and picks a dim from the rank). Along a spatial dim of a tensor with a
receptive field they mix every position of that dim, so their output field is
global; along the channel or feature dim they are point-wise.
"""

from __future__ import annotations

from math import prod
from typing import Any, ClassVar

from ..args import AnyInt, Arg, Bool, Choice, Float, PosInt
from .select import mixed
from .base import (FP32, LOWER, Grads, MacFree, Parameterless, Saved, Shape, register,
                   saved_extra, saved_input, saved_output, saved_weight)


def _inplace() -> Arg:
    return Arg(Bool(), False, doc="overwrite the input (training: its storage is reused; "
                                  "refused when an earlier layer keeps it for backward)")


class _Elementwise(MacFree):
    """Base of every activation: identity shape, FLOPS per element, point-wise RF."""

    #: element-wise FLOPs per element (see the module docstring)
    FLOPS: ClassVar[int] = 0
    #: backward reads the result, not the input (derivatives.yaml: ``result``)
    SAVES_RESULT: ClassVar[bool] = False
    #: the in-place form's derivative reads its result (derivatives.yaml ``elu_``,
    #: ``leaky_relu_``; ``celu_`` and ``selu_`` call ``elu_``)
    INPLACE_RESULT: ClassVar[bool] = False

    def shape(self, x: Shape) -> Shape:
        return x

    def per_element(self) -> int:
        return self.FLOPS

    def elementwise_flops(self) -> int:
        return prod(self.x) * self.per_element()

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """The input (``self``), or the result for the ops whose derivative is written
        in it. In place, an op whose derivative reads its result keeps the overwritten
        storage; the others (``hardtanh_``, ``hardswish_``, ``hardsigmoid_``, ``silu_``,
        ``mish_``) read ``self``, so autograd keeps a copy of the input made before the
        write: in place saves them nothing (measured, torch 2.14)."""
        if not self.writes_input():
            return [saved_output() if self.SAVES_RESULT else saved_input()]
        if self.SAVES_RESULT or self.INPLACE_RESULT:
            return [saved_output()]
        return [saved_extra(prod(self.x))]

    def receptive_field(self, fields):
        return fields[0]

    def torch_module(self) -> Any:
        return self.torch_namesake()


class _Activation(Parameterless, _Elementwise):
    """Every activation but PReLU: no parameters."""


class _Inplace(_Activation):
    """Activations whose only argument is torch's ``inplace``."""

    inplace = _inplace()


class _Alpha(_Activation):
    """ELU and CELU: ``alpha`` (the primary argument) and ``inplace``."""

    PRIMARY = "alpha"
    alpha = Arg(Float(), 1.0)
    inplace = _inplace()


@register
class ReLU(_Inplace):
    """max(x, 0)."""

    SAVES_RESULT = True
    FLOPS = 1


@register
class ReLU6(_Inplace):
    """min(max(x, 0), 6)."""

    FLOPS = 2


@register
class LeakyReLU(_Activation):
    """x if x >= 0 else negative_slope * x."""

    INPLACE_RESULT = True
    PRIMARY = "negative_slope"
    FLOPS = 2
    negative_slope = Arg(Float(), 0.01)
    inplace = _inplace()


@register
class PReLU(_Elementwise):
    """LeakyReLU with a learnt slope: one shared, or one per channel (dim 1)."""

    PRIMARY = "num_parameters"
    FLOPS = 2
    PARAMS_FORMULA = "num_parameters"
    AUTOCAST = LOWER  # prelu is on autocast's 16-bit lists (CUDA and CPU)
    num_parameters = Arg(PosInt, 1, doc="1, or the number of channels (dim 1)")
    init = Arg(Float(), 0.25, doc="initial slope")

    def shape(self, x: Shape) -> Shape:
        n = self.num_parameters
        if n > 1 and (len(x) < 2 or x[1] != n):
            got = f"{x[1]} channels (dim 1)" if len(x) >= 2 else "no channel dim"
            raise self.fail(f"PReLU num_parameters={n} but the input {list(x)} has {got}; "
                            "use 1 or the channel count", "num_parameters")
        return x

    def params(self) -> int:
        return self.num_parameters

    def weight_shape(self) -> Shape:
        return (self.num_parameters,)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``_prelu_kernel_backward`` reads the input and the weight (under autocast
        their 16-bit casts; measured)."""
        return [saved_input(), saved_weight(self.num_parameters)]


@register
class ELU(_Alpha):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    INPLACE_RESULT = True
    FLOPS = 4


@register
class SELU(_Inplace):
    """Scaled ELU with fixed constants (self-normalising networks)."""

    INPLACE_RESULT = True
    FLOPS = 5


@register
class CELU(_Alpha):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""

    INPLACE_RESULT = True
    FLOPS = 5


@register
class GELU(_Activation):
    """x * Phi(x), exact (erf) or with the tanh approximation."""

    PRIMARY = "approximate"
    FLOPS = 5
    FLOPS_TANH: ClassVar[int] = 9
    approximate = Arg(Choice(("none", "tanh")), "none")

    def per_element(self) -> int:
        return self.FLOPS_TANH if self.approximate == "tanh" else self.FLOPS


@register
class SiLU(_Inplace):
    """x * sigmoid(x) (swish)."""

    FLOPS = 4


@register
class Mish(_Inplace):
    """x * tanh(softplus(x))."""

    FLOPS = 5


@register
class Sigmoid(_Activation):
    """1 / (1 + exp(-x))."""

    SAVES_RESULT = True
    FLOPS = 3


@register
class Tanh(_Activation):
    """tanh(x)."""

    SAVES_RESULT = True
    FLOPS = 1


@register
class Hardtanh(_Activation):
    """clamp(x, min_val, max_val)."""

    FLOPS = 2
    min_val = Arg(Float(), -1.0)
    max_val = Arg(Float(), 1.0)
    inplace = _inplace()

    def validate(self) -> None:
        if self.max_val <= self.min_val:
            raise self.fail(f"max_val={self.max_val} must be greater than "
                            f"min_val={self.min_val}", "max_val")


@register
class Hardswish(_Inplace):
    """x * relu6(x + 3) / 6 (MobileNetV3)."""

    FLOPS = 5


@register
class Hardsigmoid(_Inplace):
    """relu6(x + 3) / 6."""

    FLOPS = 4


@register
class Softplus(_Activation):
    """log(1 + exp(beta * x)) / beta, linear above ``threshold``."""

    PRIMARY = "beta"
    FLOPS = 6
    beta = Arg(Float(), 1.0)
    threshold = Arg(Float(), 20.0)


class _SoftmaxBase(_Activation):
    """Softmax family: normalises along ``dim``; global RF along a spatial dim."""

    PRIMARY = "dim"
    SAVES_RESULT = True  # _softmax / _log_softmax: result
    AUTOCAST = FP32
    dim = Arg(AnyInt, -1, doc="dim to normalise along (torch's None is deprecated)")

    def axis(self, rank: int) -> int:
        d = self.dim + rank if self.dim < 0 else self.dim
        if not 0 <= d < rank:
            raise self.fail(f"dim={self.dim} is out of range for a {rank}-d input", "dim")
        return d

    def shape(self, x: Shape) -> Shape:
        self.axis(len(x))
        return x

    def receptive_field(self, fields):
        return mixed(fields[0], self.x, {self.axis(len(self.x))})


@register
class Softmax(_SoftmaxBase):
    """exp(x) / sum(exp(x)) along ``dim`` (default -1)."""

    FLOPS = 5


@register
class LogSoftmax(_SoftmaxBase):
    """log(softmax(x)) along ``dim`` (default -1)."""

    FLOPS = 5


@register
class Softmin(_SoftmaxBase):
    """softmax(-x) along ``dim`` (default -1)."""

    FLOPS = 6


@register
class Exp(_Activation):
    """exp(x) (torch.exp)."""

    SAVES_RESULT = True  # exp: result
    AUTOCAST = FP32  # autocast's fp32 list has exp
    FLOPS = 1

    def torch_module(self) -> Any:
        from ..torch.modules import Exp as TorchExp

        return TorchExp()


@register
class Clamp(_Activation):
    """min(max(x, min), max) (torch.clamp); a bound not given is not applied."""

    FLOPS_FORMULA = "numel(input) * the bounds given (1 compare each)"

    min = Arg(Float(), None, doc="lower bound (none: no lower bound)")
    max = Arg(Float(), None, doc="upper bound (none: no upper bound)")

    def validate(self) -> None:
        if self.min is None and self.max is None:
            raise self.fail("Clamp needs min or max (torch.clamp refuses neither)", "min")

    def per_element(self) -> int:
        return (self.min is not None) + (self.max is not None)

    def torch_module(self) -> Any:
        from ..torch.modules import Clamp as TorchClamp

        return TorchClamp(self.min, self.max)


@register
class Normalize(_SoftmaxBase):
    """x / max(||x||_p, eps) along ``dim`` (torch.nn.functional.normalize)."""

    PRIMARY = "dim"
    SAVES_RESULT = False
    FLOPS = 3  # autocast: the norm runs in float32, and so the division
    FLOPS_FORMULA = ("numel(input) * 3 (square, sum, divide) + 2 per vector along dim "
                     "(root, max with eps)")
    p = Arg(Float(), 2.0, doc="the norm's exponent")
    dim = Arg(AnyInt, 1, doc="the dim whose vectors are normalised")
    eps = Arg(Float(), 1e-12, doc="the smallest norm divided by")

    def vectors(self) -> int:
        return prod(self.x) // self.x[self.axis(len(self.x))]

    def elementwise_flops(self) -> int:
        return prod(self.x) * self.FLOPS + 2 * self.vectors()

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """The input and two tensors of one value per vector: F.normalize's norm (kept
        with the input by the norm) and the divisor clamp_min(eps) makes (kept with the
        input by the division)."""
        return [saved_input(), saved_extra(self.vectors()), saved_extra(self.vectors())]

    def torch_module(self) -> Any:
        from ..torch.modules import Normalize as TorchNormalize

        return TorchNormalize(self.p, self.dim, self.eps)
