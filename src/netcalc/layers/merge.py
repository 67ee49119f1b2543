"""Layers joining several inputs: Add, Mul, Concat, MatMul.

Add / Mul: two or more inputs broadcast together by numpy/torch rules (shapes are
aligned on the right; each dim must be equal or 1). Element-wise FLOPs
``numel(output) * (inputs - 1)``; no MACs.

Concat (torch.cat): all inputs have the same rank and agree on every dim except
``dim`` (default 1, the channels); float or int64. No FLOPs.

MatMul (torch.matmul) of two inputs: ``(*, M, K) @ (*, K, N) -> (*, M, N)`` with the
batch dims ``*`` broadcast; a 1-d operand is a vector (a row for the first input, a
column for the second) whose dim is dropped from the result. MACs
``prod(batch dims) * M * K * N`` (with M = 1 or N = 1 for a vector).

Receptive field: Add, Mul and Concat take the union of their inputs' fields
(:func:`netcalc.rf.merge`; Concat along a spatial dim is flagged unaligned). MatMul
mixes along the contracted axes: a spatial dim there turns global, except the offset
inside a window of a dim split into windows (Swin's attention: each unit sees its
window; see :meth:`MatMul.receptive_field`).
"""

from __future__ import annotations

from dataclasses import replace
from math import prod
from typing import Any

from ..args import AnyInt, Arg
from ..rf import GLOBAL, RF, WHOLE, merge
from ..rfperiod import union, within
from .select import mixed
from .base import (FLOAT, INT, LOWER, Grads, Layer, MacFree, Parameterless, Saved, Shape,
                   matmul_backward, register, saved_folded, saved_input)


def broadcast(layer: Layer, shapes: list[Shape], full: list[Shape] | None = None) -> Shape:
    """numpy/torch broadcasting of several shapes, or a located error naming two of them.

    ``full`` are the shapes to name in the error (MatMul broadcasts batch dims only).
    One pass: each output dim remembers the input that made it larger than 1, so an
    Add of N inputs costs N * rank steps, not N^2.
    """
    named = full or shapes
    rank = max(len(s) for s in shapes)
    out = [1] * rank
    owner = [0] * rank
    for j, s in enumerate(shapes):
        for k in range(-len(s), 0):
            size = s[k]
            if size == 1 or size == out[k]:
                continue
            if out[k] == 1:
                out[k], owner[k] = size, j
                continue
            i = owner[k]
            raise layer.fail(f"shapes {list(named[i])} and {list(named[j])} do not broadcast "
                             f"(dim {len(s) + k - len(named[j])}: {shapes[i][k]} vs {size})")
    return tuple(out)


class _Merge(Parameterless, MacFree):
    ARITY = (2, None)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """Sums and concatenations need only sizes in backward (derivatives.yaml)."""
        return []

    def receptive_field(self, fields):
        return merge(fields)


class _Elementwise(_Merge):
    """Add / Mul with broadcasting."""

    MACS_FORMULA = "0 (elementwise: numel(output) * (inputs - 1))"

    def shape(self, *xs: Shape) -> Shape:
        return broadcast(self, list(xs))

    def elementwise_flops(self) -> int:
        return prod(self.y) * (len(self.inputs) - 1)


@register
class Add(_Elementwise):
    """Element-wise sum of two or more inputs (residual connections), with broadcasting."""

    def torch_module(self) -> Any:
        from ..torch.modules import Add as TorchAdd

        return TorchAdd()


