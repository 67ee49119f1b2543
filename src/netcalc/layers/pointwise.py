"""Point-wise layers without an activation's shape: Scale and StochasticDepth.

``Scale: {factor}`` multiplies by a constant (Gemma's ``sqrt(d_model)`` embedding
scale, attention's ``1/sqrt(d)`` written out): one FLOP per element; backward needs
no tensor (the factor is a number).

``StochasticDepth: {p, mode}`` (torchvision.ops.StochasticDepth): in training it
zeroes the whole residual branch of a sample (``row``) or of the batch (``batch``) with
probability ``p`` and scales the rest by ``1/(1-p)``; in eval it is the identity, so it
counts nothing. Training keeps its noise for the backward (``input * noise``): ``N``
elements in ``row`` mode, 1 in ``batch`` mode (none when ``p = 0``).

Both keep the receptive field.
"""

from __future__ import annotations

from math import prod
from typing import Any

from ..args import Arg, Choice, Float, Probability
from .base import DataMovement, Grads, MacFree, Parameterless, Saved, Shape, register, saved_extra


class _Pointwise(Parameterless, MacFree):
    def shape(self, x: Shape) -> Shape:
        return x

    def receptive_field(self, fields):
        return fields[0]


@register
class Scale(_Pointwise):
    """x * factor."""

    PRIMARY = "factor"
    factor = Arg(Float(), doc="the constant to multiply by")

    def elementwise_flops(self) -> int:
        return prod(self.x)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        return []  # mul by a scalar: the gradient is grad * factor

    def torch_module(self) -> Any:
        from ..torch.modules import Scale as TorchScale

        return TorchScale(self.factor)


@register
class StochasticDepth(_Pointwise, DataMovement):
    """torchvision.ops.StochasticDepth: drops a sample's (or the batch's) whole branch in
    training; identity in eval."""

    PRIMARY = "p"
    p = Arg(Probability, doc="probability of dropping (training only)")
    mode = Arg(Choice(("row", "batch")), "row", doc="row: per sample; batch: the whole batch")

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        if self.p == 0:
            return []
        return [saved_extra(self.x[0] if self.mode == "row" else 1)]

    def torch_module(self) -> Any:
        from ..torch.modules import StochasticDepth as TorchStochasticDepth

        return TorchStochasticDepth(self.p, self.mode)
