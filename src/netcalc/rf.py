"""Receptive fields in exact rational arithmetic (Araujo, Norris & Sim, Distill 2019).

For each spatial dimension of a node we keep three numbers, in input pixels:

* ``size``  - extent of the input region one output unit sees;
* ``stride`` - the jump: distance in the input between two neighbouring output units;
* ``start`` - the centre of the first output unit's region (0 = centre of input pixel 0).

Transposed convolutions and upsampling divide the jump, so all three are Fractions.
A node whose units see every position (Linear over a flattened map, global pooling,
attention) has ``global_ = True``. A node with no spatial relation to the input (a
token sequence, a latent vector) has no receptive field at all (``None``).
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
    units do not line up), as the receptive_field library does.
    """
    real = [f for f in fields if f is not None]
    if not real:
        return None
    if any(f.global_ for f in real):
        return GLOBAL
    ndims = {len(f.dims) for f in real}
    if len(ndims) != 1:
        return GLOBAL
    aligned = all(f.aligned for f in real) and len(real) == len(fields)
    dims = []
    for parts in zip(*(f.dims for f in real)):
        lo = min(p.lo for p in parts)
        hi = max(p.hi for p in parts)
        strides = {p.stride for p in parts}
        starts = {p.start for p in parts}
        aligned = aligned and len(strides) == 1 and len(starts) == 1
        dims.append(RFDim(exact(hi - lo + 1), max(strides), exact(half(lo + hi))))
    return RF(tuple(dims), aligned=aligned)


def fraction_json(x: "int | Fraction") -> int | str:
    """Exact JSON form: an int when whole, else the string 'p/q'."""
    return x.numerator if x.denominator == 1 else f"{x.numerator}/{x.denominator}"
