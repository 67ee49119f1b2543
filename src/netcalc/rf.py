"""Receptive fields in exact rational arithmetic (Araujo, Norris & Sim, Distill 2019).

For each spatial dimension of a node we keep three numbers, in input pixels:

* ``size``  - extent of the input region one output unit sees;
* ``stride`` - the jump: distance in the input between two neighbouring output units;
* ``start`` - the centre of the first output unit's region (0 = centre of input pixel 0).

Transposed convolutions and upsampling divide the jump, so all three are Fractions.
A node whose units see every position (Linear over a flattened map, global pooling,
attention) has ``global_ = True``. A node with no spatial relation to the input (a
token sequence, a latent vector) has no receptive field at all (``None``).

Where the spatial dims sit: ``dims[i]`` is the field along the input's i-th spatial
dim, held by default in the trailing dims of the tensor, in order (``(N, C, H, W)``).
Layers that only move data can move them, and the field follows (:func:`reshaped`):

* a permutation (channel-last ``(N, H, W, C)`` as ConvNeXt and Swin compute):
  ``axes[i]`` is the tensor axis holding ``dims[i]``, counted from the end (-1 = the
  last); ``axes`` None means the trailing layout;
* a reshape that merges spatial dims into one axis, alone or with channels
  (``flatten(2)`` of ``(N, C, H, W)`` into ``(N, C, H*W)``: ViT's patch tokens):
  ``packing[i] = (q, n)`` says that along its axis dim i's coordinate is
  ``value // q % n`` (H is ``(W, H)``, W ``(1, W)``); a reshape that cuts them apart
  again restores them;
* a reshape that splits one spatial dim over several axes (Swin's windows: 56 rows into
  8 windows x 7 rows): the dim's coordinate is a mixed-radix number of digits, the
  lowest (weight 1) held by ``axes``/``packing`` as above and the higher ones in
  ``outer[i]``, each ``(axis, q, n, w)``: the digit ``value // q % n`` along ``axis``
  (from the end) counts ``w`` units. Permutes move the digits, reshapes regroup them
  (Swin's windows dim holds the row's and the column's window index, its token dim the
  offsets inside the window) and a reshape that puts them back in order rejoins them.

Mixing along an axis that holds only the lowest digit of a split dim (attention,
softmax or a matrix product over Swin's token axis) does not make the dim global: each
unit then sees its whole window, an uneven field (:mod:`netcalc.rfperiod`: the region
ends are periodic-affine step functions, ``RFDim.ends``).

"Global" is per dim: ``dims[i].whole`` says a unit may see every position along dim i
(after a reduction, a Linear, a Select or a Softmax along the axis holding it; a Roll
along an axis holding one dim alone is a translation, along merged or split dims it
makes them whole; mixing a dim's window index, or a window as large as the dim, too);
the other dims stay exact. A whole dim has no axis. When every dim is whole the field
is ``GLOBAL``. Layers that act on fixed trailing axes (windows, padding, resampling)
see a moved or merged layout as mixing: GLOBAL.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


Exact = "int | Fraction"  # ints while whole: Fraction arithmetic is ~20x slower


def exact(x: "int | Fraction") -> "int | Fraction":
    """Normalise to an int when whole."""
    return x.numerator if x.denominator == 1 else x


def half(x: "int | Fraction") -> "int | Fraction":
    return x // 2 if isinstance(x, int) and x % 2 == 0 else Fraction(x) / 2


def ratio(a: "int | Fraction", b: "int | Fraction") -> "int | Fraction":
    """a / b exactly, an int when it divides."""
    if isinstance(a, int) and isinstance(b, int) and a % b == 0:
        return a // b
    return exact(Fraction(a) / b)


@dataclass(frozen=True)
class RFDim:
    """The field along one spatial dim: size, jump (stride) and centre, in input pixels."""

    size: "int | Fraction | None"
    stride: "int | Fraction | None"
    start: "int | Fraction | None"
    whole: bool = False  # a unit may see every position along this dim (the rest None)
    # uneven fields only: (lo, hi) of units 0..P-1 (netcalc.rfperiod); size is then the
    # largest extent over the period and start the centre of unit 0's region
    ends: "tuple[tuple[int | Fraction, int | Fraction], ...] | None" = None

    @property
    def period(self) -> int:
        """Units after which the regions repeat, shifted by period * stride (1: even)."""
        return 1 if self.ends is None else len(self.ends)

    @property
    def lo(self) -> "int | Fraction":
        """Lowest input position unit 0 sees."""
        if self.ends is not None:
            return self.ends[0][0]
        return exact(self.start - half(self.size - 1))

    @property
    def hi(self) -> "int | Fraction":
        if self.ends is not None:
            return self.ends[0][1]
        return exact(self.start + half(self.size - 1))


#: a dim along which a unit may see every position
WHOLE = RFDim(None, None, None, whole=True)

Packing = "tuple[tuple[int, int] | None, ...] | None"
#: per dim, the higher digits (axis from the end, q, n, weight) of a split dim, or None
Outer = "tuple[tuple[tuple[int, int, int, int], ...] | None, ...] | None"


@dataclass(frozen=True)
class RF:
    """The field of a tensor: one RFDim per spatial dim, and where those dims sit."""

    dims: tuple[RFDim, ...] = ()
    global_: bool = False
    aligned: bool = True  # False where merged paths disagree in stride or offset
    # tensor axis of each dim, from the end (None for a whole dim); None: trailing
    axes: "tuple[int | None, ...] | None" = None
    # per dim (q, n) where it shares its axis (None: alone in it); None: every dim alone
    packing: Packing = None
    # per dim, the higher digits of a dim split over several axes (None: not split)
    outer: Outer = None

    @property
    def partial(self) -> bool:
        """Some dims (not all) are global."""
        return any(d.whole for d in self.dims)

    def spatial_axes(self, rank: int) -> "tuple[int | None, ...]":
        """The (non-negative) tensor axis of each dim in a tensor of ``rank`` dims; None
        for a whole dim."""
        n = len(self.dims)
        axes = self.axes if self.axes is not None else range(-n, 0)
        return tuple(None if d.whole or a is None else rank + a
                     for d, a in zip(self.dims, axes))

    def dims_at(self, axes: "set[int]", rank: int) -> list[int]:
        """The (non-whole) dims with a digit held in any of the tensor ``axes``."""
        out = []
        for i, a in enumerate(self.spatial_axes(rank)):
            if a is not None and (a in axes or any(rank + o[0] in axes
                                                   for o in self.split(i))):
                out.append(i)
        return out

    def index_of(self, axis: int, rank: int) -> int | None:
        """The dim tensor axis ``axis`` holds alone; None for a channel, feature or batch
        axis, or one holding merged dims (:meth:`dims_at` lists those) or a digit of a
        split dim."""
        at = self.dims_at({axis}, rank)
        return at[0] if len(at) == 1 and self.pack(at[0]) is None and not self.split(at[0]) \
            else None

    def pack(self, i: int) -> "tuple[int, int] | None":
        return None if self.packing is None else self.packing[i]

    def split(self, i: int) -> "tuple[tuple[int, int, int, int], ...]":
        """The higher digits of dim i (axis from the end, q, n, weight); () if unsplit."""
        return () if self.outer is None else self.outer[i] or ()

    def packs(self, shape: "tuple[int, ...]") -> "list[tuple[int, int] | None]":
        """(q, n) of each dim (None for a whole one): its coordinate is ``value // q % n``
        along its axis in a tensor of ``shape``."""
        return [None if a is None else (self.pack(i) or (1, shape[a]))
                for i, a in enumerate(self.spatial_axes(len(shape)))]

    def digits(self, shape: "tuple[int, ...]") -> "list[list[tuple[int, int, int, int]]]":
        """Per dim, every digit (non-negative axis, q, n, weight), the lowest first: the
        dim's coordinate is ``sum(weight * (value[axis] // q % n))``; [] for a whole dim."""
        rank = len(shape)
        out: list[list[tuple[int, int, int, int]]] = []
        for i, (a, pk) in enumerate(zip(self.spatial_axes(rank), self.packs(shape))):
            if a is None or pk is None:
                out.append([])
                continue
            out.append([(a, *pk, 1)] + [(rank + o, q, n, w) for o, q, n, w in self.split(i)])
        return out

    def placed(self, axes: "tuple[int | None, ...]", rank: int,
               dims: "tuple[RFDim, ...] | None" = None, packing: Packing = None,
               shape: "tuple[int, ...] | None" = None, outer: Outer = None) -> "RF":
        """This field (or ``dims``) held at the non-negative ``axes`` of a rank-``rank``
        tensor (None: the dim is whole), with ``packing`` and ``outer`` (default: this
        one's; outer axes from the end); given the ``shape``, a dim that fills its axis
        drops its (1, n)."""
        new = list(self.dims if dims is None else dims)
        packs = list(packing if packing is not None else self.packing or [None] * len(new))
        outs = list(outer if outer is not None else self.outer or [None] * len(new))
        for i, a in enumerate(axes):
            if a is None or new[i].whole:
                new[i], packs[i], outs[i] = WHOLE, None, None
            elif shape is not None and packs[i] == (1, shape[a]):
                packs[i] = None
        if all(d.whole for d in new):
            return GLOBAL
        rel = tuple(None if d.whole else a - rank for d, a in zip(new, axes))  # type: ignore[operator]
        trailing = all(r is None or r == i - len(new) for i, r in enumerate(rel)) and \
            not any(outs)
        return RF(tuple(new), aligned=self.aligned, axes=None if trailing else rel,
                  packing=tuple(packs) if any(packs) else None,
                  outer=tuple(o or None for o in outs) if any(outs) else None)

    def moved(self, where: "dict[int, int | None]", rank: int, new_rank: int) -> "RF":
        """This field after tensor axis ``a`` (non-negative) moves to ``where[a]`` of a
        rank-``new_rank`` tensor (None: the axis is gone, its dims turn global)."""
        axes = list(self.spatial_axes(rank))
        outs: list = []
        for i, a in enumerate(axes):
            higher = [(where[rank + o], q, n, w) for o, q, n, w in self.split(i)]
            if a is not None and (where[a] is None or any(h[0] is None for h in higher)):
                axes[i] = None
            elif a is not None:
                axes[i] = where[a]
            outs.append(tuple((h - new_rank, q, n, w) for h, q, n, w in higher
                              if h is not None) or None)
        return self.placed(tuple(axes), new_rank, outer=tuple(outs))

    def with_whole(self, which: "list[int]", rank: int) -> "RF":
        """This field with dims ``which`` global (every position along them)."""
        if not which:
            return self
        return self.placed(tuple(None if i in which else a
                                 for i, a in enumerate(self.spatial_axes(rank))), rank)

    @staticmethod
    def identity(ndim: int) -> "RF":
        return RF(tuple(RFDim(1, 1, 0) for _ in range(ndim)))

    @staticmethod
    def global_field() -> "RF":
        return RF(global_=True)


