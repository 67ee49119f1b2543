"""Resampling: Upsample, PixelShuffle, PixelUnshuffle, ChannelShuffle (torch.nn's).

Upsample
    Input ``(N, C, *L)`` with 1 to 3 spatial dims. Exactly one of ``size`` (an int or a
    list, one per spatial dim) and ``scale_factor`` (a number or a list). With a scale
    the output is ``floor(L * scale_factor)`` (torch's rule, in double precision).
    ``linear`` needs a 3-d input, ``bilinear``/``bicubic`` 4-d, ``trilinear`` 5-d;
    ``nearest``/``nearest-exact`` any of them. ``align_corners`` only goes with the
    interpolating modes (linear, bilinear, bicubic, trilinear), as in torch.

    Receptive field, per spatial dim: an output step is ``r`` input steps, with torch's
    source scale ``r`` (``1/scale_factor`` when a scale is given and not recomputed,
    else ``in/out``; ``(in-1)/(out-1)`` with ``align_corners``), so ``jump' = jump*r``
    (a Fraction). Each output reads ``taps`` neighbours: 1 for nearest modes (size
    unchanged), 2 for linear modes (``size + jump``), 4 for bicubic
    (``size + 3*jump``). ``start`` is the centre of the first output's taps, from
    torch's source index of output 0. Taps past the border (clamped by torch) are
    counted where they sit, like a convolution's padding.

    Element-wise FLOPs per output element: the weighted sum of its ``taps**d`` inputs,
    ``2*taps**d - 1`` (linear 3, bilinear 7, trilinear 15, bicubic 31); nearest modes 0
    (a copy). Computing the interpolation weights is not counted.

PixelShuffle(r)
    ``(*, C*r*r, H, W) -> (*, C, H*r, W*r)``. Output row ``h`` comes from input row
    ``h // r``: the jump divides by ``r`` (a transposed 1-wide window), size and start
    unchanged.

PixelUnshuffle(r)
    ``(*, C, H*r, W*r) -> (*, C*r*r, H, W)``. The ``r*r`` channels of one output
    position together see an ``r x r`` block: a window ``k = s = r``.

ChannelShuffle(groups)
    ``(N, C, *)``, ``C % groups == 0``; shape and field unchanged (point-wise).

Params, buffers, MACs: 0. Shuffles move data: 0 element-wise FLOPs.
"""

from __future__ import annotations

import math
from fractions import Fraction
from math import prod
from typing import Any

from ..args import Arg, ArgType, Bool, Choice, PosInt, is_int, is_num
from ..rf import GLOBAL, RF, exact, ratio, trailing
from ..window import Window
from .base import Grads, Layer, MacFree, Parameterless, Saved, Shape, register
from .pad import on_trailing

NEAREST = ("nearest", "nearest-exact")
#: input rank each interpolating mode needs (torch.nn.functional.interpolate)
MODE_RANK = {"linear": 3, "bilinear": 4, "bicubic": 4, "trilinear": 5}
MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "nearest-exact")
TAPS = {"nearest": 1, "nearest-exact": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "bicubic": 4}


class AnySize(ArgType):
    """An int >= 1 or a list of them, one per spatial dim (checked against the input)."""

    name = "int >= 1 or list of them"

    def check(self, value: Any, nd: int) -> int | tuple[int, ...]:
        if is_int(value):
            values: tuple[int, ...] = (value,)
        elif isinstance(value, (list, tuple)) and value and all(is_int(v) for v in value):
            values = tuple(value)
        else:
            raise ValueError(f"expected an int or a list of ints, got {value!r}")
        if any(v < 1 for v in values):
            raise ValueError(f"values must be >= 1, got {value!r}")
        return value if is_int(value) else values

    def schema(self) -> dict:
        item = {"type": "integer", "minimum": 1}
        return {"oneOf": [item, {"type": "array", "items": item}]}


