"""Layers that move data without computing: Identity, Flatten, Unflatten, Reshape,
Permute, and the Dropout family (the identity at inference).

None has parameters, MACs or FLOPs. Identity, Flatten, Unflatten, Reshape and
Permute accept float and int64 tensors (they only move data); the Dropout family
needs floats, as torch does.

Batch: every shape here keeps the batch at dim 0. Reshape's ``shape`` argument is the
target shape PER SAMPLE (the batch is kept, as ``x.reshape(x.shape[0], *shape)``); Flatten
and Unflatten refuse to touch dim 0, so the batch a spec is analysed with stays dim 0.
A tensor with no batch dim (made from parameters and buffers only: Swin's and MaxViT's
relative position tables) is reshaped whole with ``Reshape: {shape: [49, 49, -1],
batch: false}`` (``x.reshape(*shape)``).

Receptive field: a field's dims are the spatial dims of the tensor (the trailing
ones, or where a Permute or a reshape moved them: :mod:`netcalc.rf`). A Permute moves
no position: the field follows the spatial dims to their new axes (channel-last
``(N, H, W, C)``, as ConvNeXt and Swin compute). A reshape (Flatten, Unflatten,
Reshape) moves no position either: the field follows each spatial dim's coordinate,
which may share an axis with others (``flatten(2)`` merges H and W into one token
axis) and comes back whole when a later reshape cuts them apart again
(:func:`netcalc.rf.reshaped`). A reshape that splits one spatial dim over several
axes (Swin's 56 rows into 8 windows x 7) keeps it as digits, one per axis (the window
index counts 7 rows, the row in the window 1), and a reshape that puts them back in
order joins them.
"""

from __future__ import annotations

from math import prod
from typing import Any

from ..args import AnyInt, Arg, Bool, IntList, Probability
from ..rf import reshaped
from .base import ACT, FLOAT, INT, DataMovement, Grads, Layer, Saved, Shape, register, saved_extra


class _Move(DataMovement):
    """No parameters, no arithmetic: views of their input (a reshape of a permuted,
    non-contiguous tensor copies it; netcalc.training tracks that)."""

    ACCEPTS = (FLOAT, INT)
    VIEW = True

    def axis(self, dim: int, rank: int, arg: str) -> int:
        d = dim + rank if dim < 0 else dim
        if not 0 <= d < rank:
            raise self.fail(f"{arg}={dim} is out of range for a {rank}-d input", arg)
        return d

    def receptive_field(self, fields):
        return reshaped(fields[0], self.x, self.y)


@register
class Identity(_Move):
    """Passes its input through unchanged (torch.nn.Identity)."""

    def shape(self, x: Shape) -> Shape:
        return x

    def torch_module(self) -> Any:
        import torch.nn as nn

        return nn.Identity()


@register
class Flatten(_Move):
    """Merges dims start_dim..end_dim into one (default: everything but the batch)."""

    start_dim = Arg(AnyInt, 1)
    end_dim = Arg(AnyInt, -1)

    def shape(self, x: Shape) -> Shape:
        s = self.axis(self.start_dim, len(x), "start_dim")
        e = self.axis(self.end_dim, len(x), "end_dim")
        if s == 0:
            raise self.fail("Flatten would merge the batch dim (start_dim must be >= 1)",
                            "start_dim")
        if s > e:
            raise self.fail(f"start_dim={self.start_dim} comes after end_dim={self.end_dim} "
                            f"for a {len(x)}-d input", "start_dim")
        return (*x[:s], prod(x[s:e + 1]), *x[e + 1:])

    def torch_module(self) -> Any:
        import torch.nn as nn

        return nn.Flatten(self.start_dim, self.end_dim)


@register
class Unflatten(_Move):
    """Splits dim ``dim`` into ``unflattened_size`` (one -1 is inferred)."""

    dim = Arg(AnyInt, doc="the dim to split (not the batch, dim 0)")
    unflattened_size = Arg(IntList(-1), doc="new sizes; their product is the old size")

    def validate(self) -> None:
        _check_sizes(self, self.unflattened_size, "unflattened_size")

    def shape(self, x: Shape) -> Shape:
        d = self.axis(self.dim, len(x), "dim")
        if d == 0:
            raise self.fail("Unflatten would split the batch dim (dim must not be 0)", "dim")
        sizes = _fill(self, self.unflattened_size, x[d], "unflattened_size",
                      f"dim {d} of size {x[d]} (input {list(x)})")
        return (*x[:d], *sizes, *x[d + 1:])

    def torch_module(self) -> Any:
        import torch.nn as nn

        return nn.Unflatten(self.dim, tuple(self.unflattened_size))


@register
class Reshape(_Move):
    """Reshapes each sample to ``shape`` (batch kept; one -1 is inferred).

    With ``batch: false``, a tensor without a batch dim (made from parameters and
    buffers) is reshaped to ``shape`` whole.

    Shape: ``(N, *in) -> (N, *shape)``, ``prod(shape) == prod(in)``; ``batch: false``:
    ``in -> shape``, ``prod(shape) == prod(in)`` (torch's ``x.reshape(*shape)``)."""

    PRIMARY = "shape"

    # ``shape`` in specs and torch, kept as ``target_shape``: ``shape`` is the shape rule
    target_shape = Arg(IntList(), name="shape",
                       doc="target shape per sample (the batch is kept); one -1 allowed")
    batch = Arg(Bool(), True, doc="false: the input has no batch dim (made from parameters "
                "and buffers) and ``shape`` is its whole new shape")

    def validate(self) -> None:
        _check_sizes(self, self.target_shape, "shape")

    def shape(self, x: Shape) -> Shape:
        if not self.batch:
            return _fill(self, self.target_shape, prod(x), "shape",
                         f"{list(x)} ({prod(x)} elements)")
        per_sample = prod(x[1:])
        sizes = _fill(self, self.target_shape, per_sample, "shape",
                      f"{list(x[1:])} ({per_sample} elements per sample)")
        return (x[0], *sizes)

    def torch_module(self) -> Any:
        from ..torch.modules import Reshape as TorchReshape

        return TorchReshape(self.target_shape, self.batch)


