"""Pooling: MaxPool*, AvgPool*, LPPool* and the adaptive pools (torch.nn's names and defaults).

Input ``(N, C, *L_in)`` with ``nd`` spatial dims, output ``(N, C, *L_out)``.

Fixed windows (MaxPool, AvgPool, LPPool): ``L_out`` and the receptive field come from
:class:`netcalc.window.Window` per spatial dim, the same rule as convolutions,
``ceil_mode`` included. ``stride`` defaults to ``kernel_size`` as in torch. torch
refuses ``padding > kernel_size // 2`` on the raw kernel, dilation or not
(``pool2d_shape_check`` in ATen: "pad should be smaller than or equal to half of
kernel size"); so does netcalc.

Adaptive pools: ``output_size`` is an int or a list of ``nd`` entries, ``null`` keeping
that input size. torch's window ``i`` of a dim ``in -> out`` is
``[floor(i*in/out), ceil((i+1)*in/out))``. When ``in % out == 0`` that is a window
``k = s = in/out``; otherwise the windows differ in size by one and netcalc reports
the largest one, with stride ``Fraction(in, out)`` and the first window's centre. An
output of size 1 on every spatial dim is a global pool: its field is GLOBAL.

Params, buffers, MACs: 0.

Element-wise FLOPs, per output element (one compare or add per window element; the
average's divide, like the first compare of a max, is not counted apart)::

    MaxPool, AvgPool         prod(kernel_size)
    LPPool                   2*prod(kernel_size) + 1   (x**p and an add per element, one root)
    AdaptiveAvg/MaxPool      the size of its window (the exact sum over all windows)
"""

from __future__ import annotations

from dataclasses import replace
from math import prod
from typing import Any, ClassVar

from ..args import Arg, ArgType, Bool, Float, Ints, PosInt, is_int
from ..rf import GLOBAL, RF, ratio, trailing
from ..window import Window, windowed
from .base import (INT, Grads, Layer, MacFree, Parameterless, Saved, Shape, register,
                   saved_extra, saved_input)

_SPATIAL = {1: "L", 2: "H, W", 3: "D, H, W"}


def _check_rank(layer: Layer, x: Shape) -> None:
    nd = layer.nd
    if len(x) != nd + 2:
        raise layer.fail(f"{type(layer).__name__} needs a {nd + 2}-d input "
                         f"(N, C, {_SPATIAL[nd]}), got {list(x)}")


