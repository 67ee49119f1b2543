"""Embeddings: Embedding and EmbeddingBag (torch.nn.Embedding, torch.nn.EmbeddingBag).

Inputs are integer token ids, declared in the spec with a dtype::

    inputs: {tokens: {shape: [1024], dtype: int64}}

A float input (or a token input declared without ``dtype``, which is float) is an
error that says so. The output is float.

Shape: ``Embedding`` maps ``(N, *)`` ids to ``(N, *, embedding_dim)``;
``EmbeddingBag`` reduces each bag (the ids of one row of a 2-d input ``(N, B)``) to
one vector ``(N, embedding_dim)``.

Params: ``num_embeddings * embedding_dim`` (the weight; ``tie:`` shares it with an
output head of shape ``(num_embeddings, embedding_dim)``).

MACs: 0. A lookup is a gather, not a product. ``max_norm`` renormalises the rows it
looks up in place; that is not counted. EmbeddingBag's reduction is element-wise:
``mode: sum`` is ``N*(B-1)*E`` adds, ``mean`` adds ``N*E`` divides to that, ``max``
is ``N*(B-1)*E`` comparisons.
"""

from __future__ import annotations

from typing import Any

from ..args import AnyInt, Arg, Bool, Choice, Float, PosInt
from .base import (FLOAT, INT, Grads, MacFree, Saved, Shape, TensorInfo, register, saved_extra,
                   saved_input)

TOKENS_HINT = "declare token ids with a dtype: `inputs: {tokens: {shape: [L], dtype: int64}}`"


class _EmbeddingBase(MacFree):
    PRIMARY = None
    ACCEPTS = (INT,)
    EMBEDDING = True
    PARAMS_FORMULA = "num_embeddings * embedding_dim"

    num_embeddings = Arg(PosInt, doc="size of the vocabulary (rows of the weight)")
    embedding_dim = Arg(PosInt, doc="size of each embedding vector")
    padding_idx = Arg(AnyInt, None, doc="row whose gradient is zero (torch's padding_idx)")
    max_norm = Arg(Float(0.0), None, doc="renormalise looked-up rows to this norm")
    norm_type = Arg(Float(0.0), 2.0, doc="p of the p-norm for max_norm")
    scale_grad_by_freq = Arg(Bool(), False)
    sparse = Arg(Bool(), False, doc="sparse gradients")

    def validate(self) -> None:
        p = self.padding_idx
        if p is not None and not -self.num_embeddings <= p < self.num_embeddings:
            raise self.fail(f"padding_idx={p} must be within num_embeddings="
                            f"{self.num_embeddings} (-{self.num_embeddings} to "
                            f"{self.num_embeddings - 1})", "padding_idx")

    def index_bound(self, i: int) -> int:
        return self.num_embeddings

    def dtype_message(self, t: TensorInfo) -> str:
        return (f"{type(self).__name__} needs integer token ids, got a {t.dtype} input "
                f"{list(t.shape)}; {TOKENS_HINT}")

    def out_dtype(self) -> str:
        return FLOAT

    def weight_shape(self) -> Shape:
        return (self.num_embeddings, self.embedding_dim)

    def params(self) -> int:
        return self.num_embeddings * self.embedding_dim

    def receptive_field(self, fields):
        return None  # token ids have no spatial receptive field

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``embedding_backward`` scatters the output gradient by the ids: it keeps them."""
        return [saved_input()]

    def torch_module(self) -> Any:
        return self.torch_namesake()


@register
class Embedding(_EmbeddingBase):
    """Lookup table: integer ids (N, *) -> vectors (N, *, embedding_dim)."""

    MACS_FORMULA = "0 (a lookup)"

    def shape(self, x: Shape) -> Shape:
        return (*x, self.embedding_dim)

    def elementwise_flops(self) -> int:
        return 0


@register
class EmbeddingBag(_EmbeddingBase):
    """Bags of ids (N, B) -> the sum, mean or max of their embeddings (N, embedding_dim)."""

    MACS_FORMULA = "0 (a lookup; the bag reduction is element-wise)"

    mode = Arg(Choice(("mean", "sum", "max")), "mean", doc="how a bag is reduced")
    include_last_offset = Arg(Bool(), False)

    def validate(self) -> None:
        super().validate()
        if self.include_last_offset:
            raise self.fail("include_last_offset needs an offsets tensor; netcalc feeds bags "
                            "as a 2-d (N, B) input, one bag per row", "include_last_offset")

    def shape(self, x: Shape) -> Shape:
        if len(x) != 2:
            raise self.fail(f"EmbeddingBag needs a 2-d input (N, bag_size) of ids, one bag per "
                            f"row, got {list(x)}")
        return (x[0], self.embedding_dim)

    def elementwise_flops(self) -> int:
        n, b = self.x
        e = self.embedding_dim
        flops = n * (b - 1) * e
        if self.mode == "mean":
            flops += n * e
        return flops

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``_embedding_bag`` keeps the ids, the offsets torch makes for a 2-d input (one
        per bag), ``offset2bag`` (CPU: empty in sum mode, else one per id plus one),
        ``bag_size`` (one per bag) and ``max_indices`` (one per bag, or per bag and
        feature in max mode), all int64 (derivatives.yaml ``_embedding_bag``; measured
        on CPU). CUDA's kernel fills ``offset2bag`` in every mode (from the kernel, not
        measured here)."""
        n, b = self.x
        offset2bag = 0 if device == "cpu" and self.mode == "sum" else n * b + 1
        max_indices = n * self.embedding_dim if self.mode == "max" else n
        return [saved_input(), saved_extra(n, INT), saved_extra(offset2bag, INT),
                saved_extra(n, INT), saved_extra(max_indices, INT)]
