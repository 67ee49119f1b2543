"""Taking parts of a tensor: Chunk, Split, Slice, Select, Gather, IndexSelect, Roll,
Expand.

Arguments and semantics are torch's (``torch.chunk``, ``torch.split``, ``x[..., a:b:s]``,
``x.select``, ``torch.gather``, ``torch.index_select``, ``torch.roll``,
``Tensor.expand``); dims count the batch as dim 0. Chunk, Split, Slice, Select and
Roll refuse the batch dim (samples stay independent); their default dim is 1, the
channels, as Concat's (torch's is 0).

Several outputs: Chunk and Split have one output per piece, picked with ``name:0``,
``name:1``, ...; ``name`` alone is piece 0. torch.chunk returns fewer pieces than asked
when ``ceil(size / chunks)`` pieces already cover the dim (6 rows in 4 chunks are 3
chunks of 2): netcalc refuses that case rather than change the count of outputs.

Counts: none of these has parameters, MACs or FLOPs (they copy or view values).
Chunk, Split, Slice, Select and Expand return views of their input. The backward
needs only sizes, except Gather (it keeps its input and the index) and IndexSelect
(the index).

Receptive field. Slice along a spatial dim is a strided window of one unit, exact:
``jump' = jump*step``, ``start' = start + first*jump``; so are the pieces of Chunk and
Split (each output has its own ``start``; the table shows piece 0). Select along a
spatial dim drops it: the field holds one extent per input spatial dim, so that dim
becomes global (a stated over-estimate). Roll along an axis holding one spatial dim
is a translation in the interior (unit p reads unit p - shift, ``start' = start -
shift*jump``); as padding, the wrap-around at the borders is not part of a field;
along an axis of merged or split dims it makes them global. The others stay exact.
Along other dims the field is kept (its axes renumbered when a dim before them
disappears, as in channel-last layouts). Slicing an axis that holds merged spatial dims
(a flattened map) cuts them: global. Expand of a size-1 spatial dim gives every unit
the same region (jump 0). Gather has no spatial relation to its input
(None); IndexSelect along a spatial dim is GLOBAL (data-dependent positions).
"""

from __future__ import annotations

from math import ceil
from typing import Any

from ..args import AnyInt, Arg, IntList, OneOf, PosInt
from dataclasses import replace

from ..rf import RF, RFDim, exact, half
from ..rfperiod import strided, translated, within
from .base import FLOAT, INT, DataMovement, Grads, Saved, Shape, register, saved_input

SizeOrSections = OneOf((PosInt, IntList(1)))


def drop_axes(rf: RF | None, rank: int, dropped: set[int]) -> RF | None:
    """The field after the (non-negative) axes ``dropped`` of a rank-``rank`` tensor
    disappear: the dims they held become global, the others are renumbered."""
    if rf is None or rf.global_:
        return rf
    rf = rf.with_whole(rf.dims_at(dropped, rank), rank)
    if rf.global_:
        return rf
    return rf.moved({a: None if a in dropped else a - sum(d < a for d in dropped)
                     for a in range(rank)}, rank, rank - len(dropped))


def sliced(rf: RF | None, rank: int, axis: int, first: int, step: int = 1) -> RF | None:
    """The field of ``x[..., first::step, ...]`` along ``axis``: a window of one unit
    where the axis holds one dim alone; merged dims there are cut: global."""
    if rf is None or rf.global_:
        return rf
    i = rf.index_of(axis, rank)
    if i is None:
        return rf.with_whole(rf.dims_at({axis}, rank), rank)
    d = rf.dims[i]
    dims = list(rf.dims)
    dims[i] = strided(d, first, step) if d.ends is not None else \
        RFDim(d.size, exact(d.stride * step), exact(d.start + first * d.stride))
    return replace(rf, dims=tuple(dims))