GLOBAL = RF.global_field()


def merge(fields: list[RF | None]) -> RF | None:
    """Union of the fields of several paths meeting in a merge layer.

    The union spans from the lowest to the highest edge of the first unit's regions.
    Paths with different strides or centres are flagged ``aligned=False`` (their
    units do not line up), as the receptive_field library does. A path without a
    field (a learned tensor, a constant) adds no input positions: it is left out. A dim
    global on one path is global in the union; the others must sit at the same place on
    every path (else GLOBAL). Where a path's dim is uneven (windowed), the union is
    taken unit by unit (:func:`netcalc.rfperiod.union`): exact for every unit, so it
    keeps the paths' alignment.
    """
    from .rfperiod import union

    real = [f for f in fields if f is not None]
    if not real:
        return None
    if any(f.global_ for f in real):
        return GLOBAL
    if len({len(f.dims) for f in real}) != 1:
        return GLOBAL
    n = len(real[0].dims)
    lay = [(f.axes or tuple(range(-n, 0)), f.packing or (None,) * n, f.outer or (None,) * n)
           for f in real]
    aligned = all(f.aligned for f in real)
    dims: list[RFDim] = []
    for i, parts in enumerate(zip(*(f.dims for f in real))):
        if any(p.whole for p in parts):
            dims.append(WHOLE)
            continue
        if len({(a[i], p[i], o[i]) for a, p, o in lay}) != 1:
            return GLOBAL
        if any(p.ends is not None for p in parts):
            dims.append(union(list(parts)))
            continue
        lo = min(p.lo for p in parts)
        hi = max(p.hi for p in parts)
        strides = {p.stride for p in parts}
        starts = {p.start for p in parts}
        aligned = aligned and len(strides) == 1 and len(starts) == 1
        dims.append(RFDim(exact(hi - lo + 1), max(strides), exact(half(lo + hi))))
    if all(d.whole for d in dims):
        return GLOBAL
    axes = tuple(None if d.whole else lay[0][0][i] for i, d in enumerate(dims))
    packing = tuple(None if d.whole else lay[0][1][i] for i, d in enumerate(dims))
    outer = tuple(None if d.whole else lay[0][2][i] for i, d in enumerate(dims))
    trailing = all(a is None or a == i - n for i, a in enumerate(axes)) and not any(outer)
    return RF(tuple(dims), aligned=aligned, axes=None if trailing else axes,
              packing=packing if any(packing) else None, outer=outer if any(outer) else None)