class _Pool(Parameterless, MacFree):
    """Fixed-window pools: shape and receptive field from Window."""

    PRIMARY = "kernel_size"
    #: FLOPs per output element = FLOPS_PER_TAP * prod(kernel_size) + FLOPS_EXTRA
    FLOPS_PER_TAP: ClassVar[int] = 1
    FLOPS_EXTRA: ClassVar[int] = 0

    kernel_size = Arg(Ints(1), doc="window size")
    stride = Arg(Ints(1), None, doc="window step; default kernel_size")

    def validate(self) -> None:
        if self.stride is None:
            self.stride = self.kernel_size
        for p, k in zip(self.pads(), self.kernel_size):
            if p > k // 2:
                raise self.fail(f"padding={p} should be at most half of kernel_size={k} "
                                f"(torch requires padding <= kernel_size // 2)", "padding")

    def pads(self) -> tuple[int, ...]:
        return getattr(self, "padding", None) or (0,) * self.nd

    def dilations(self) -> tuple[int, ...]:
        return getattr(self, "dilation", None) or (1,) * self.nd

    def windows(self) -> list[Window]:
        return [Window(k, s, p, p, d, self.ceil_mode)
                for k, s, p, d in zip(self.kernel_size, self.stride, self.pads(), self.dilations())]

    def shape(self, x: Shape) -> Shape:
        _check_rank(self, x)
        out = []
        for n, w in zip(x[2:], self.windows()):
            size = w.out_size(n)
            if size <= 0:
                raise self.fail(f"kernel extent {w.span} is larger than the padded input "
                                f"{n + w.pad_lo + w.pad_hi} (input {list(x)})", "kernel_size")
            out.append(size)
        return (*x[:2], *out)

    def elementwise_flops(self) -> int:
        return prod(self.y) * (self.FLOPS_PER_TAP * prod(self.kernel_size) + self.FLOPS_EXTRA)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``avg_poolNd`` keeps its input; max pooling also its int64 argmax indices
        (``max_poolNd_with_indices``: ``self``, ``result1``)."""
        return [saved_input()]

    def receptive_field(self, fields):
        return windowed(fields, self.windows())

    def torch_module(self) -> Any:
        return self.torch_namesake()


class _MaxPool(_Pool):
    def saved(self, grads: Grads, device: str) -> list[Saved]:
        return [saved_input(), saved_extra(prod(self.y), INT)]

    padding = Arg(Ints(0), 0, doc="implicit -inf padding on both sides, <= kernel_size // 2")
    dilation = Arg(Ints(1), 1, doc="spacing between window elements")
    ceil_mode = Arg(Bool(), False, doc="round the output size up (a window may start in "
                                       "the right padding only if it overlaps the input)")


class _AvgPool(_Pool):
    padding = Arg(Ints(0), 0, doc="implicit zero padding on both sides, <= kernel_size // 2")
    ceil_mode = Arg(Bool(), False, doc="round the output size up")
    count_include_pad = Arg(Bool(), True, doc="count padding zeros in the average")


class _AvgPoolDivisor(_AvgPool):
    divisor_override = Arg(PosInt, None, doc="divide by this instead of the window size")


class _LPPool(_Pool):
    PRIMARY = None
    FLOPS_PER_TAP = 2
    FLOPS_EXTRA = 1

    norm_type = Arg(Float(), doc="p of the power average (p=1: sum pooling, inf: max)")
    ceil_mode = Arg(Bool(), False, doc="round the output size up")

    def validate(self) -> None:
        super().validate()
        if self.norm_type <= 0:
            raise self.fail(f"norm_type must be > 0, got {self.norm_type}", "norm_type")

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """torch composes it (``F.lp_poolNd``): ``avg_pool(x.pow(p))``, then ``sign(out) *
        relu(abs(out))``, ``mul(k)`` and ``pow(1/p)``; autograd keeps the input (``pow``),
        ``x^p`` (``avg_pool``'s input), the pooled ``out`` (``abs``), the ``relu`` result
        and the ``sign`` (each other's factor in ``mul``), and the scaled result
        (``pow``'s input): measured on CPU, the same ops on CUDA."""
        y = prod(self.y)
        return [saved_input(), saved_extra(prod(self.x))] + [saved_extra(y)] * 4

    def torch_module(self) -> Any:
        if self.nd == 1:  # F.lp_pool1d multiplies by kernel_size: it must be an int
            return self.torch_namesake(kernel_size=self.kernel_size[0], stride=self.stride[0])
        return self.torch_namesake()


@register
class MaxPool1d(_MaxPool):
    """1-d max pooling over (N, C, L)."""

    nd = 1


@register
class MaxPool2d(_MaxPool):
    """2-d max pooling over (N, C, H, W)."""

    nd = 2


@register
class MaxPool3d(_MaxPool):
    """3-d max pooling over (N, C, D, H, W)."""

    nd = 3


@register
class AvgPool1d(_AvgPool):
    """1-d average pooling over (N, C, L) (torch's AvgPool1d has no divisor_override)."""

    nd = 1


@register
class AvgPool2d(_AvgPoolDivisor):
    """2-d average pooling over (N, C, H, W)."""

    nd = 2


@register
class AvgPool3d(_AvgPoolDivisor):
    """3-d average pooling over (N, C, D, H, W)."""

    nd = 3

    def shape(self, x: Shape) -> Shape:
        # ATen's avg_pool3d checks the raw input against the kernel, padding or not
        # ("input image (T: 1 H: 3 W: 3) smaller than kernel size"); 1-d/2-d pools do not
        if len(x) == 5 and any(n < k for n, k in zip(x[2:], self.kernel_size)):
            raise self.fail(f"input {list(x)} is smaller than kernel_size "
                            f"{list(self.kernel_size)} (torch's avg_pool3d refuses it even "
                            f"with padding)", "kernel_size")
        return super().shape(x)


@register
class LPPool1d(_LPPool):
    """1-d power-average pooling (sum x**p)**(1/p) over (N, C, L)."""

    nd = 1


@register
class LPPool2d(_LPPool):
    """2-d power-average pooling over (N, C, H, W)."""

    nd = 2


@register
class LPPool3d(_LPPool):
    """3-d power-average pooling over (N, C, D, H, W) (torch >= 2.2)."""

    nd = 3


# ---------------------------------------------------------------------- adaptive
class OutputSize(ArgType):
    """An int >= 1, or a list of nd entries each an int >= 1 or null (keep the input size)."""

    name = "int >= 1 or list of (int >= 1 or null)"

    def check(self, value: Any, nd: int) -> tuple[int | None, ...]:
        if is_int(value):
            values: tuple[int | None, ...] = (value,) * nd
        elif isinstance(value, (list, tuple)) and all(v is None or is_int(v) for v in value):
            if len(value) != nd:
                raise ValueError(f"expected {nd} values, got {len(value)}")
            values = tuple(value)
        else:
            raise ValueError(f"expected an int or a list of {nd} ints or nulls, got {value!r}")
        if any(v is not None and v < 1 for v in values):
            raise ValueError(f"values must be >= 1, got {value!r}")
        return values

    def schema(self) -> dict:
        item = {"type": "integer", "minimum": 1}
        return {"oneOf": [item, {"type": "array", "items": {"anyOf": [item, {"type": "null"}]}}]}


def adaptive_bounds(n: int, out: int) -> list[tuple[int, int]]:
    """torch's adaptive windows of one dim: ``[floor(i*n/out), ceil((i+1)*n/out))``."""
    return [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]


class _Adaptive(Parameterless, MacFree):
    PRIMARY = "output_size"
    MAX: ClassVar[bool] = False

    output_size = Arg(OutputSize(), doc="output spatial size; null keeps that input size")

    def sizes(self, x: Shape) -> tuple[int, ...]:
        return tuple(n if o is None else o for n, o in zip(x[2:], self.output_size))

    def shape(self, x: Shape) -> Shape:
        _check_rank(self, x)
        return (*x[:2], *self.sizes(x))

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``adaptive_avg_poolNd`` keeps its input, except to a 1x1 output, which torch
        computes as ``mean`` (sizes only); max pooling keeps input and int64 indices."""
        if self.MAX:
            return [saved_input(), saved_extra(prod(self.y), INT)]
        if all(o == 1 for o in self.y[2:]) and self.nd == 2:
            return []
        return [saved_input()]

    def elementwise_flops(self) -> int:
        """One compare/add per window element, summed exactly over all windows."""
        per_map = 1
        for n, o in zip(self.x[2:], self.y[2:]):
            per_map *= sum(hi - lo for lo, hi in adaptive_bounds(n, o))
        return self.x[0] * self.x[1] * per_map

    def receptive_field(self, fields):
        rf = trailing(fields[0])
        if rf is None or rf.global_:
            return rf
        if all(o == 1 for o in self.y[2:]):
            return GLOBAL
        if len(rf.dims) != self.nd:
            return GLOBAL
        dims = []
        for d, n, o in zip(rf.dims, self.x[2:], self.y[2:]):
            if d.whole:
                dims.append(d)
                continue
            bounds = adaptive_bounds(n, o)
            largest = max(hi - lo for lo, hi in bounds)
            first = bounds[0][1] - bounds[0][0]
            grown = Window(largest, ratio(n, o)).receptive(d)  # type: ignore[arg-type]
            dims.append(replace(grown, start=Window(first).receptive(d).start))
        return RF(tuple(dims), aligned=rf.aligned)

    def torch_module(self) -> Any:
        return self.torch_namesake()


@register
class AdaptiveAvgPool1d(_Adaptive):
    """Average pooling to a fixed output length over (N, C, L)."""

    nd = 1


@register
class AdaptiveAvgPool2d(_Adaptive):
    """Average pooling to a fixed output size over (N, C, H, W); 1 = global average pool."""

    nd = 2


@register
class AdaptiveAvgPool3d(_Adaptive):
    """Average pooling to a fixed output size over (N, C, D, H, W)."""

    nd = 3


@register
class AdaptiveMaxPool1d(_Adaptive):
    """Max pooling to a fixed output length over (N, C, L)."""

    MAX = True

    nd = 1


@register
class AdaptiveMaxPool2d(_Adaptive):
    """Max pooling to a fixed output size over (N, C, H, W); 1 = global max pool."""

    MAX = True

    nd = 2


@register
class AdaptiveMaxPool3d(_Adaptive):
    """Max pooling to a fixed output size over (N, C, D, H, W)."""

    MAX = True

    nd = 3
