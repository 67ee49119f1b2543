"""Padding layers: ZeroPad*, ConstantPad*, ReflectionPad*, ReplicationPad* (torch.nn's).

``padding`` is an int (every side) or a list of ``2*nd`` ints in torch's order, last
dim first: ``(left, right)``, ``(left, right, top, bottom)``,
``(left, right, top, bottom, front, back)``. Negative values crop, as in torch.

Shape: the trailing ``nd`` dims grow by their two pads; the leading dims are kept.
Zero and constant padding accept any input of ``nd+1`` dims or more; reflection and
replication need ``nd+1`` or ``nd+2`` dims (torch's rule). Reflection cannot reach
past the opposite edge: each pad must be smaller than the size of its dim (torch:
"Padding size should be less than the corresponding input dimension").

Params, buffers, MACs, element-wise FLOPs: 0 (padding copies values).

Receptive field: point-wise, but the coordinates shift: output position 0 is input
position ``-left``, so ``start -= left * jump`` on each padded dim (a 1-wide
:class:`netcalc.window.Window` with ``pad_lo = left``). Like zero padding of a
convolution, the reflected or replicated border is counted as where it sits, not as
the pixels it copies.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..args import Arg, ArgType, Float, is_int
from ..rf import RF, trailing
from ..window import Window
from .base import DataMovement, Grads, Saved, Shape, register, saved_input


class Padding(ArgType):
    """An int, or a list of ``2*nd`` ints in torch's order (last dim first)."""

    name = "int or list of 2*nd ints (left, right, top, bottom, front, back)"

    def check(self, value: Any, nd: int) -> tuple[int, ...]:
        if is_int(value):
            return (value,) * (2 * nd)
        if isinstance(value, (list, tuple)) and all(is_int(v) for v in value):
            if len(value) != 2 * nd:
                raise ValueError(f"expected an int or {2 * nd} values (left, right"
                                 f"{', top, bottom' if nd > 1 else ''}"
                                 f"{', front, back' if nd > 2 else ''}), got {len(value)}")
            return tuple(value)
        raise ValueError(f"expected an int or a list of {2 * nd} ints, got {value!r}")

    def schema(self) -> dict:
        item = {"type": "integer"}
        return {"oneOf": [item, {"type": "array", "items": item}]}


def on_trailing(rf: RF | None, windows: list[Window]) -> RF | None:
    """Apply per-dim windows to the trailing dims of a field (``windows[0]`` acts on the
    last dim); dims the field lacks (channels, batch) are skipped."""
    rf = trailing(rf)
    if rf is None or rf.global_:
        return rf
    dims = list(rf.dims)
    for i, w in enumerate(windows):
        j = len(dims) - 1 - i
        if j < 0:
            break
        dims[j] = w.receptive(dims[j])
    return RF(tuple(dims), aligned=rf.aligned)


class _Pad(DataMovement):
    """Shared rule of every padding layer."""

    PRIMARY = "padding"
    #: True: the input has nd+1 or nd+2 dims (reflection, replication); False: nd+1 or more
    BOUNDED_RANK: ClassVar[bool] = False
    #: reflection: every pad must be smaller than its input dim
    REFLECT: ClassVar[bool] = False

    padding = Arg(Padding(), doc="int or (left, right, top, bottom, front, back), last dim first")

    def pairs(self) -> list[tuple[int, int]]:
        """(lo, hi) per padded dim, the last dim first."""
        p = self.padding
        return [(p[2 * i], p[2 * i + 1]) for i in range(self.nd)]

    def shape(self, x: Shape) -> Shape:
        name, nd = type(self).__name__, self.nd
        if len(x) < nd + 1 or (self.BOUNDED_RANK and len(x) > nd + 2):
            want = f"{nd + 1}-d or {nd + 2}-d" if self.BOUNDED_RANK else f"{nd + 1}-d or larger"
            raise self.fail(f"{name} needs a {want} input (pads the last {nd} dim(s)), "
                            f"got {list(x)}")
        out = list(x)
        for i, (lo, hi) in enumerate(self.pairs()):
            dim = len(x) - 1 - i
            if self.REFLECT and (lo >= x[dim] or hi >= x[dim]):
                raise self.fail(f"reflection padding ({lo}, {hi}) must be smaller than the "
                                f"input size {x[dim]} of dim {dim} (input {list(x)})", "padding")
            out[dim] += lo + hi
        return tuple(out)

    def receptive_field(self, fields):
        return on_trailing(fields[0], [Window(1, 1, lo, hi) for lo, hi in self.pairs()])

    def torch_module(self) -> Any:
        return self.torch_namesake()


class _ConstantPad(_Pad):
    value = Arg(Float(), doc="fill value")


class _IndexedPad(_Pad):
    """Reflection and replication padding: ``reflection_padNd_backward`` and
    ``replication_padNd_backward`` read the input (derivatives.yaml: ``self``)."""

    BOUNDED_RANK = True

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        return [saved_input()]


class _ReflectionPad(_IndexedPad):
    REFLECT = True


class _ReplicationPad(_IndexedPad):
    pass


@register
class ZeroPad1d(_Pad):
    """Pad the last dim with zeros."""

    nd = 1


@register
class ZeroPad2d(_Pad):
    """Pad the last 2 dims with zeros."""

    nd = 2


@register
class ZeroPad3d(_Pad):
    """Pad the last 3 dims with zeros."""

    nd = 3


@register
class ConstantPad1d(_ConstantPad):
    """Pad the last dim with a constant value."""

    nd = 1


@register
class ConstantPad2d(_ConstantPad):
    """Pad the last 2 dims with a constant value."""

    nd = 2


@register
class ConstantPad3d(_ConstantPad):
    """Pad the last 3 dims with a constant value."""

    nd = 3


@register
class ReflectionPad1d(_ReflectionPad):
    """Pad the last dim with its reflection (pads < input size)."""

    nd = 1


@register
class ReflectionPad2d(_ReflectionPad):
    """Pad the last 2 dims with their reflection (pads < input size)."""

    nd = 2


@register
class ReflectionPad3d(_ReflectionPad):
    """Pad the last 3 dims with their reflection (pads < input size)."""

    nd = 3


@register
class ReplicationPad1d(_ReplicationPad):
    """Pad the last dim by repeating its edge value."""

    nd = 1


@register
class ReplicationPad2d(_ReplicationPad):
    """Pad the last 2 dims by repeating their edge values."""

    nd = 2


@register
class ReplicationPad3d(_ReplicationPad):
    """Pad the last 3 dims by repeating their edge values."""

    nd = 3