class AnyScale(ArgType):
    """A number > 0 or a list of them, one per spatial dim (checked against the input)."""

    name = "number > 0 or list of them"

    def check(self, value: Any, nd: int) -> float | tuple[float, ...]:
        if is_num(value):
            values: tuple[float, ...] = (value,)
        elif isinstance(value, (list, tuple)) and value and all(is_num(v) for v in value):
            values = tuple(value)
        else:
            raise ValueError(f"expected a number or a list of numbers, got {value!r}")
        if any(not v > 0 or math.isinf(v) for v in values):
            raise ValueError(f"values must be finite and > 0, got {value!r}")
        return float(value) if is_num(value) else tuple(float(v) for v in values)

    def schema(self) -> dict:
        item = {"type": "number", "exclusiveMinimum": 0}
        return {"oneOf": [item, {"type": "array", "items": item}]}


def _per_dim(value: Any, m: int) -> tuple | None:
    if value is None:
        return None
    return tuple(value) if isinstance(value, tuple) else (value,) * m


class _Static(Parameterless, MacFree):
    """No params, no MACs; torch module by name. The backward of an interpolation or a
    pixel/channel shuffle needs only sizes (``upsample_*_backward``)."""

    def torch_module(self) -> Any:
        return self.torch_namesake()

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        return []


@register
class Upsample(_Static):
    """Nearest/linear/bilinear/bicubic/trilinear resize over (N, C, *spatial)."""

    PRIMARY = "scale_factor"

    size = Arg(AnySize(), None, doc="output spatial size (int or one per spatial dim)")
    scale_factor = Arg(AnyScale(), None, doc="multiplier of the spatial size; output floor(L*s)")
    mode = Arg(Choice(MODES), "nearest")
    align_corners = Arg(Bool(), None, doc="linear modes only: map corner pixels onto corners")
    recompute_scale_factor = Arg(Bool(), None, doc="interpolate with out/in instead of the "
                                                   "given scale; same output size")

    def validate(self) -> None:
        if self.size is not None and self.scale_factor is not None:
            raise self.fail("Upsample takes size or scale_factor, not both", "scale_factor")
        if self.size is None and self.scale_factor is None:
            raise self.fail("Upsample needs size or scale_factor")
        if self.align_corners is not None and self.mode in NEAREST:
            raise self.fail(f"align_corners can only be set with the interpolating modes "
                            f"linear, bilinear, bicubic, trilinear (mode is {self.mode!r})",
                            "align_corners")
        if self.recompute_scale_factor and self.size is not None:
            raise self.fail("recompute_scale_factor is not meaningful with an explicit size",
                            "recompute_scale_factor")

    def shape(self, x: Shape) -> Shape:
        rank = len(x)
        if rank not in (3, 4, 5):
            raise self.fail(f"Upsample needs a 3-d, 4-d or 5-d input (N, C, 1 to 3 spatial "
                            f"dims), got {list(x)}")
        need = MODE_RANK.get(self.mode)
        if need is not None and rank != need:
            raise self.fail(f"mode {self.mode!r} needs a {need}-d input, got {rank}-d "
                            f"{list(x)}", "mode")
        m = rank - 2
        arg = "size" if self.size is not None else "scale_factor"
        given = _per_dim(getattr(self, arg), m)
        if len(given) != m:
            raise self.fail(f"{arg} has {len(given)} values but the input {list(x)} has {m} "
                            f"spatial dim(s)", arg)
        if self.size is not None:
            out = given
        else:
            out = tuple(math.floor(n * s) for n, s in zip(x[2:], given))
        return (*x[:2], *out)

    def ratios(self) -> list[int | Fraction]:
        """torch's source scale per spatial dim: input steps per output step."""
        scales = None if self.recompute_scale_factor else _per_dim(self.scale_factor, len(self.x) - 2)
        out = []
        for i, (n, o) in enumerate(zip(self.x[2:], self.y[2:])):
            if self.align_corners:
                r = ratio(n - 1, o - 1) if o > 1 else ratio(n, o)
            elif scales is not None:
                r = exact(1 / Fraction(repr(scales[i])))
            else:
                r = ratio(n, o)
            out.append(r)
        return out

    def first_tap(self, r: int | Fraction) -> int:
        """Index of the first input tap of output 0 (torch's source index)."""
        r = Fraction(r)
        if self.mode == "nearest" or self.align_corners:
            return 0 - (1 if self.mode == "bicubic" else 0)
        if self.mode == "nearest-exact":
            return math.floor(r / 2)
        src = r / 2 - Fraction(1, 2)
        if self.mode == "bicubic":  # not clamped; taps floor(src)-1 .. floor(src)+2
            return math.floor(src) - 1
        return math.floor(max(src, Fraction(0)))

    def elementwise_flops(self) -> int:
        taps = TAPS[self.mode]
        if taps == 1:
            return 0
        return prod(self.y) * (2 * taps ** (len(self.y) - 2) - 1)

    def receptive_field(self, fields):
        rf = trailing(fields[0])
        if rf is None or rf.global_:
            return rf
        if len(rf.dims) != len(self.x) - 2:
            return GLOBAL
        windows = []
        for r in self.ratios():
            grid = self.grid_tap(r)
            if grid is not None:  # every source index is a whole pixel: one tap, weight 1
                windows.append(Window(1, r, -grid))  # type: ignore[arg-type]
            else:
                windows.append(Window(TAPS[self.mode], r, -self.first_tap(r)))  # type: ignore[arg-type]
        return RF(tuple(w.receptive(d) for w, d in zip(windows, rf.dims)), aligned=rf.aligned)

    def grid_tap(self, r: int | Fraction) -> int | None:
        """For linear/cubic modes whose source indices are all whole pixels (torch's
        ``(dst + 0.5) * r - 0.5`` with an odd integer ``r``, or ``dst * r`` with an
        integer ``r`` under align_corners), the index of output 0's one tap: the
        neighbours' interpolation weights are exactly 0 there. Else None."""
        if TAPS[self.mode] == 1 or Fraction(r).denominator != 1:
            return None
        r = int(r)
        if self.align_corners:
            return 0
        return (r - 1) // 2 if r % 2 == 1 else None


