"""Reductions over dims: Mean, Sum, Amax (torch.mean, torch.sum, torch.amax).

``dim`` is one dim or a list (not the batch, dim 0); ``keepdim`` keeps each reduced dim
with size 1, as torch does. MNASNet's head is ``Mean: {dim: [2, 3]}``.

Counts: no parameters, no MACs. Element-wise FLOPs, with ``n = numel(input)`` and
``m = numel(output)``: Sum ``n - m`` adds; Mean ``n`` (the adds and one divide per
output); Amax ``n - m`` compares. The backward of Sum and Mean needs only sizes; Amax
keeps its input and result (derivatives.yaml: the gradient goes to the maxima).

Receptive field: a reduction over a spatial dim mixes every position along it:
GLOBAL (as a global pooling); over other dims (channels, a channel-last feature dim)
the field is kept.
"""

from __future__ import annotations

from math import prod
from typing import Any

from ..args import Arg, Bool, IntList
from .base import (FP32, Grads, MacFree, Parameterless, Saved, Shape, register, saved_input,
                   saved_output)
from .select import drop_axes, mixed


class _Reduce(Parameterless, MacFree):
    PRIMARY = "dim"
    MACS_FORMULA = "0 (element-wise: see the FLOPs)"
    dim = Arg(IntList(), doc="dim or dims to reduce (not the batch)")
    keepdim = Arg(Bool(), False, doc="keep each reduced dim with size 1")

    def axes(self) -> set[int]:
        rank = len(self.x)
        axes = [self.dim_index(d, rank, batch=False) for d in self.dim]
        if len(set(axes)) != len(axes):
            raise self.fail(f"dim {list(self.dim)} names a dim twice", "dim")
        return set(axes)

    def shape(self, x: Shape) -> Shape:
        axes = self.axes()
        if self.keepdim:
            return tuple(1 if i in axes else n for i, n in enumerate(x))
        return tuple(n for i, n in enumerate(x) if i not in axes)

    def elementwise_flops(self) -> int:
        return prod(self.x) - prod(self.y)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        return []  # sum and mean backward expand the gradient: sizes only

    def receptive_field(self, fields):
        rank, axes = len(self.x), self.axes()
        return mixed(fields[0], self.x, axes) if self.keepdim else \
            drop_axes(fields[0], rank, axes)

    def torch_module(self) -> Any:
        from ..torch.modules import Reduce

        return Reduce(type(self).__name__.lower(), self.dim, self.keepdim)


@register
class Sum(_Reduce):
    """Sum over ``dim`` (torch.sum)."""

    AUTOCAST = FP32  # autocast runs sum in float32 (its fp32_set_opt_dtype list)


@register
class Mean(_Reduce):
    """Mean over ``dim`` (torch.mean)."""

    def elementwise_flops(self) -> int:
        return prod(self.x)


@register
class Amax(_Reduce):
    """Maximum over ``dim`` (torch.amax: values only)."""

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        return [saved_input(), saved_output()]
