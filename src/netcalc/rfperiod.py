"""Uneven ("windowed") receptive fields: periodic-affine region ends, exactly.

An ordinary field (:class:`netcalc.rf.RFDim`) is affine: output unit p sees the input
interval ``[lo + p*J, hi + p*J]`` (J the jump), every unit as large as the next. Window
attention breaks that: after Swin's 7x7 window attention a unit sees its whole window,
so the units of one window share one region and the next window's region starts 7
units on. The ends are still exact, monotone step functions of p, periodic up to a
translation::

    lo(p + P) = lo(p) + P*J        hi(p + P) = hi(p) + P*J

with a period P (output units) and the jump J; an ordinary field is P = 1. Such a dim
keeps the table ``ends = ((lo(0), hi(0)), ..., (lo(P-1), hi(P-1)))``; its ``size`` is the
largest extent ``max(hi(p) - lo(p) + 1)`` over a period (how far a unit sees, the figure
tables and JSON report), ``stride`` is J and ``start`` the centre of unit 0's region.
Why this form: every layer of a Swin block maps such a table to another of the same
form with a period that stays small (at most lcm of the window sizes and strides), so
the field stays exact, in ints or Fractions, with no per-position enumeration of the
map. Every rule below is one :func:`gather`: the new unit p reads the units ``first(p)``
to ``last(p)`` and sees the union of their regions: the ends are monotone (every rule
keeps them non-decreasing in p), so that is ``[lo(first), hi(last)]``, the extent (a
union with gaps is reported by its extent, as a dilated kernel's field is):

* a window (convolution, pooling) of kernel k, stride s, padding pad, dilation d:
  units ``p*s - pad`` to ``p*s - pad + d*(k-1)``, period ``P / gcd(P, s)``, jump ``J*s``;
* mixing within windows of w units (attention, softmax or a matrix product along the
  token axis of a dim split into windows): units ``w*floor(p/w)`` to ``+ w-1``,
  period ``lcm(P, w)``;
* a Roll by s: unit ``p - s``, a translation. A conventional field ignores the
  borders as it ignores padding: units whose roll wraps around the map see the other
  edge as well, which the field does not describe (nor does it describe a unit
  reading zero padding);
* a slice ``x[first::step]``: unit ``first + p*step``.

A union of paths (Add, Concat) takes ``min lo`` and ``max hi`` unit by unit, over the
lcm of the periods (paths with different jumps: the dim turns global). Periods above
:data:`MAX_PERIOD` turn the dim global (bounded time and memory on hostile specs).
"""

from __future__ import annotations

from math import gcd
from typing import Callable

from .rf import WHOLE, RFDim, exact, half

#: largest period kept exactly; beyond it the dim is global
MAX_PERIOD = 1024


def lcm(a: int, b: int) -> int:
    return a * b // gcd(a, b)


def end(d: RFDim, p: int) -> tuple:
    """(lo(p), hi(p)): the input interval unit ``p`` sees along the dim (any int p)."""
    if d.ends is None:
        return exact(d.lo + p * d.stride), exact(d.hi + p * d.stride)
    k, r = divmod(p, len(d.ends))
    lo, hi = d.ends[r]
    step = k * len(d.ends) * d.stride
    return exact(lo + step), exact(hi + step)


def periodic(stride, ends: "list[tuple]") -> RFDim:
    """The dim with jump ``stride`` and unit ends ``ends`` over one period, reduced to its
    smallest period (an ordinary field when that is 1)."""
    n = len(ends)
    for d in range(1, n + 1):
        if n % d == 0 and all(ends[p + d] == (exact(ends[p][0] + d * stride),
                                               exact(ends[p][1] + d * stride))
                              for p in range(n - d)):
            break
    lo, hi = ends[0]
    if d == 1:
        return RFDim(exact(hi - lo + 1), stride, exact(half(lo + hi)))
    table = tuple(ends[:d])
    return RFDim(max(exact(b - a + 1) for a, b in table), stride, exact(half(lo + hi)),
                 ends=table)


def gather(d: RFDim, period: int, stride, span: Callable[[int], "tuple[int, int]"]) -> RFDim:
    """The dim whose unit p (of ``period`` units, jump ``stride``) sees the union of the
    regions of units ``span(p) = (first, last)`` of ``d`` (and those between)."""
    if d.whole:
        return d
    if period > MAX_PERIOD:
        return WHOLE
    ends = []
    for p in range(period):
        first, last = span(p)
        ends.append((end(d, first)[0], end(d, last)[1]))
    return periodic(exact(stride), ends)


def windowed(d: RFDim, kernel: int, stride: int, pad: int, dilation: int) -> RFDim:
    """After a window (convolution, pooling) over an uneven dim."""
    period = d.period // gcd(d.period, stride)
    reach = dilation * (kernel - 1)
    return gather(d, period, d.stride * stride,
                  lambda p: (p * stride - pad, p * stride - pad + reach))


def within(d: RFDim, w: int) -> RFDim:
    """Every unit sees its whole window of ``w`` units (windows aligned to 0, w, 2w...)."""
    return gather(d, lcm(d.period, w), d.stride, lambda p: (p - p % w, p - p % w + w - 1))


def translated(d: RFDim, shift: int) -> RFDim:
    """``roll(x, shift)`` along the dim, in the interior: unit p reads unit p - shift."""
    return gather(d, d.period, d.stride, lambda p: (p - shift, p - shift))


def strided(d: RFDim, first: int, step: int) -> RFDim:
    """``x[first::step]`` along the dim."""
    return gather(d, d.period // gcd(d.period, step), d.stride * step,
                  lambda p: (first + p * step, first + p * step))


def union(parts: "list[RFDim]") -> RFDim:
    """Unit by unit union of several paths' dims (equal jumps; else global)."""
    if any(p.whole for p in parts) or len({p.stride for p in parts}) != 1:
        return WHOLE
    period = 1
    for p in parts:
        period = lcm(period, p.period)
    if period > MAX_PERIOD:
        return WHOLE
    ends = []
    for u in range(period):
        seen = [end(p, u) for p in parts]
        ends.append((min(a for a, _ in seen), max(b for _, b in seen)))
    return periodic(parts[0].stride, ends)
