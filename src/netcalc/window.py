"""One sliding-window rule for convolution, pooling and transposed convolution.

"conv2d is a pooling op" (tinygrad): output size and receptive field of every
windowed layer come from this one place, per spatial dimension.

Shape (torch.nn.Conv*/MaxPool*/AvgPool* ``Shape:`` sections)::

    L_out = floor((L_in + pad_lo + pad_hi - dilation*(kernel-1) - 1) / stride) + 1

With ``ceil_mode`` the division rounds up, but torch drops a last window that
would start in the right padding: if ``(L_out-1)*stride >= L_in + pad_lo`` then
``L_out -= 1`` (``pooling_output_shape`` in ATen; not stated in the docstring).
Rounding up applies even when the window is larger than the padded input: MaxPool1d
kernel 2, stride 2, ceil_mode on a length-1 input gives 1 output.

Transposed (torch.nn.ConvTranspose*)::

    L_out = (L_in-1)*stride - pad_lo - pad_hi + dilation*(kernel-1) + output_padding + 1

Receptive field (Araujo et al., Distill 2019, eqs. 1-3 in jump form), with
``k = dilation*(kernel-1) + 1``::

    size' = size + (k-1)*jump       jump' = jump*stride     start' = start + ((k-1)/2 - pad_lo)*jump

A transposed window is a window of stride 1/stride on the input grid, so
``jump' = jump/stride``, ``size' = size + (k-1)*jump/stride`` and
``start' = start + (pad_lo - (k-1)/2)*jump/stride``.

Over an uneven (windowed) field the window is applied unit by unit
(:func:`netcalc.rfperiod.windowed`); transposed and fractional steps over one are not
modelled: the dim turns global.
"""

from __future__ import annotations

from dataclasses import dataclass
from .rf import GLOBAL, RF, WHOLE, RFDim, exact, half, ratio, trailing
from .rfperiod import windowed as periodic_windowed


@dataclass(frozen=True)
class Window:
    """One sliding window along one dim: kernel, stride, padding, dilation, rounding."""

    kernel: int
    stride: int = 1
    pad_lo: int = 0
    pad_hi: int = 0
    dilation: int = 1
    ceil_mode: bool = False
    transposed: bool = False
    output_padding: int = 0

    @property
    def span(self) -> int:
        """The effective kernel extent, dilation included."""
        return self.dilation * (self.kernel - 1) + 1

    def out_size(self, n: int) -> int:
        """Output length for input length ``n``; may be <= 0 when the window does not fit."""
        if self.transposed:
            return (n - 1) * self.stride - self.pad_lo - self.pad_hi + self.span + self.output_padding
        room = n + self.pad_lo + self.pad_hi - self.span
        if not self.ceil_mode:
            return room // self.stride + 1 if room >= 0 else 0
        # rounding up also keeps a window that overhangs the padded input (room < 0)
        # as long as it starts inside it, as torch does
        out = -(-room // self.stride) + 1
        if (out - 1) * self.stride >= n + self.pad_lo:
            out -= 1
        return max(out, 0)

    def receptive(self, rf: RFDim) -> RFDim:
        if rf.whole:  # every position along the dim already
            return rf
        if rf.ends is not None:  # uneven (windowed) field: unit by unit
            if self.transposed or not isinstance(self.stride, int):
                return WHOLE  # fractional steps over uneven units: not modelled, global
            return periodic_windowed(rf, self.kernel, self.stride, self.pad_lo,
                                     self.dilation)
        reach = self.span - 1
        if self.transposed:
            jump = ratio(rf.stride, self.stride)
            grow = reach * jump
            return RFDim(exact(rf.size + grow), jump,
                         exact(rf.start + self.pad_lo * jump - half(grow)))
        grow = reach * rf.stride
        return RFDim(
            exact(rf.size + grow),
            exact(rf.stride * self.stride),
            exact(rf.start + half(grow) - self.pad_lo * rf.stride),
        )


def windowed(fields: "list[RF | None]", windows: "list[Window]") -> "RF | None":
    """Receptive field after a windowed layer acting on the trailing spatial dims."""
    rf = trailing(fields[0])
    if rf is None or rf.global_:
        return rf
    if len(rf.dims) != len(windows):
        return GLOBAL
    return RF(tuple(w.receptive(d) for w, d in zip(windows, rf.dims)), aligned=rf.aligned)