def mixed(rf: RF | None, shape: "tuple[int, ...]", axes: set[int]) -> RF | None:
    """The field after positions along ``axes`` (non-negative) mix: a dim held there
    becomes global, except one split into windows (:mod:`netcalc.rf`) of which ``axes``
    hold only the lowest digit (the offset inside the window, radix w, smaller than the
    dim): each unit then sees its whole window (:func:`netcalc.rfperiod.within`) and
    keeps its place. The other dims are kept."""
    if rf is None or rf.global_:
        return rf
    rank = len(shape)
    hit = rf.dims_at(axes, rank)
    if not hit:
        return rf
    digits = rf.digits(shape)
    dims = list(rf.dims)
    whole = []
    for i in hit:
        low, *high = digits[i]
        if high and low[0] in axes and not any(h[0] in axes for h in high):
            dims[i] = within(dims[i], low[2])
        else:
            whole.append(i)
    return replace(rf, dims=tuple(dims)).with_whole(
        [i for i, d in enumerate(dims) if d.whole or i in whole], rank)


def rolled(rf: RF | None, rank: int, axes: "tuple[int, ...]", shifts: "tuple[int, ...]"
           ) -> RF | None:
    """``torch.roll``: along an axis holding one dim alone, a translation in the
    interior (:func:`netcalc.rfperiod.translated`: unit p reads unit p - shift; the
    wrap-around at the borders is ignored as padding is); dims merged or split in a
    rolled axis become global."""
    if rf is None or rf.global_:
        return rf
    dims = list(rf.dims)
    whole = []
    for a, s in zip(axes, shifts):
        i = rf.index_of(a, rank)
        if i is None:
            whole += rf.dims_at({a}, rank)
        elif s:
            d = dims[i]
            dims[i] = translated(d, s) if d.ends is not None else \
                RFDim(d.size, d.stride, exact(d.start - s * d.stride))
    return replace(rf, dims=tuple(dims)).with_whole(whole, rank)


class _Part(DataMovement):
    """Views of parts of one input, float or int64, along ``dim`` (not the batch)."""

    ACCEPTS = (FLOAT, INT)
    VIEW = True

    def axis(self) -> int:
        return self.dim_index(self.dim, len(self.x), batch=False)


class _Pieces(_Part):
    """Chunk and Split: consecutive pieces along ``dim``, one output each."""

    def shape(self, x: Shape) -> list[Shape]:
        d = self.axis()
        sizes = self.piece_sizes(x[d])
        return [(*x[:d], n, *x[d + 1:]) for n in sizes]

    def output_fields(self, fields):
        rank, d = len(self.x), self.axis()
        starts = [0]
        for t in self.outputs[:-1]:
            starts.append(starts[-1] + t.shape[d])
        return [sliced(fields[0], rank, d, s) for s in starts]

    def receptive_field(self, fields):
        return self.output_fields(fields)[0]


@register
class Chunk(_Pieces):
    """torch.chunk: ``chunks`` pieces of ceil(size / chunks) along ``dim`` (the last smaller)."""

    PRIMARY = "chunks"
    chunks = Arg(PosInt, doc="number of pieces (outputs name:0, name:1, ...)")
    dim = Arg(AnyInt, 1, doc="dim to split (not the batch)")

    def output_names(self) -> tuple[str, ...]:
        return tuple(str(k) for k in range(self.chunks))

    def piece_sizes(self, n: int) -> list[int]:
        each = ceil(n / self.chunks)
        if ceil(n / each) != self.chunks:
            raise self.fail(f"torch.chunk of a dim of size {n} into {self.chunks} returns "
                            f"{ceil(n / each)} pieces of {each}, not {self.chunks} (use Split)",
                            "chunks")
        return [min(each, n - k * each) for k in range(self.chunks)]

    def torch_module(self) -> Any:
        from ..torch.modules import Chunk as TorchChunk

        return TorchChunk(self.chunks, self.dim)


