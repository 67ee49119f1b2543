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

from math import prod
from typing import Any, ClassVar

from ..args import Arg, Bool, Choice, NonNegInt, PosInt, Probability
from ..rf import GLOBAL
from .base import (ACC, LOWER, Grads, Layer, Saved, Shape, register, saved_extra,
                   saved_output)


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
    #: a CPU kernel of oneDNN runs it (an LSTM without projections: torch's use_mkldnn)
    ONEDNN: ClassVar[bool] = False
    #: a cell state besides the hidden state (LSTM)
    STATE_C: ClassVar[bool] = False
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
        """Backpropagation through time, per layer and direction: the gradient into the
        previous hidden state through ``W_hh`` at every step but the first (``h0`` is zeros
        that need no gradient; measured: FlopCounterMode counts T - 1 such products), the
        projection's input gradient at every step, the gradient into the layer's input
        through ``W_ih`` (for layer 0 only when the input needs one), and with trainable
        weights their gradients at every step, as large as the forward products."""
        n, length, _ = self.x
        g, h, p = self.GATES, self.hidden_size, self.proj
        total = 0
        for k, in_k in enumerate(self.layer_inputs()):
            total += (length - 1) * g * h * self.h_out + length * p * h
            if k or grads.inputs[0]:
                total += length * g * h * in_k
            if grads.weight:
                total += length * (g * h * (in_k + self.h_out) + p * h)
        return n * self.directions * total

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """What the kernel torch picks keeps: cuDNN on CUDA, oneDNN for a CPU LSTM without
        projections, else ATen's step-by-step cells (see each)."""
        if device == "cuda":
            return self._saved_cudnn()
        if self.ONEDNN and not self.proj:
            return self._saved_onednn()
        return self._saved_cells(grads)

    def _saved_cudnn(self) -> list[Saved]:
        """``_cudnn_rnn`` (derivatives.yaml) keeps the time-major input (a contiguous copy
        of the batch-first input), ``hx`` (and ``cx``), the output and cuDNN's reserve
        space, sized by cudnnGetRNNTrainingReserveSize. The reserve is estimated here as
        the gates and the hidden state of every step, layer and direction: written from
        the kernel's documentation, not measured (no GPU here)."""
        n, length, _ = self.x
        d, layers, h = self.directions, self.num_layers, self.hidden_size
        kept = [saved_extra(prod(self.x)), saved_output()]
        kept += [saved_extra(d * layers * n * self.h_out)]
        if self.STATE_C:
            kept.append(saved_extra(d * layers * n * h))
        steps = n * length * d * layers
        return kept + [saved_extra(steps * (self.GATES * h + self.h_out))]

    def _saved_onednn(self) -> list[Saved]:
        """oneDNN (``mkldnn_rnn_layer``, one call per layer and direction; measured): the
        zero ``h0`` and ``c0`` (one tensor each for all layers), the input made time-major
        (one contiguous copy), and per layer and direction its output, ``hy``, ``cy`` and
        oneDNN's workspace (:func:`onednn_workspace`); between layers the next layer's
        input (the directions concatenated, or the dropout output) and a float dropout
        mask. The last layer's output is the module's output when unidirectional."""
        n, length, _ = self.x
        d, layers, h = self.directions, self.num_layers, self.hidden_size
        kept = [saved_extra(d * layers * n * h)] * 2 + [saved_extra(prod(self.x))]
        for k, in_k in enumerate(self.layer_inputs()):
            if k and (d == 2 or self.dropout):
                kept.append(saved_extra(length * n * d * h))
            if k and self.dropout:
                kept.append(saved_extra(length * n * d * h))
            last = k == layers - 1 and d == 1
            for _ in range(d):
                kept += [saved_output() if last else saved_extra(length * n * h),
                         saved_extra(n * h), saved_extra(n * h),
                         saved_extra(onednn_workspace(length, n, in_k, h) // 4, ACC)]
        return kept

    def _saved_cells(self, grads: Grads) -> list[Saved]:
        """ATen's cells (``_VF.rnn_tanh/relu``, ``gru``, an LSTM with projections; measured
        on CPU): per layer and direction the input projected for all steps at once keeps
        the input (for layer 0 a time-major copy per direction; later layers the stacked
        output of the one before, plus a float dropout mask), and each step keeps what its
        element-wise backward reads (:meth:`step_saved`) and the hidden state the next
        step's ``W_hh`` product keeps. What only a weight gradient reads (the inputs,
        ``h0``, the hidden states) is kept only with trainable weights."""
        n, length, _ = self.x
        d, layers = self.directions, self.num_layers
        w = grads.weight
        kept = [saved_extra(d * layers * n * self.h_out)] if w else []
        if self.STATE_C:
            kept.append(saved_extra(d * layers * n * self.hidden_size))
        for k in range(layers):
            if k and w:
                kept.append(saved_extra(length * n * d * self.h_out))
            if k and self.dropout:
                kept.append(saved_extra(length * n * d * self.h_out))
            if not k and w:
                kept += [saved_extra(prod(self.x))] * d
            every, but_last = self.step_saved(w)
            kept += [saved_extra(d * n * (length * every + (length - 1) * but_last))]
        return kept

    def step_saved(self, weight: bool) -> tuple[int, int]:
        """Elements one ATen cell step keeps per sample: at every step, and at every step
        but the last (the state the next step reads). RNN: the activation's result, which
        is also the hidden state the next step's ``W_hh`` product keeps."""
        return self.hidden_size, 0

    def receptive_field(self, fields):
        return sequence_field(fields)

    def torch_module(self) -> Any:
        from ..torch.modules import FlatRecurrent

        return FlatRecurrent(self.torch_namesake(batch_first=True))


def _good_ld(dim: int) -> int:
    """oneDNN's leading dimension of float32 work arrays (rnn_utils ``get_good_ld``):
    rounded up to 64 bytes, and off multiples of 256 elements (4K aliasing)."""
    ld = -(-dim // 16) * 16
    return ld + 16 if ld % 256 == 0 else ld


def onednn_workspace(steps: int, batch: int, features: int, hidden: int) -> int:
    """Bytes of the float32 workspace oneDNN's LSTM keeps for backward, for one layer and
    direction (torch calls ``mkldnn_rnn_layer`` per layer and direction): page-aligned
    (4096-byte) arrays of the gates, the hidden states, three state arrays of width
    max(features, hidden) and two cell-state arrays over steps + 1. Fitted to, and exact
    on, torch 2.13's oneDNN (46 random shapes), after oneDNN's ``rnn_utils`` layout."""
    def page(n: int) -> int:
        return -(-n // 4096) * 4096
    rows = 2 * (steps + 1) * batch  # (layers + 1) x (steps + 1) x batch
    return (page(steps * batch * _good_ld(4 * hidden) * 4) + page(steps * batch * _good_ld(hidden) * 4)
            + 3 * page(rows * _good_ld(max(features, hidden)) * 4) + 2 * page(rows * hidden * 4))


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

    def step_saved(self, weight: bool) -> tuple[int, int]:
        """The hidden-side gates, made in place into one 3H tensor (reset and update
        sigmoids, new-gate input), the clone ``mul_`` keeps of the new gate's hidden part,
        the new gate's tanh, the clone of ``h - n``; and the hidden state for ``W_hh``."""
        h = self.hidden_size
        return 6 * h, h if weight else 0


@register
class LSTM(_RNNBase):
    """LSTM, batch first: (N, L, H_in) -> output, h_n, c_n; proj_size as torch."""

    GATES = 4
    EW = 13
    EW_BIAS = 8
    OUTPUTS = ("output", "h_n", "c_n")
    ONEDNN = True
    STATE_C = True

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

    def step_saved(self, weight: bool) -> tuple[int, int]:
        """The four gates (one tensor), ``tanh(c)``, and with projections ``h`` (the
        projection's input, for its weight); the cell state the next step's ``f * c``
        reads, and the (projected) hidden state for ``W_hh``."""
        h, p = self.hidden_size, self.proj_size
        every = 5 * h + (h if p and weight else 0)
        return every, h + (self.h_out if weight else 0)
