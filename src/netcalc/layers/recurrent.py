"""Recurrent layers: RNN, LSTM and GRU with torch's arguments (torch.nn.RNN, LSTM, GRU).

Batch first, always (the torch builder sets ``batch_first=True``): the input is
``(N, L, H_in)``. Outputs, in order, named for ``from: layer:h_n``:

* ``output`` ``(N, L, D*H_out)``: the last layer's hidden state at every step;
* ``h_n`` ``(D*num_layers, N, H_out)``: the final hidden state of every layer and
  direction (batch at dim 1, exactly as torch returns it even with batch_first);
* ``c_n`` ``(D*num_layers, N, H_cell)`` (LSTM only): the final cell state.

``D`` is 2 when bidirectional, ``H_out`` is ``proj_size`` when an LSTM has one, else
``hidden_size``; ``H_cell = hidden_size``.

Params (torch's ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
``bias_hh_l{k}``, ``weight_hr_l{k}`` per layer k and direction), with G gates (RNN 1,
GRU 3, LSTM 4), layer input ``in_0 = input_size``, ``in_k = D*H_out``::

    sum over k, directions: G*H*in_k + G*H*H_out + (2*G*H if bias) + (P*H if proj_size P)

MACs: every gate's input and recurrent products at every time step, for every layer
and direction: ``N*L*D * sum_k (G*H*(in_k + H_out) + P*H)``.

Element-wise FLOPs per time step, sample, layer and direction (1 FLOP per add,
multiply or nonlinearity element):

* RNN: ``H`` (input + recurrent product) ``+ H`` (tanh or relu), ``+ 2H`` biases;
* LSTM: ``4H`` (input + recurrent products) ``+ 4H`` (3 sigmoids, tanh g)
  ``+ 3H`` (c = f*c + i*g) ``+ 2H`` (h = o*tanh(c)) = ``13H``, ``+ 8H`` biases;
* GRU: ``2H`` (r, z sums) ``+ 2H`` (sigmoids) ``+ 3H`` (n = tanh(x_n + r*h_n): mul,
  add, tanh) ``+ 4H`` (h = (1-z)*n + z*h) = ``11H``, ``+ 6H`` biases.

Dropout between layers is a training-time operation and is not counted.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..args import Arg, Bool, Choice, NonNegInt, PosInt, Probability
from ..rf import GLOBAL
from .base import LOWER, Grads, Layer, Saved, Shape, register, saved_extra, saved_input


def sequence_field(fields):
    """Each output step depends on the whole input sequence: global, if the input has a field."""
    return GLOBAL if any(f is not None for f in fields) else None


def check_sequence(layer: Layer, s: Shape, features: str, which: str | None = None) -> None:
    """Recurrent and attention layers take batch-first sequences ``(N, L, features)``;
    ``which`` names the input (query, memory, ...) of a layer that takes several."""
    if len(s) == 3:
        return
    name = type(layer).__name__
    if which is None:
        raise layer.fail(f"{name} needs a 3-d input (N, L, {features}), batch first, "
                         f"got {list(s)}")
    raise layer.fail(f"{name} needs 3-d inputs (N, L, {features}), batch first; the {which} "
                     f"is {list(s)}")


class _RNNBase(Layer):
    PRIMARY = "hidden_size"
    AUTOCAST = LOWER
    GATES: ClassVar[int] = 1
    #: element-wise FLOPs per hidden unit and step, without and with the bias adds
    EW: ClassVar[int] = 2
    EW_BIAS: ClassVar[int] = 2
    OUTPUTS = ("output", "h_n")
    PARAMS_FORMULA = ("sum over layers k, directions: G*H*(in_k + H_out) + (2*G*H if bias) "
                      "+ (proj_size*H)")
    MACS_FORMULA = "N*L*D * sum over layers k: G*H*(in_k + H_out) + proj_size*H"

    input_size = Arg(PosInt, inferred=True, doc="features of the input (last dim)")
    hidden_size = Arg(PosInt, doc="features of the hidden state")
    num_layers = Arg(PosInt, 1, doc="stacked recurrent layers")
    bias = Arg(Bool(), True)
    dropout = Arg(Probability, 0.0, doc="dropout between layers (training only)")
    bidirectional = Arg(Bool(), False)

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def h_out(self) -> int:
        return self.hidden_size

    @property
    def proj(self) -> int:
        return 0

    def layer_inputs(self) -> list[int]:
        return [self.input_size] + [self.directions * self.h_out] * (self.num_layers - 1)

    def shape(self, x: Shape) -> list[Shape]:
        check_sequence(self, x, "features")
        n, length, feat = x
        self.check_inferred("input_size", feat)
        d = self.directions
        outs = [(n, length, d * self.h_out), (d * self.num_layers, n, self.h_out)]
        if type(self).OUTPUTS[-1] == "c_n":
            outs.append((d * self.num_layers, n, self.hidden_size))
        return outs

    def params(self) -> int:
        g, h, p = self.GATES, self.hidden_size, self.proj
        total = 0
        for in_k in self.layer_inputs():
            per_dir = g * h * (in_k + self.h_out) + (2 * g * h if self.bias else 0) + p * h
            total += self.directions * per_dir
        return total

    def macs(self) -> int:
        n, length, _ = self.x
        g, h, p = self.GATES, self.hidden_size, self.proj
        per_step = sum(g * h * (in_k + self.h_out) + p * h for in_k in self.layer_inputs())
        return n * length * self.directions * per_step

    def elementwise_flops(self) -> int:
        n, length, _ = self.x
        per_unit = self.EW + (self.EW_BIAS if self.bias else 0)
        return n * length * self.directions * self.num_layers * per_unit * self.hidden_size

    def param_tensors(self) -> int:
        """Per layer and direction: weight_ih, weight_hh (+ bias_ih, bias_hh, weight_hr)."""
        per = 2 + (2 if self.bias else 0) + (1 if self.proj else 0)
        return self.num_layers * self.directions * per

    def backward_macs(self, grads: Grads) -> int:
        """Per step and layer (backpropagation through time): the gradient into the
        hidden state through ``W_hh`` always, into the layer's input through ``W_ih``
        (for layer 0 only when the input needs one), and with trainable weights their
        gradients, as large as the forward products."""
        n, length, _ = self.x
        g, h, p = self.GATES, self.hidden_size, self.proj
        per_step = 0
        for k, in_k in enumerate(self.layer_inputs()):
            forward = g * h * (in_k + self.h_out) + p * h
            per_step += g * h * self.h_out + p * h  # hidden-state (and projection) gradient
            if k or grads.inputs[0]:
                per_step += g * h * in_k
            if grads.weight:
                per_step += forward
        return n * length * self.directions * per_step

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """The input, and per step, layer and direction the gates and states the
        backward reads (the kernels' workspace)."""
        n, length, _ = self.x
        steps = n * length * self.directions * self.num_layers
        return [saved_input(), saved_extra(steps * (self.GATES + 1) * self.hidden_size)]

    def receptive_field(self, fields):
        return sequence_field(fields)

    def torch_module(self) -> Any:
        from ..torch.modules import FlatRecurrent

        return FlatRecurrent(self.torch_namesake(batch_first=True))


@register
class RNN(_RNNBase):
    """Elman RNN, batch first: (N, L, H_in) -> output (N, L, D*H), h_n (D*layers, N, H)."""

    nonlinearity = Arg(Choice(("tanh", "relu")), "tanh")


@register
class GRU(_RNNBase):
    """GRU, batch first: (N, L, H_in) -> output (N, L, D*H), h_n (D*layers, N, H)."""

    GATES = 3
    EW = 11
    EW_BIAS = 6


@register
class LSTM(_RNNBase):
    """LSTM, batch first: (N, L, H_in) -> output, h_n, c_n; proj_size as torch."""

    GATES = 4
    EW = 13
    EW_BIAS = 8
    OUTPUTS = ("output", "h_n", "c_n")

    proj_size = Arg(NonNegInt, 0, doc="project h to this size (0 = no projection)")

    def validate(self) -> None:
        if self.proj_size >= self.hidden_size:
            raise self.fail(f"proj_size={self.proj_size} must be smaller than hidden_size="
                            f"{self.hidden_size}", "proj_size")

    @property
    def h_out(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def proj(self) -> int:
        return self.proj_size