@register
class Split(_Pieces):
    """torch.split: pieces of ``split_size_or_sections`` (an int: that size, the last
    smaller; a list: those sizes, summing to the dim) along ``dim``."""

    PRIMARY = "split_size_or_sections"
    split_size_or_sections = Arg(SizeOrSections, doc="piece size, or the list of sizes")
    dim = Arg(AnyInt, 1, doc="dim to split (not the batch)")

    def output_names(self) -> tuple[str, ...] | None:
        s = self.split_size_or_sections
        return None if isinstance(s, int) else tuple(str(k) for k in range(len(s)))

    def piece_sizes(self, n: int) -> list[int]:
        s = self.split_size_or_sections
        if isinstance(s, int):
            return [min(s, n - k) for k in range(0, n, s)]
        if sum(s) != n:
            raise self.fail(f"sections {list(s)} sum to {sum(s)} but the dim has size {n}",
                            "split_size_or_sections")
        return list(s)

    def torch_module(self) -> Any:
        from ..torch.modules import Split as TorchSplit

        s = self.split_size_or_sections
        return TorchSplit(s if isinstance(s, int) else list(s), self.dim)


@register
class Slice(_Part):
    """``x[..., start:end:step, ...]`` along ``dim`` (Python's clamping; negative start/end
    count from the end; step >= 1)."""

    dim = Arg(AnyInt, doc="dim to slice (not the batch)")
    start = Arg(AnyInt, 0, doc="first index (negative: from the end)")
    end = Arg(AnyInt, None, doc="stop index, exclusive (default: the end)")
    step = Arg(PosInt, 1)

    def bounds(self) -> range:
        return range(self.x[self.axis()])[self.start:self.end:self.step]

    def shape(self, x: Shape) -> Shape:
        d = self.axis()
        n = len(self.bounds())
        if n == 0:
            raise self.fail(f"slice {self.start}:{self.end} of dim {d} (size {x[d]}) is empty")
        return (*x[:d], n, *x[d + 1:])

    def receptive_field(self, fields):
        r = self.bounds()
        return sliced(fields[0], len(self.x), self.axis(), r.start, r.step)

    def torch_module(self) -> Any:
        from ..torch.modules import Slice as TorchSlice

        return TorchSlice(self.axis(), self.start, self.end, self.step)


@register
class Select(_Part):
    """``x.select(dim, index)``: index ``index`` of ``dim``, which disappears (``x[:, 0]``)."""

    dim = Arg(AnyInt, doc="dim to index (not the batch); it is removed")
    index = Arg(AnyInt, doc="position along dim (negative: from the end)")

    def shape(self, x: Shape) -> Shape:
        d = self.axis()
        if not -x[d] <= self.index < x[d]:
            raise self.fail(f"index {self.index} is out of range for dim {d} of size {x[d]}",
                            "index")
        return (*x[:d], *x[d + 1:])

    def view_dropped_dim(self) -> int | None:
        return self.axis()

    def receptive_field(self, fields):
        return drop_axes(fields[0], len(self.x), {self.axis()})

    def torch_module(self) -> Any:
        from ..torch.modules import Select as TorchSelect

        return TorchSelect(self.axis(), self.index)


class _Indexed(DataMovement):
    """Gather and IndexSelect: a float or int64 table and an int64 index (input 1)."""

    PRIMARY = "dim"
    ARITY = (2, 2)
    ACCEPTS = (FLOAT, INT)
    dim = Arg(AnyInt, doc="dim of the table the index picks along")

    def index_bound(self, i: int) -> int | None:
        return self.x[self.dim_index(self.dim, len(self.x))] if i == 1 else None

    def check_index(self, index: Shape) -> None:
        if self.inputs[1].dtype != INT:
            raise self.fail(f"{type(self).__name__}'s second input is the index: it must be "
                            f"int64 (a Buffer or an int64 input), got a float {list(index)}")

    def out_dtype(self) -> str:
        return self.inputs[0].dtype


