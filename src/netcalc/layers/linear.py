"""Fully connected layers: Linear and Bilinear.

Linear (torch.nn.Linear) acts on the LAST dim of an input of any rank >= 2:
``(N, *, in_features) -> (N, *, out_features)``; ``in_features`` is inferred from the
last dim. Its weight is ``(out_features, in_features)``, so it can be tied with an
Embedding of the same shape.

MACs: ``numel(output) * in_features`` (every output element is a dot product of
length in_features); the bias add is ``numel(output)`` element-wise FLOPs.

Bilinear (torch.nn.Bilinear): ``y_k = x1 A_k x2 + b_k`` on two inputs
``(N, *, in1_features)`` and ``(N, *, in2_features)`` with equal leading dims;
weight ``(out, in1, in2)``. MACs ``numel(output) * in1 * in2`` (each weight entry
multiplies one ``x1_i * x2_j`` product per output vector; forming those products,
``prod(leading) * in1 * in2``, is ignored as in fvcore's einsum-based count).

Receptive field: a Linear mixes every element of the last dim. On a tensor whose
last dim is spatial (e.g. ``(N, C, H, W)``, where it mixes W) that dim becomes
global, the others stay exact (all global when the last dim holds a flattened map);
channel-last (``(N, H, W, C)`` after a Permute, or ``(N, H*W, C)`` tokens) it mixes
channels only, like a 1x1 convolution, and keeps the field; on a tensor without one
(features, tokens) it stays None. Bilinear mixes two inputs: GLOBAL.
"""

from __future__ import annotations

from math import prod
from typing import Any

from ..args import Arg, Bool, PosInt
from ..rf import GLOBAL
from .select import mixed
from .base import (LOWER, Grads, Layer, Saved, Shape, matmul_backward, register, saved_input,
                   saved_weight)


def _mixing(fields):
    """Field of a layer that mixes the last dim: GLOBAL if any input has a field."""
    real = [f for f in fields if f is not None]
    return GLOBAL if real else None


@register
class Linear(Layer):
    """y = x W^T + b over the last dim of (N, *, in_features)."""

    PRIMARY = "out_features"
    AUTOCAST = LOWER
    PARAMS_FORMULA = "out_features*in_features + (out_features if bias)"
    MACS_FORMULA = "numel(output) * in_features"

    in_features = Arg(PosInt, inferred=True, doc="size of the last input dim")
    out_features = Arg(PosInt, doc="size of the last output dim")
    bias = Arg(Bool(), True)

    def shape(self, x: Shape) -> Shape:
        if len(x) < 2:
            raise self.fail(f"Linear needs an (N, *, in_features) input, got {list(x)}")
        self.check_inferred("in_features", x[-1])
        return (*x[:-1], self.out_features)

    def weight_shape(self) -> Shape:
        return (self.out_features, self.in_features)

    def params(self) -> int:
        return self.out_features * self.in_features + (self.out_features if self.bias else 0)

    def macs(self) -> int:
        return prod(self.y) * self.in_features

    def elementwise_flops(self) -> int:
        return prod(self.y) if self.bias else 0

    def backward_macs(self, grads: Grads) -> int:
        return matmul_backward(self.macs(), grads, grads.inputs[0], grads.weight)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``addmm``/``mm`` keep the input only for the weight gradient, the weight
        (``mat2``, under autocast its 16-bit cast) only for the input gradient."""
        return ([saved_input()] if grads.weight else []) + \
            ([saved_weight(self.in_features * self.out_features)] if grads.inputs[0] else [])

    def receptive_field(self, fields):
        # mixes the last dim: the dims held there become global; channel-last (or a
        # flattened map moved before the features) keeps the field
        return mixed(fields[0], self.x, {len(self.x) - 1})

    def torch_module(self) -> Any:
        import torch.nn as nn

        return nn.Linear(self.in_features, self.out_features, bias=self.bias)


@register
class Bilinear(Layer):
    """y_k = x1^T A_k x2 + b_k on two inputs (N, *, in1) and (N, *, in2)."""

    PRIMARY = "out_features"
    ARITY = (2, 2)
    AUTOCAST = LOWER
    PARAMS_FORMULA = "out*in1*in2 + (out if bias)"
    MACS_FORMULA = "numel(output) * in1_features * in2_features"

    in1_features = Arg(PosInt, inferred=True, doc="last dim of the first input")
    in2_features = Arg(PosInt, inferred=True, doc="last dim of the second input")
    out_features = Arg(PosInt)
    bias = Arg(Bool(), True)

    def shape(self, a: Shape, b: Shape) -> Shape:
        if len(a) < 2 or a[:-1] != b[:-1]:
            raise self.fail(f"Bilinear needs inputs (N, *, in1) and (N, *, in2) with equal "
                            f"leading dims, got {list(a)} and {list(b)}")
        self.check_inferred("in1_features", a[-1])
        self.check_inferred("in2_features", b[-1])
        return (*a[:-1], self.out_features)

    def weight_shape(self) -> Shape:
        return (self.out_features, self.in1_features, self.in2_features)

    def params(self) -> int:
        return prod(self.weight_shape()) + (self.out_features if self.bias else 0)

    def macs(self) -> int:
        return prod(self.y) * self.in1_features * self.in2_features

    def elementwise_flops(self) -> int:
        return prod(self.y) if self.bias else 0

    def backward_macs(self, grads: Grads) -> int:
        """``_trilinear_backward``: each of the three gradients is one product as large
        as the forward."""
        return self.macs() * (grads.inputs[0] + grads.inputs[1] + grads.weight)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        return [saved_input(0), saved_input(1)]

    def receptive_field(self, fields):
        return _mixing(fields)

    def torch_module(self) -> Any:
        import torch.nn as nn

        return nn.Bilinear(self.in1_features, self.in2_features, self.out_features,
                           bias=self.bias)
