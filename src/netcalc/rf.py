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
  again restores them. A reshape that splits one spatial dim over several axes (Swin's
  windows: 56 into 8 x 7) loses its coordinate: that dim becomes global.

"Global" is per dim: ``dims[i].whole`` says a unit may see every position along dim i
(after a Roll, a reduction, a Linear, a Select or a Softmax along the axis holding it);
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

    @property
    def lo(self) -> "int | Fraction":
        return exact(self.start - half(self.size - 1))

    @property
    def hi(self) -> "int | Fraction":
        return exact(self.start + half(self.size - 1))


#: a dim along which a unit may see every position
WHOLE = RFDim(None, None, None, whole=True)

Packing = "tuple[tuple[int, int] | None, ...] | None"


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
        """The (non-whole) dims held in any of the tensor ``axes``."""
        return [i for i, a in enumerate(self.spatial_axes(rank)) if a is not None and a in axes]

    def index_of(self, axis: int, rank: int) -> int | None:
        """The dim tensor axis ``axis`` holds alone; None for a channel, feature or batch
        axis, or one holding merged dims (:meth:`dims_at` lists those)."""
        at = self.dims_at({axis}, rank)
        return at[0] if len(at) == 1 and self.pack(at[0]) is None else None

    def pack(self, i: int) -> "tuple[int, int] | None":
        return None if self.packing is None else self.packing[i]

    def packs(self, shape: "tuple[int, ...]") -> "list[tuple[int, int] | None]":
        """(q, n) of each dim (None for a whole one): its coordinate is ``value // q % n``
        along its axis in a tensor of ``shape``."""
        return [None if a is None else (self.pack(i) or (1, shape[a]))
                for i, a in enumerate(self.spatial_axes(len(shape)))]

    def placed(self, axes: "tuple[int | None, ...]", rank: int,
               dims: "tuple[RFDim, ...] | None" = None, packing: Packing = None,
               shape: "tuple[int, ...] | None" = None) -> "RF":
        """This field (or ``dims``) held at the non-negative ``axes`` of a rank-``rank``
        tensor (None: the dim is whole), with ``packing`` (default: this one's); given
        the ``shape``, a dim that fills its axis drops its (1, n)."""
        new = list(self.dims if dims is None else dims)
        packs = list(packing if packing is not None else self.packing or [None] * len(new))
        for i, a in enumerate(axes):
            if a is None or new[i].whole:
                new[i], packs[i] = WHOLE, None
            elif shape is not None and packs[i] == (1, shape[a]):
                packs[i] = None
        if all(d.whole for d in new):
            return GLOBAL
        rel = tuple(None if d.whole else a - rank for d, a in zip(new, axes))  # type: ignore[operator]
        trailing = all(r is None or r == i - len(new) for i, r in enumerate(rel))
        return RF(tuple(new), aligned=self.aligned, axes=None if trailing else rel,
                  packing=tuple(packs) if any(packs) else None)

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
    every path (else GLOBAL).
    """
    real = [f for f in fields if f is not None]
    if not real:
        return None
    if any(f.global_ for f in real):
        return GLOBAL
    if len({len(f.dims) for f in real}) != 1:
        return GLOBAL
    n = len(real[0].dims)
    lay = [(f.axes or tuple(range(-n, 0)), f.packing or (None,) * n) for f in real]
    aligned = all(f.aligned for f in real)
    dims: list[RFDim] = []
    for i, parts in enumerate(zip(*(f.dims for f in real))):
        if any(p.whole for p in parts):
            dims.append(WHOLE)
            continue
        if len({(a[i], p[i]) for a, p in lay}) != 1:
            return GLOBAL
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
    trailing = all(a is None or a == i - n for i, a in enumerate(axes))
    return RF(tuple(dims), aligned=aligned, axes=None if trailing else axes,
              packing=packing if any(packing) else None)


def trailing(rf: RF | None) -> RF | None:
    """The field for a layer acting on fixed trailing axes: as is in the trailing layout
    (whole dims stay whole), GLOBAL when a permutation or a reshape moved or merged the
    spatial dims (the layer would mix a channel axis with positions)."""
    if rf is not None and (rf.axes is not None or rf.packing is not None):
        return GLOBAL
    return rf


def _strides(shape: "tuple[int, ...]") -> list[int]:
    """Row-major element strides of each axis."""
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= n
    return out[::-1]


def reshaped(rf: RF | None, before: "tuple[int, ...]", after: "tuple[int, ...]") -> RF | None:
    """The field after a row-major reshape from ``before`` to ``after`` (batch kept).

    Every element keeps its flat index. Dim i's coordinate is the digit of that index
    with stride ``s`` (its axis's stride times q) and radix n. It stays exact where one
    axis of ``after``, of stride t and size k, holds that digit entirely (``t`` divides
    ``s`` and ``s * n`` divides ``t * k``): there the coordinate is ``value // (s/t) % n``.
    Otherwise the reshape cut the dim over several axes: it becomes whole.
    """
    if rf is None or rf.global_ or not rf.dims:
        return rf
    sb, sa = _strides(before), _strides(after)
    axes: list[int | None] = []
    packing: list[tuple[int, int] | None] = []
    used: set[int] = set()
    for a, pk in zip(rf.spatial_axes(len(before)), rf.packs(before)):
        b = None
        if a is not None and pk is not None:
            q, n = pk
            s = sb[a] * q
            if n == 1:  # a size-1 dim: a free size-1 axis at the same place holds it
                b = next((b for b in range(1, len(after)) if after[b] == 1 and sa[b] == s
                          and b not in used), None)
            else:
                b = next((b for b in range(1, len(after)) if sa[b] <= s < sa[b] * after[b]),
                         None)
                if b is not None and (s % sa[b] or (sa[b] * after[b]) % (s * n)):
                    b = None
        axes.append(b)
        if b is None:
            packing.append(None)
        else:
            used.add(b)
            packing.append((s // sa[b], n))
    return rf.placed(tuple(axes), len(after), packing=tuple(packing), shape=after)


def fraction_json(x: "int | Fraction") -> int | str:
    """Exact JSON form: an int when whole, else the string 'p/q'."""
    return x.numerator if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
