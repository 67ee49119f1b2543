"""Convolutions: Conv1d/2d/3d and ConvTranspose1d/2d/3d.

Shape: input ``(N, C_in, *L_in)`` -> output ``(N, C_out, *L_out)`` with ``L_out`` from
:class:`netcalc.window.Window` per spatial dim (torch.nn.Conv2d, ConvTranspose2d).

Params: ``C_out * C_in/groups * prod(kernel_size) (+ C_out bias)``; a transposed
conv's weight is ``(C_in, C_out/groups, *kernel_size)``.

MACs (torchvision's ``_ops``, fvcore's conv handle): ``numel(output) * C_in/groups *
prod(kernel_size)``; a transposed conv slides over its INPUT:
``N * prod(L_in) * C_in * C_out/groups * prod(kernel_size)``. The bias add is
``numel(output)`` element-wise FLOPs.
"""

from __future__ import annotations

from math import prod
from typing import Any, ClassVar

from ..args import Arg, Bool, Choice, Ints, OneOf, PosInt
from ..window import Window, windowed
from .base import LOWER, Grads, Layer, Saved, Shape, register, saved_input, saved_weight


_WINDOWS: dict[tuple, tuple[Window, ...]] = {}


class _ConvBase(Layer):
    PRIMARY = "out_channels"
    TRANSPOSED: ClassVar[bool] = False
    AUTOCAST = LOWER
    PARAMS_FORMULA = "C_out*C_in/groups*prod(kernel_size) + (C_out if bias)"
    MACS_FORMULA = "numel(output) * C_in/groups * prod(kernel_size)"

    in_channels = Arg(PosInt, inferred=True, doc="input channels (dim 1)")
    out_channels = Arg(PosInt, doc="output channels")
    kernel_size = Arg(Ints(1))
    stride = Arg(Ints(1), 1)
    dilation = Arg(Ints(1), 1)
    groups = Arg(PosInt, 1, doc="channel groups; groups = C_in makes a depthwise conv")
    bias = Arg(Bool(), True)
    padding_mode = Arg(Choice(("zeros", "reflect", "replicate", "circular")), "zeros")

    def validate(self) -> None:
        if self.out_channels % self.groups:
            raise self.fail(f"out_channels={self.out_channels} is not divisible by "
                            f"groups={self.groups}", "groups")

    def pads(self, length: int, dim: int) -> tuple[int, int]:
        raise NotImplementedError

    def windows(self) -> tuple[Window, ...]:
        """The sliding window along each spatial dim: made once per distinct arguments
        (shape and receptive field both ask; a 10^4-layer spec repeats a few convs)."""
        key = (type(self), self.kernel_size, self.stride, self.padding, self.dilation,
               getattr(self, "output_padding", None))
        found = _WINDOWS.get(key)
        if found is None:
            if len(_WINDOWS) >= 4096:  # bounded in a long-lived process
                _WINDOWS.clear()
            found = _WINDOWS[key] = tuple(self.make_windows())
        return found

    def make_windows(self) -> list[Window]:
        raise NotImplementedError

    def shape(self, x: Shape) -> Shape:
        if len(x) != self.nd + 2:
            raise self.fail(f"{type(self).__name__} needs a {self.nd + 2}-d input "
                            f"(N, C, {', '.join('L' * self.nd)}), got {list(x)}")
        c_in = self.check_inferred("in_channels", x[1])
        if c_in % self.groups:
            raise self.fail(f"in_channels={c_in} is not divisible by groups={self.groups}",
                            "groups")
        out = []
        for n, w in zip(x[2:], self.windows()):
            # F.pad refuses reflect padding >= the input size, circular padding > it
            limit = {"reflect": n - 1, "circular": n}.get(self.padding_mode)
            if limit is not None and max(w.pad_lo, w.pad_hi) > limit:
                raise self.fail(f"padding_mode={self.padding_mode!r} needs padding "
                                f"{'<' if self.padding_mode == 'reflect' else '<='} the input "
                                f"size {n}, got {max(w.pad_lo, w.pad_hi)} (input {list(x)})",
                                "padding")
            size = w.out_size(n)
            if size <= 0:
                raise self.fail(f"kernel extent {w.span} is larger than the padded input "
                                f"{n + w.pad_lo + w.pad_hi} (input {list(x)})", "kernel_size")
            out.append(size)
        return (x[0], self.out_channels, *out)

    def weight_shape(self) -> Shape:
        c_in, c_out, g = self.in_channels, self.out_channels, self.groups
        if self.TRANSPOSED:
            return (c_in, c_out // g, *self.kernel_size)
        return (c_out, c_in // g, *self.kernel_size)

    def params(self) -> int:
        return prod(self.weight_shape()) + (self.out_channels if self.bias else 0)

    def macs(self) -> int:
        per_position = prod(self.weight_shape())
        if self.TRANSPOSED:  # each input position scatters C_out/groups * k products per input channel
            return self.x[0] * prod(self.x[2:]) * per_position
        return self.x[0] * prod(self.y[2:]) * per_position

    def elementwise_flops(self) -> int:
        return prod(self.y) if self.bias else 0

    def backward_macs(self, grads: Grads) -> int:
        """``convolution_backward``: the input gradient is the transposed convolution of
        the output gradient, the weight gradient correlates input and output gradient
        per group; each costs the forward's MACs, ``groups`` included."""
        return self.macs() * (grads.inputs[0] + grads.weight)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """The input (and the weight): one ``convolution_backward`` formula serves every
        gradient, so autograd keeps both whichever is needed (under autocast the weight's
        16-bit cast; measured, also when the input needs no gradient)."""
        return [saved_input(), saved_weight(prod(self.weight_shape()))]

    def receptive_field(self, fields):
        return windowed(fields, self.windows())

    def torch_module(self) -> Any:
        return self.torch_namesake()


class _Conv(_ConvBase):
    padding = Arg(OneOf((Ints(0), Choice(("same", "valid")))), 0,
                  doc="int, list, 'same' (stride 1 only) or 'valid'")

    def validate(self) -> None:
        super().validate()
        if self.padding == "same" and any(s != 1 for s in self.stride):
            raise self.fail("padding='same' is not supported for strided convolutions "
                            "(torch refuses it)", "padding")

    def make_windows(self) -> list[Window]:
        out = []
        for i in range(self.nd):
            k, d = self.kernel_size[i], self.dilation[i]
            if self.padding == "same":  # torch pads the extra element on the right
                total = d * (k - 1)
                lo, hi = total // 2, total - total // 2
            elif self.padding == "valid":
                lo = hi = 0
            else:
                lo = hi = self.padding[i]
            out.append(Window(k, self.stride[i], lo, hi, d))
        return out


class _ConvTranspose(_ConvBase):
    TRANSPOSED = True
    MACS_FORMULA = "N * prod(L_in) * C_in * C_out/groups * prod(kernel_size)"
    PARAMS_FORMULA = "C_in*C_out/groups*prod(kernel_size) + (C_out if bias)"

    padding = Arg(Ints(0), 0, doc="dilation*(kernel_size-1) - padding zeros are added on each side")
    output_padding = Arg(Ints(0), 0, doc="extra size added to one side of the output")
    padding_mode = Arg(Choice(("zeros",)), "zeros")

    def validate(self) -> None:
        super().validate()
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= s and op >= d:
                raise self.fail(f"output_padding={op} must be smaller than either stride={s} "
                                f"or dilation={d}", "output_padding")

    def make_windows(self) -> list[Window]:
        return [
            Window(self.kernel_size[i], self.stride[i], self.padding[i], self.padding[i],
                   self.dilation[i], transposed=True, output_padding=self.output_padding[i])
            for i in range(self.nd)
        ]


@register
class Conv1d(_Conv):
    """1-d convolution over (N, C, L)."""

    nd = 1


@register
class Conv2d(_Conv):
    """2-d convolution over (N, C, H, W)."""

    nd = 2


@register
class Conv3d(_Conv):
    """3-d convolution over (N, C, D, H, W)."""

    nd = 3


@register
class ConvTranspose1d(_ConvTranspose):
    """1-d transposed convolution ("deconvolution") over (N, C, L)."""

    nd = 1


@register
class ConvTranspose2d(_ConvTranspose):
    """2-d transposed convolution over (N, C, H, W)."""

    nd = 2


@register
class ConvTranspose3d(_ConvTranspose):
    """3-d transposed convolution over (N, C, D, H, W)."""

    nd = 3