def _check_4d(layer: Layer, x: Shape) -> None:
    if len(x) < 4:
        raise layer.fail(f"{type(layer).__name__} needs a 4-d input (N, C, H, W) or more, "
                         f"got {list(x)}")


@register
class PixelShuffle(_Static):
    """Sub-pixel upscaling: (N, C*r*r, H, W) -> (N, C, H*r, W*r)."""

    PRIMARY = "upscale_factor"
    upscale_factor = Arg(PosInt, doc="r")

    def shape(self, x: Shape) -> Shape:
        _check_4d(self, x)
        r = self.upscale_factor
        *lead, c, h, w = x
        if c % (r * r):
            raise self.fail(f"channels {c} are not divisible by upscale_factor**2 = {r * r} "
                            f"(input {list(x)})", "upscale_factor")
        return (*lead, c // (r * r), h * r, w * r)

    def elementwise_flops(self) -> int:
        return 0

    def receptive_field(self, fields):
        r = self.upscale_factor
        return on_trailing(fields[0], [Window(1, r, transposed=True)] * 2)


@register
class PixelUnshuffle(_Static):
    """Inverse of PixelShuffle: (N, C, H*r, W*r) -> (N, C*r*r, H, W)."""

    PRIMARY = "downscale_factor"
    downscale_factor = Arg(PosInt, doc="r")

    def shape(self, x: Shape) -> Shape:
        _check_4d(self, x)
        r = self.downscale_factor
        *lead, c, h, w = x
        for what, n in (("height", h), ("width", w)):
            if n % r:
                raise self.fail(f"{what} {n} is not divisible by downscale_factor={r} "
                                f"(input {list(x)})", "downscale_factor")
        return (*lead, c * r * r, h // r, w // r)

    def elementwise_flops(self) -> int:
        return 0

    def receptive_field(self, fields):
        r = self.downscale_factor
        return on_trailing(fields[0], [Window(r, r)] * 2)


@register
class ChannelShuffle(_Static):
    """ShuffleNet's channel shuffle: (N, C, *) with C split into groups and transposed."""

    PRIMARY = "groups"
    groups = Arg(PosInt, doc="number of channel groups; divides C")

    def shape(self, x: Shape) -> Shape:
        if len(x) < 3:
            raise self.fail(f"ChannelShuffle needs a 3-d input (N, C, ...) or more, got {list(x)}")
        if x[1] % self.groups:
            raise self.fail(f"channels {x[1]} are not divisible by groups={self.groups} "
                            f"(input {list(x)})", "groups")
        return x

    def elementwise_flops(self) -> int:
        return 0

    def receptive_field(self, fields):
        return fields[0]