@register
class Gather(_Indexed):
    """torch.gather(x, dim, index): out[i][j][k] = x[index[i][j][k]][j][k] (dim 0); the
    output has the index's shape."""

    def shape(self, x: Shape, index: Shape) -> Shape:
        self.check_index(index)
        d = self.dim_index(self.dim, len(x))
        if len(index) != len(x) or any(i > n for k, (i, n) in enumerate(zip(index, x))
                                       if k != d):
            raise self.fail(f"the index {list(index)} must have the rank of the input "
                            f"{list(x)} and no larger size except along dim {d}")
        return index

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``gather_backward(grad, self, dim, index)`` keeps the input and the index."""
        return [saved_input(0), saved_input(1)]

    def receptive_field(self, fields):
        return None  # data-dependent positions: no spatial relation

    def torch_module(self) -> Any:
        from ..torch.modules import Gather as TorchGather

        return TorchGather(self.dim)


@register
class IndexSelect(_Indexed):
    """torch.index_select(table, dim, index): the rows of ``table`` along ``dim`` that the
    1-d index lists (Swin's relative position bias looked up by its index buffer)."""

    def shape(self, x: Shape, index: Shape) -> Shape:
        self.check_index(index)
        d = self.dim_index(self.dim, len(x))
        if len(index) != 1:
            raise self.fail(f"the index must be 1-d (reshape it first), got {list(index)}")
        return (*x[:d], index[0], *x[d + 1:])

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """``index_select_backward(grad, self.sizes(), dim, index)``: the index only."""
        return [saved_input(1)]

    def receptive_field(self, fields):
        return mixed(fields[0], self.x, {self.dim_index(self.dim, len(self.x))})

    def torch_module(self) -> Any:
        from ..torch.modules import IndexSelect as TorchIndexSelect

        return TorchIndexSelect(self.dim)


@register
class Roll(DataMovement):
    """torch.roll(x, shifts, dims): elements shifted along each dim, wrapping around
    (Swin's shifted windows)."""

    ACCEPTS = (FLOAT, INT)
    shifts = Arg(IntList(), doc="shift per dim (an int for one dim)")
    dims = Arg(IntList(), doc="dims to roll (not the batch), one per shift")

    def validate(self) -> None:
        if len(self.shifts) != len(self.dims):
            raise self.fail(f"shifts {list(self.shifts)} and dims {list(self.dims)} differ "
                            "in length", "dims")

    def axes(self) -> set[int]:
        return {self.dim_index(d, len(self.x), "dims", batch=False) for d in self.dims}

    def shape(self, x: Shape) -> Shape:
        self.axes()
        return x

    def receptive_field(self, fields):
        rank = len(self.x)
        return rolled(fields[0], rank, tuple(self.dim_index(d, rank, "dims", batch=False)
                                             for d in self.dims), tuple(self.shifts))

    def torch_module(self) -> Any:
        from ..torch.modules import Roll as TorchRoll

        return TorchRoll(self.shifts, self.dims)


@register
class Expand(DataMovement):
    """Tensor.expand: size-1 dims repeated as views. ``size`` is per sample (the batch is
    dim 0 of the output: the input's, or with ``from: [x, ref]`` the batch of ``ref``,
    as ViT's ``class_token.expand(x.shape[0], -1, -1)``); -1 keeps a dim."""

    PRIMARY = "size"
    ARITY = (1, 2)
    ACCEPTS = (FLOAT, INT)
    VIEW = True
    size = Arg(IntList(-1), doc="target size of dims 1.. (-1 keeps the input's)")

    def shape(self, x: Shape, ref: Shape | None = None) -> Shape:
        if len(self.size) != len(x) - 1:
            raise self.fail(f"size {list(self.size)} gives {len(self.size)} dims after the "
                            f"batch, the input {list(x)} has {len(x) - 1}", "size")
        batch = (ref or x)[0]
        out = (batch, *(n if s == -1 else s for s, n in zip(self.size, x[1:])))
        for i, (n, m) in enumerate(zip(x, out)):
            if n not in (1, m):
                raise self.fail(f"cannot expand dim {i} of {list(x)} from {n} to {m} "
                                "(only size-1 dims expand)", "size")
        return out

    def receptive_field(self, fields):
        rf = fields[0]
        if rf is None or rf.global_:
            return rf
        dims = list(rf.dims)
        for i, a in enumerate(rf.spatial_axes(len(self.x))):
            if a is not None and self.x[a] != self.y[a]:  # every unit sees one unit's region
                d = dims[i]  # one unit: its region
                dims[i] = RFDim(exact(d.hi - d.lo + 1), 0, exact(half(d.lo + d.hi)))
        return replace(rf, dims=tuple(dims))

    def torch_module(self) -> Any:
        from ..torch.modules import Expand as TorchExpand

        return TorchExpand(self.size)


__all__ = ["drop_axes", "mixed", "sliced"]
