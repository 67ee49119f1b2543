"""Opaque: what ``netcalc import --opaque`` could not express, with what torch measured.

An op or module netcalc has no layer for (``torch.cumsum``, a custom CUDA op) is kept
in an imported spec as an ``Opaque`` layer carrying its measured per-sample output
shape and its parameter and buffer counts, so the rest of the model is still analysed.

Shape: ``(N, *shape)``, N the batch of the first input.
Params and buffers: as given (measured on the source module).
MACs, FLOPs: unknown. They are ``None`` (``null`` in JSON, "unknown" in tables), and
every total that includes one is unknown too (:mod:`netcalc.metrics`); a ``macs``
expectation or budget on such a spec fails, ``verify`` gives the layer an ``opaque``
verdict, and a training step (``--train``) is refused: its backward is unknown too.
Receptive field: global (nothing is known of how it mixes positions).
"""

from __future__ import annotations

from typing import Any

from ..args import Arg, IntList, NonNegInt
from ..rf import GLOBAL
from .base import FLOAT, INT, Grads, Layer, Saved, Shape, register


@register
class Opaque(Layer):
    """An op netcalc cannot express: measured output shape and params, MACs unknown."""

    ARITY = (1, None)
    ACCEPTS = (FLOAT, INT)
    PRIMARY = "shape"
    PARAMS_FORMULA = "params (as measured on the source module)"
    MACS_FORMULA = "unknown"

    out_shape = Arg(IntList(1), name="shape", doc="per-sample output shape (measured)")
    n_params = Arg(NonNegInt, 0, name="params", doc="parameters (measured)")
    n_buffers = Arg(NonNegInt, 0, name="buffers", doc="buffer elements (measured)")

    def shape(self, *inputs: Shape) -> Shape:
        return (inputs[0][0], *self.out_shape)

    def out_dtype(self) -> str:
        return FLOAT

    def params(self) -> int:
        return self.n_params

    def buffers(self) -> int:
        return self.n_buffers

    def param_tensors(self) -> int:
        return 1 if self.n_params else 0

    def macs(self) -> Any:
        """None: unknown."""
        return None

    def elementwise_flops(self) -> Any:
        """None: unknown."""
        return None

    def flops(self, macs: Any = None) -> Any:
        """None: unknown."""
        return None

    def backward_macs(self, grads: Grads) -> int:
        raise self.fail("an Opaque layer's backward is unknown: --train cannot count it")

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        raise self.fail("an Opaque layer's backward is unknown: --train cannot count it")

    def receptive_field(self, fields):
        return GLOBAL

    def torch_module(self) -> Any:
        from ..torch.modules import OpaqueModule

        return OpaqueModule(self.out_shape, self.n_params, self.n_buffers)