def trailing(rf: RF | None) -> RF | None:
    """The field for a layer acting on fixed trailing axes: as is in the trailing layout
    (whole dims stay whole), GLOBAL when a permutation or a reshape moved, merged or split
    the spatial dims (the layer would mix a channel axis with positions)."""
    if rf is not None and (rf.axes is not None or rf.packing is not None
                           or rf.outer is not None):
        return GLOBAL
    return rf


def _strides(shape: "tuple[int, ...]") -> list[int]:
    """Row-major element strides of each axis."""
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= n
    return out[::-1]


def _regroup(s: int, n: int, w: int, after: "tuple[int, ...]", sa: "list[int]"
             ) -> "list[tuple[int, int, int, int]] | None":
    """A digit of flat stride ``s``, radix ``n`` and weight ``w`` in the row-major layout
    of ``after`` (strides ``sa``): one digit (axis, q, n, weight) per axis it overlaps,
    the lowest first; None where an axis holds a part of it that is no digit of its own
    (sizes that do not divide)."""
    out = []
    for b in range(len(after) - 1, 0, -1):  # lowest stride first; never the batch
        lo, hi = max(s, sa[b]), min(s * n, sa[b] * after[b])
        if lo >= hi or after[b] == 1:
            continue
        if lo % s or lo % sa[b] or hi % lo or (s * n) % hi or (sa[b] * after[b]) % hi:
            return None
        out.append((b, lo // sa[b], hi // lo, w * (lo // s)))
    total = 1
    for d in out:
        total *= d[2]
    return out if total == n else None


def _joined(digits: "list[tuple[int, int, int, int]]") -> "list[tuple[int, int, int, int]]":
    """Digits sorted by weight, neighbours in one axis in order joined into one."""
    out: list[tuple[int, int, int, int]] = []
    for b, q, n, w in sorted(digits, key=lambda d: d[3]):
        if out and out[-1][0] == b and out[-1][1] * out[-1][2] == q \
                and out[-1][3] * out[-1][2] == w:
            pb, pq, pn, pw = out[-1]
            out[-1] = (pb, pq, pn * n, pw)
        else:
            out.append((b, q, n, w))
    return out


def reshaped(rf: RF | None, before: "tuple[int, ...]", after: "tuple[int, ...]") -> RF | None:
    """The field after a row-major reshape from ``before`` to ``after`` (batch kept).

    Every element keeps its flat index. Each digit of dim i's coordinate (one for an
    unsplit dim) is the digit of that index with stride ``s`` (its axis's stride times
    q) and radix n. It stays exact where one axis of ``after``, of stride t and size k,
    holds that digit entirely (``t`` divides ``s`` and ``s * n`` divides ``t * k``):
    there the coordinate is ``value // (s/t) % n``. A digit spread over several axes
    whose sizes divide it (Swin's 56 rows into 8 windows of 7) becomes one digit per
    axis, weighted by its place (7 and 1); digits of one dim that a reshape puts back in
    order in one axis join again. Otherwise the reshape cut the dim apart: it becomes
    whole.
    """
    if rf is None or rf.global_ or not rf.dims:
        return rf
    sb, sa = _strides(before), _strides(after)
    axes: list[int | None] = []
    packing: list[tuple[int, int] | None] = []
    outer: list = []
    used: set[int] = set()
    for dig in rf.digits(before):
        b: "int | None" = None
        new: "list[tuple[int, int, int, int]] | None" = None
        if len(dig) == 1 and dig[0][2] == 1:
            # a size-1 dim: a free size-1 axis at the same place holds it
            a, q, _, _ = dig[0]
            s = sb[a] * q
            b = next((b for b in range(1, len(after)) if after[b] == 1 and sa[b] == s
                      and b not in used), None)
            new = None if b is None else [(b, 1, 1, 1)]
        elif dig:
            new = []
            for a, q, n, w in dig:
                part = _regroup(sb[a] * q, n, w, after, sa) if n > 1 else []
                if part is None:
                    new = None
                    break
                new += part
            new = _joined(new) if new else None
        if not new or new[0][3] != 1:
            axes.append(None)
            packing.append(None)
            outer.append(None)
            continue
        b, q, n, _ = new[0]
        used.add(b)
        axes.append(b)
        packing.append((q, n))
        outer.append(tuple((h - len(after), hq, hn, hw) for h, hq, hn, hw in new[1:]) or None)
    return rf.placed(tuple(axes), len(after), packing=tuple(packing), shape=after,
                     outer=tuple(outer))


def fraction_json(x: "int | Fraction") -> int | str:
    """Exact JSON form: an int when whole, else the string 'p/q'."""
    return x.numerator if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
