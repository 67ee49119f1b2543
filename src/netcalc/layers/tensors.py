"""Tensors of the model's own, with no input: Parameter, Buffer, Constant.

A ViT's class token and position embedding, ConvNeXt's layer scale, Swin's relative
position bias table (Parameter); the index table that looks it up (Buffer); Swin's
shift mask, computed afresh in every forward (Constant)::

    - {name: pos_embedding, Parameter: {shape: [1, 197, 768]}}
    - {name: sum, Add: ~, from: [tokens, pos_embedding]}

Shape: exactly ``shape``. No batch dim is added: the tensor is shared by every sample.
A leading 1 broadcasts over the batch in Add and Mul (``(1, 197, 768) + (N, 197,
768)``); Expand copies it per sample (ViT's ``class_token.expand(n, -1, -1)``) where a
layer such as Concat needs equal sizes.

Counts: a Parameter's ``prod(shape)`` elements are parameters (trainable unless
``trainable: false``; ``tie:`` and ``sparsity:`` treat it as a weight); a Buffer's
are buffers (``module.buffers()``: in the state_dict, moved by ``.to()``, not trained);
a Constant's are counted nowhere (torch makes it in forward). No MACs, no FLOPs, and no
receptive field (None): the values do not depend on the input.

Torch: the tensor sits at the layer's own path, as torchvision and Hugging Face name
theirs: ``encoder.pos_embedding`` is the Parameter itself (not ``.weight``), so
published checkpoints load. An int64 Buffer is filled with valid indices,
``arange(numel) % bound`` where ``bound`` is the size of the table its readers index
(IndexSelect, Gather, Embedding); a Parameter is drawn from N(0, 0.02²) (torchvision's
ViT position embedding), float buffers and constants are ones (values a product keeps).
"""

from __future__ import annotations

from math import prod
from typing import Any

from ..args import Arg, Choice, IntList
from .base import FLOAT, INT, Grads, MacFree, Parameterless, Saved, Shape, register

DTYPES = {"float": FLOAT, "int64": INT}


class _Tensor(MacFree):
    """A tensor with no input: shape and dtype from the arguments."""

    ARITY = (0, 0)
    PRIMARY = "shape"
    tensor_shape = Arg(IntList(1), name="shape", doc="the whole shape (no batch dim is added)")

    def shape(self) -> Shape:
        return self.tensor_shape

    def out_dtype(self) -> str:
        return DTYPES[getattr(self, "dtype", "float")]

    def elementwise_flops(self) -> int:
        return 0

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        return []

    def receptive_field(self, fields):
        return None  # no relation to the input's positions


class _Held(_Tensor):
    """Parameter and Buffer: a tensor the built module holds at the layer's path."""

    HELD = True

    def torch_module(self) -> Any:
        import torch

        from ..torch.modules import HeldTensor

        if self.params():  # as torchvision's ViT draws its position embedding
            return HeldTensor(torch.nn.Parameter(torch.empty(self.tensor_shape).normal_(std=0.02)))
        if self.out_dtype() == INT:
            return HeldTensor(torch.zeros(self.tensor_shape, dtype=torch.int64))
        return HeldTensor(torch.ones(self.tensor_shape))


@register
class Parameter(_Held):
    """A learned tensor (nn.Parameter) at the layer's path: class tokens, position
    embeddings, layer scales, bias tables."""

    PARAMS_FORMULA = "prod(shape)"

    def params(self) -> int:
        return prod(self.tensor_shape)

    def weight_shape(self) -> Shape:
        return self.tensor_shape


@register
class Buffer(Parameterless, _Held):
    """A registered constant (torch's register_buffer): index tables, fixed masks."""

    dtype = Arg(Choice(tuple(DTYPES)), "float", doc="float (the analysis dtype) or int64")

    def buffers(self) -> int:
        return prod(self.tensor_shape)

    def int_buffers(self) -> int:
        return self.buffers() if self.dtype == "int64" else 0


@register
class Constant(Parameterless, _Tensor):
    """A tensor computed in forward and held by nothing (Swin's shift mask): ones here."""

    dtype = Arg(Choice(tuple(DTYPES)), "float", doc="float (the analysis dtype) or int64")

    def torch_module(self) -> Any:
        from ..torch.modules import ConstantTensor

        return ConstantTensor(self.tensor_shape, self.dtype == "int64")
