"""RotaryEmbedding: rotary position embedding (RoPE, Su et al. 2021) applied to q or k.

Input ``(N, *, L, D)`` (Hugging Face's ``(batch, heads, length, head_dim)``): positions
``0 .. L-1`` along dim -2, features along the last dim. The first ``dim`` features
(default all of ``D``; fewer is partial rotary, as Phi-2 and GPT-NeoX) are rotated
as Hugging Face's ``apply_rotary_pos_emb`` does, ``x*cos + rotate_half(x)*sin`` with
``rotate_half(x) = cat(-x2, x1)`` over the two halves; the rest pass through. The
angles are ``position * base^(-2i/dim)``, ``i < dim/2``. Output: the input's shape.

Counts: no parameters, no MACs. Buffers: ``dim/2``, the frequencies ``inv_freq``, which
Hugging Face's ``LlamaRotaryEmbedding`` registers as a (non-persistent) buffer: in
``module.buffers()``, not in the state_dict. (Hugging Face holds one such module per
model; a spec holds one per RotaryEmbedding layer.) Element-wise FLOPs, with ``R =
numel(input) / D`` rotated rows: ``R * 7*dim/2`` (2 multiplies and 1 add per rotated
feature, the negation of half of them) plus the table made in each forward,
``L*dim/2`` angles and the cosine and sine of the ``L x dim`` duplicated table
(``L*dim/2 + 2*L*dim``). Backward keeps the cosine and sine tables (``L x dim`` each).

Receptive field: positions are not mixed (each is rotated by its own angle); features
of the last dim are paired, so the field is GLOBAL where the last dim is spatial.
"""

from __future__ import annotations

from math import prod
from typing import Any

from ..args import Arg, Float, PosInt
from .base import Grads, MacFree, Parameterless, Saved, Shape, register, saved_extra
from .select import mixed


@register
class RotaryEmbedding(Parameterless, MacFree):
    """Rotary position embedding (RoPE) of (N, *, L, D): the first ``dim`` features of
    each position rotated by its angles."""

    PRIMARY = "dim"
    dim = Arg(PosInt, None, doc="rotated features, even (default: all of the last dim)")
    base = Arg(Float(0.0), 10000.0, doc="the frequencies' base (Llama 3: 500000)")

    def shape(self, x: Shape) -> Shape:
        if len(x) < 3:
            raise self.fail(f"RotaryEmbedding needs (N, *, L, D), got {list(x)}")
        if self.dim is None:
            self.dim = x[-1]
        if self.dim % 2 or self.dim > x[-1]:
            raise self.fail(f"dim={self.dim} must be even and at most the last dim {x[-1]}",
                            "dim")
        return x

    def buffers(self) -> int:
        return self.dim // 2

    def _table(self) -> int:
        return self.x[-2] * self.dim

    def elementwise_flops(self) -> int:
        rows = prod(self.x) // self.x[-1]
        return rows * (7 * self.dim // 2) + self._table() // 2 + 2 * self._table()

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``x*cos`` and ``rotate_half(x)*sin`` keep the tables (the constant factors)."""
        return [saved_extra(self._table()), saved_extra(self._table())]

    def receptive_field(self, fields):
        return mixed(fields[0], self.x, {len(self.x) - 1})  # pairs features of the last dim

    def torch_module(self) -> Any:
        from ..torch.modules import RotaryEmbedding as TorchRotary

        return TorchRotary(self.dim, self.base)
