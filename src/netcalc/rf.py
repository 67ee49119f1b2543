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
A permutation can move them (channel-last ``(N, H, W, C)`` as ConvNeXt and Swin
compute): ``axes[i]`` is then the tensor axis holding ``dims[i]``, counted from the end
(-1 = the last), and None means the trailing layout. Layers that act on fixed trailing
axes (windows, padding, resampling, reshapes) see a moved layout as mixing: GLOBAL.
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
    size: "int | Fraction"
    stride: "int | Fraction"
    start: "int | Fraction"

    @property
    def lo(self) -> "int | Fraction":
        return exact(self.start - half(self.size - 1))

    @property
    def hi(self) -> "int | Fraction":
        return exact(self.start + half(self.size - 1))


@dataclass(frozen=True)
class RF:
    dims: tuple[RFDim, ...] = ()
    global_: bool = False
    aligned: bool = True  # False where merged paths disagree in stride or offset
    axes: tuple[int, ...] | None = None  # tensor axis of each dim, from the end; None: trailing

    def spatial_axes(self, rank: int) -> tuple[int, ...]:
        """The (non-negative) tensor axis of each dim in a tensor of ``rank`` dims."""
        axes = self.axes if self.axes is not None else range(-len(self.dims), 0)
        return tuple(rank + a for a in axes)

    def index_of(self, axis: int, rank: int) -> int | None:
        """Which dim of the field tensor axis ``axis`` holds; None for a channel, feature
        or batch axis."""
        axes = self.spatial_axes(rank)
        return axes.index(axis) if axis in axes else None

    def placed(self, axes: "tuple[int, ...]", rank: int, dims: "tuple[RFDim, ...] | None" = None
               ) -> "RF":
        """This field (or ``dims``) held at the non-negative ``axes`` of a rank-``rank`` tensor."""
        dims = self.dims if dims is None else dims
        rel = tuple(a - rank for a in axes)
        trailing = rel == tuple(range(-len(dims), 0))
        return RF(dims, aligned=self.aligned, axes=None if trailing else rel)

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
    field (a learned tensor, a constant) adds no input positions: it is left out.
    """
    real = [f for f in fields if f is not None]
    if not real:
        return None
    if any(f.global_ for f in real):
        return GLOBAL
    if len({len(f.dims) for f in real}) != 1 or len({f.axes for f in real}) != 1:
        return GLOBAL
    aligned = all(f.aligned for f in real)
    dims = []
    for parts in zip(*(f.dims for f in real)):
        lo = min(p.lo for p in parts)
        hi = max(p.hi for p in parts)
        strides = {p.stride for p in parts}
        starts = {p.start for p in parts}
        aligned = aligned and len(strides) == 1 and len(starts) == 1
        dims.append(RFDim(exact(hi - lo + 1), max(strides), exact(half(lo + hi))))
    return RF(tuple(dims), aligned=aligned, axes=real[0].axes)


def trailing(rf: RF | None) -> RF | None:
    """The field for a layer acting on fixed trailing axes: as is in the trailing layout,
    GLOBAL when a permutation moved the spatial dims (the layer would mix a channel axis
    with positions)."""
    return GLOBAL if rf is not None and rf.axes is not None else rf


def fraction_json(x: "int | Fraction") -> int | str:
    """Exact JSON form: an int when whole, else the string 'p/q'."""
    return x.numerator if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