@register
class Permute(_Move):
    """Reorders the dims (``dims`` includes the batch, dim 0)."""

    PRIMARY = "dims"

    dims = Arg(IntList(), doc="a permutation of all dims, batch included")

    def view_permutation(self) -> tuple[int, ...]:
        return self.perm(len(self.x))

    def perm(self, rank: int) -> tuple[int, ...]:
        if len(self.dims) != rank:
            raise self.fail(f"dims {list(self.dims)} has {len(self.dims)} entries but the "
                            f"input has {rank} dims", "dims")
        out = tuple(self.axis(d, rank, "dims") for d in self.dims)
        if sorted(out) != list(range(rank)):
            raise self.fail(f"dims {list(self.dims)} is not a permutation of the "
                            f"{rank} dims of the input", "dims")
        return out

    def shape(self, x: Shape) -> Shape:
        return tuple(x[d] for d in self.perm(len(x)))

    def receptive_field(self, fields):
        rf = fields[0]
        if rf is None or rf.global_ or not rf.dims:
            return rf
        rank = len(self.x)
        perm = self.perm(rank)  # output axis j is input axis perm[j]
        return rf.moved({a: j for j, a in enumerate(perm)}, rank, rank)

    def torch_module(self) -> Any:
        from ..torch.modules import Permute as TorchPermute

        return TorchPermute(self.perm(len(self.x)) if self.inputs else self.dims)


def _check_sizes(layer: Layer, sizes: tuple[int, ...], arg: str) -> None:
    if any(s == 0 or s < -1 for s in sizes) or list(sizes).count(-1) > 1:
        raise layer.fail(f"{arg} {list(sizes)}: sizes must be >= 1, with at most one -1", arg)


def _fill(layer: Layer, sizes: tuple[int, ...], total: int, arg: str, what: str) -> tuple[int, ...]:
    """Replace a -1 in ``sizes`` so that their product is ``total``, or fail."""
    known = prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if total % known:
            raise layer.fail(f"cannot reshape {what} into {list(sizes)}: {total} is not "
                             f"divisible by {known}", arg)
        return tuple(total // known if s == -1 else s for s in sizes)
    if known != total:
        raise layer.fail(f"cannot reshape {what} into {list(sizes)} ({known} elements)", arg)
    return tuple(sizes)


# ---------------------------------------------------------------------- dropout
class _Dropout(DataMovement):
    """Dropout: the identity at inference; p and inplace do not change the counts."""

    PRIMARY = "p"
    #: required input rank, or None for any
    RANK: int | None = None
    LAYOUT = ""
    FEATURE = False  # drops whole channels (dim 1)
    ALPHA = False  # keeps mean and variance (SELU networks)

    p = Arg(Probability, 0.5, doc="drop probability (training only)")
    inplace = Arg(Bool(), False, doc="accepted for torch compatibility; no effect on counts")

    def shape(self, x: Shape) -> Shape:
        if self.RANK is not None and len(x) != self.RANK:
            raise self.fail(f"{type(self).__name__} needs a {self.LAYOUT} input, got {list(x)}")
        return x

    def receptive_field(self, fields):
        return fields[0]

    def torch_module(self) -> Any:
        return self.torch_namesake()

    def mask_numel(self) -> int:
        """Elements of the mask backward multiplies by: one per element, or per channel
        for the feature (channel) dropouts."""
        return prod(self.x[:2]) if self.FEATURE else prod(self.x)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """In training the output is ``input * mask``: ``mul`` keeps the mask. CUDA's
        ``native_dropout`` keeps a bool mask; the CPU (and every feature or alpha
        dropout) builds a mask in the input's dtype. ``p = 0`` returns the input."""
        if self.p == 0:
            return []
        native = device == "cuda" and not self.FEATURE and not self.ALPHA
        return [saved_extra(self.mask_numel(), "bool" if native else ACT)]


@register
class Dropout(_Dropout):
    """Zeroes elements with probability p in training; identity at inference."""


@register
class Dropout1d(_Dropout):
    """Zeroes whole channels of (N, C, L) in training; identity at inference."""

    FEATURE = True
    RANK = 3
    LAYOUT = "3-d (N, C, L)"


@register
class Dropout2d(_Dropout):
    """Zeroes whole channels of (N, C, H, W) in training; identity at inference."""

    FEATURE = True
    RANK = 4
    LAYOUT = "4-d (N, C, H, W)"


@register
class Dropout3d(_Dropout):
    """Zeroes whole channels of (N, C, D, H, W) in training; identity at inference."""

    FEATURE = True
    RANK = 5
    LAYOUT = "5-d (N, C, D, H, W)"


@register
class AlphaDropout(_Dropout):
    """Dropout keeping zero mean and unit variance (for SELU); identity at inference."""

    ALPHA = True


@register
class FeatureAlphaDropout(_Dropout):
    """AlphaDropout of whole channels (dim 1); identity at inference."""

    ALPHA = True
    FEATURE = True