@register
class Mul(_Elementwise):
    """Element-wise product of two or more inputs (gates, attention scales), with broadcasting."""

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``mul``: each factor's gradient needs every other factor, kept only when that
        gradient is asked for."""
        n = len(self.inputs)
        return [saved_input(j) for j in range(n)
                if any(grads.inputs[i] for i in range(n) if i != j)]

    def torch_module(self) -> Any:
        from ..torch.modules import Mul as TorchMul

        return TorchMul()


@register
class Concat(_Merge):
    """Concatenation along ``dim`` (default 1, channels); other dims must match."""

    PRIMARY = "dim"
    ARITY = (1, None)
    ACCEPTS = (FLOAT, INT)

    dim = Arg(AnyInt, 1, doc="dim to concatenate along (not the batch, dim 0)")

    def axis(self, rank: int) -> int:
        d = self.dim + rank if self.dim < 0 else self.dim
        if not 0 <= d < rank:
            raise self.fail(f"dim={self.dim} is out of range for a {rank}-d input", "dim")
        if d == 0:
            raise self.fail("Concat along the batch dim (dim 0) is not supported", "dim")
        return d

    def shape(self, *xs: Shape) -> Shape:
        dtypes = {t.dtype for t in self.inputs}
        if len(dtypes) > 1:
            raise self.fail(f"Concat inputs mix dtypes ({', '.join(sorted(dtypes))})")
        first = xs[0]
        d = self.axis(len(first))
        for i, s in enumerate(xs[1:], start=2):
            if len(s) != len(first):
                raise self.fail(f"input {i} has shape {list(s)} but input 1 has {list(first)}: "
                                f"Concat needs inputs of the same rank")
            for j, (p, q) in enumerate(zip(first, s)):
                if j != d and p != q:
                    raise self.fail(f"input {i} has shape {list(s)} but input 1 has "
                                    f"{list(first)}: all dims except dim {d} must match "
                                    f"(dim {j}: {q} vs {p})")
        return (*first[:d], sum(s[d] for s in xs), *first[d + 1:])

    def elementwise_flops(self) -> int:
        return 0

    def receptive_field(self, fields):
        rf = merge(fields)
        if rf is None or rf.global_:
            return rf
        rank, axis = len(self.x), self.axis(len(self.x))
        if rf.index_of(axis, rank) is not None:
            return replace(rf, aligned=False)
        return rf.with_whole(rf.dims_at({axis}, rank), rank)  # merged dims cut apart

    def torch_module(self) -> Any:
        from ..torch.modules import Concat as TorchConcat

        return TorchConcat(self.dim)


@register
class MatMul(Parameterless):
    """Matrix product of two inputs with torch.matmul semantics (batch dims broadcast)."""

    ARITY = (2, 2)
    AUTOCAST = LOWER
    MACS_FORMULA = "prod(batch dims) * M * K * N"

    def shape(self, a: Shape, b: Shape) -> Shape:
        if len(a) == 1 and len(b) == 1:
            raise self.fail(f"MatMul of two 1-d inputs {list(a)} and {list(b)} is a scalar "
                            "without a batch dim")
        a2 = (1, *a) if len(a) == 1 else tuple(a)
        b2 = (*b, 1) if len(b) == 1 else tuple(b)
        if a2[-1] != b2[-2]:
            raise self.fail(f"sequence-length/inner dims mismatch: {list(a)} @ {list(b)} "
                            f"({a2[-1]} vs {b2[-2]})")
        batch = broadcast(self, [a2[:-2], b2[:-2]], [a, b])
        out = (*batch, a2[-2], b2[-1])
        if len(a) == 1:
            out = out[:-2] + out[-1:]
        if len(b) == 1:
            out = out[:-1]
        self._mkn = (prod(batch), a2[-2], a2[-1], b2[-1])
        return out

    def macs(self) -> int:
        return prod(self._mkn)

    def elementwise_flops(self) -> int:
        return 0

    def backward_macs(self, grads: Grads) -> int:
        return matmul_backward(self.macs(), grads, *grads.inputs)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """Each operand is kept for the other's gradient. With both operands 3-d or more,
        torch.matmul runs ``bmm`` on each operand ``expand``-ed to the common batch and
        ``reshape``-d to (batch product, rows, cols), and ``bmm`` keeps those
        (aten/src/ATen/native/LinearAlgebra.cpp ``_matmul_impl``; derivatives.yaml
        ``bmm``): a view of the operand when its batch dims merge in place, else a copy.
        A broadcast operand is counted as the input itself."""
        out = []
        for j, other in ((0, 1), (1, 0)):
            if not grads.inputs[other]:
                continue
            x = self.inputs[j].shape
            batch = self.outputs[0].shape[:-2]
            if min(len(t.shape) for t in self.inputs) >= 3 and tuple(x[:-2]) == tuple(batch):
                merged = tuple(d for d in range(len(x) - 2) if x[d] != 1)
                out.append(saved_folded(j, prod(x), merged))
            else:
                out.append(saved_input(j))
        return out

    def receptive_field(self, fields):
        """Output ``(..., m, n)`` reads row m of the first input and column n of the
        second: each operand's contracted axis is mixed (:func:`netcalc.layers.select.
        mixed`: a dim held there turns global, the offsets inside Swin's windows make
        every unit see its window), its other axes move to the output's, and the two
        fields join dim by dim. A dim both operands still place, but on different axes
        (``q @ k^T`` holds the query's and the key's token), is the union over the free
        one: the second placement sees its whole window, the first is kept. Dims whose
        window digits differ, or whose offset in the window no operand keeps, are
        global."""
        placed = [self._operand(j, f) for j, f in enumerate(fields) if f is not None]
        if not placed:
            return None
        if any(p is None for p in placed):
            return GLOBAL
        rank = len(self.y)
        n = len(placed[0][0])
        if any(len(p[0]) != n for p in placed):
            return GLOBAL
        dims, axes, packing, outer = [], [], [], []
        for i in range(n):
            parts = [(p[0][i], p[1][i]) for p in placed]
            low = next((dig[0] for d, dig in parts if dig and dig[0][3] == 1), None)
            high = {tuple(x for x in dig if x[3] > 1) for d, dig in parts}
            if any(d.whole for d, _ in parts) or low is None or len(high) != 1:
                dims.append(WHOLE)
                axes.append(None)
                packing.append(None)
                outer.append(None)
                continue
            (higher,) = high
            seen = [d if dig and dig[0] == low else within(d, low[2]) if higher else WHOLE
                    for d, dig in parts]
            dims.append(seen[0] if len(seen) == 1 else union(seen))
            axes.append(low[0])
            packing.append(low[1:3])
            outer.append(tuple((b - rank, q, m, w) for b, q, m, w in higher) or None)
        field = RF(tuple(dims), aligned=all(f.aligned for f in fields if f is not None))
        return field.placed(tuple(axes), rank, packing=tuple(packing), shape=self.y,
                            outer=tuple(outer))

    def _operand(self, j: int, rf: RF) -> "tuple[tuple, list] | None":
        """Operand j's dims and, per dim, its digits at the output's axes (those on the
        contracted axis dropped); None where it has no dims (GLOBAL)."""
        x, rank = self.inputs[j].shape, len(self.y)
        r = len(x)
        k = r - 1 if j == 0 or r == 1 else r - 2  # the contracted axis
        if j == 0:
            keep = {r - 2: rank - (1 if len(self.inputs[1].shape) == 1 else 2)} if r > 1 else {}
        else:
            keep = {r - 1: rank - 1} if r > 1 else {}
        tail = 2 if r > 1 else 1
        ob = 2 - sum(len(t.shape) == 1 for t in self.inputs)  # the output's non-batch axes
        where = {a: rank - ob - (r - tail) + a for a in range(r - tail)}
        where.update(keep)
        field = mixed(rf, x, {k})
        if field is None or field.global_ or not field.dims:
            return None
        digits = [[(where[a], q, n, w) for a, q, n, w in dig if a != k]
                  for dig in field.digits(x)]
        return field.dims, digits

    def torch_module(self) -> Any:
        from ..torch.modules import MatMul as TorchMatMul

        return TorchMatMul()
