"""Core layer types: norms, activations, Linear/Bilinear, shape movers, dropout, merges.

Each case states the analytic shape, params, buffers, MACs and element-wise FLOPs as
a derivation, and the same layer's ``torch_module()`` is run on a small CPU tensor
to prove shape, params and buffers against torch.
"""

from __future__ import annotations

import re
import subprocess
import sys
from fractions import Fraction
from math import prod

import pytest

from conftest import analyze_text
from netcalc.errors import Mark, SpecError
from netcalc.layers import REGISTRY
from netcalc.layers.activation import _Elementwise
from netcalc.layers.attention import causal_kept
from netcalc.layers.base import (CONTRACT, FLOAT, INT, AttentionCache, Ctx, DataMovement, Layer,
                                 MacFree, Parameterless, TensorInfo, register)
from netcalc.rf import GLOBAL, RF, WHOLE, RFDim

F = Fraction


def make(type_: str, args: dict | None = None) -> Layer:
    return REGISTRY[type_](args, Ctx("layer", Mark(3, 5)))


def infer(layer: Layer, *shapes, dtype: str = FLOAT) -> tuple[int, ...]:
    outs = layer.infer([TensorInfo(tuple(s), dtype) for s in shapes])
    return outs[0].shape


def torch_check(layer: Layer, *shapes, dtype: str = FLOAT) -> None:
    """Run the layer's torch module on random tensors: shape, params, buffers agree."""
    torch = pytest.importorskip("torch")
    module = layer.torch_module().eval()
    if dtype == INT:
        xs = [torch.randint(0, 5, tuple(s)) for s in shapes]
    else:
        xs = [torch.randn(*s) for s in shapes]
    with torch.no_grad():
        out = module(*xs)
    assert tuple(out.shape) == layer.y
    assert sum(p.numel() for p in module.parameters()) == layer.params()
    assert sum(b.numel() for b in module.buffers()) == layer.buffers()


def fails(message: str):
    return pytest.raises(SpecError, match=re.escape(message))


# --------------------------------------------------------------------------- cases
# (type, args, input shapes, output shape, params, buffers, macs, elementwise flops)
X4 = (2, 3, 4, 5)  # numel 120
CASES = [
    # BatchNorm with running stats: x*scale+shift = 2/elem; 2C params; 2C+1 buffers
    ("BatchNorm1d", {}, [(4, 6)], (4, 6), 2 * 6, 2 * 6 + 1, 0, 24 * 2),
    ("BatchNorm1d", {"track_running_stats": False}, [(4, 6, 5)], (4, 6, 5), 12, 0, 0,
     120 * (5 + 2)),
    ("BatchNorm2d", {}, [X4], X4, 2 * 3, 2 * 3 + 1, 0, 120 * 2),
    ("BatchNorm2d", {"affine": False, "num_features": 3}, [X4], X4, 0, 7, 0, 120 * 2),
    ("BatchNorm3d", {"momentum": 0.2, "eps": 1e-3}, [(2, 3, 2, 4, 5)], (2, 3, 2, 4, 5),
     6, 7, 0, 240 * 2),
    # GroupNorm: input statistics 5/elem + affine 2/elem
    ("GroupNorm", {"num_groups": 2}, [(2, 4, 3, 3)], (2, 4, 3, 3), 2 * 4, 0, 0, 72 * 7),
    ("GroupNorm", {"num_groups": 4, "affine": False}, [(2, 4, 6)], (2, 4, 6), 0, 0, 0, 48 * 5),
    # InstanceNorm: no affine, no running stats by default -> statistics 5/elem
    ("InstanceNorm1d", {}, [(2, 3, 5)], (2, 3, 5), 0, 0, 0, 30 * 5),
    ("InstanceNorm2d", {"affine": True, "track_running_stats": True}, [X4], X4, 6, 7, 0, 120 * 2),
    ("InstanceNorm2d", {"affine": True}, [X4], X4, 6, 0, 0, 120 * (5 + 2)),
    ("InstanceNorm3d", {}, [(2, 3, 2, 4, 5)], (2, 3, 2, 4, 5), 0, 0, 0, 240 * 5),
    # LayerNorm: prod(ns) * (weight + bias); 5/elem + 1 weight + 1 bias
    ("LayerNorm", {}, [(2, 5, 8)], (2, 5, 8), 8 + 8, 0, 0, 80 * 7),
    ("LayerNorm", {"normalized_shape": [5, 8]}, [(2, 5, 8)], (2, 5, 8), 40 + 40, 0, 0, 80 * 7),
    ("LayerNorm", {"normalized_shape": 8, "bias": False}, [(2, 5, 8)], (2, 5, 8), 8, 0, 0,
     80 * 6),
    ("LayerNorm", {"elementwise_affine": False}, [(2, 8)], (2, 8), 0, 0, 0, 16 * 5),
    # LayerNorm2d (torchvision's): LayerNorm over the channels at each position
    ("LayerNorm2d", {}, [X4], X4, 3 + 3, 0, 0, 120 * 7),
    ("LayerNorm2d", {"normalized_shape": 3, "bias": False}, [X4], X4, 3, 0, 0, 120 * 6),
    # RMSNorm: square+add+scale = 3/elem, +1 weight
    ("RMSNorm", {}, [(2, 5, 8)], (2, 5, 8), 8, 0, 0, 80 * 4),
    ("RMSNorm", {"normalized_shape": [5, 8], "eps": 1e-6}, [(2, 5, 8)], (2, 5, 8), 40, 0, 0,
     80 * 4),
    ("RMSNorm", {"elementwise_affine": False}, [(2, 8)], (2, 8), 0, 0, 0, 16 * 3),
    # LRN: square, window average (size), *alpha, +k, **beta, divide = size+5 /elem
    ("LocalResponseNorm", {"size": 3}, [(2, 6, 4, 4)], (2, 6, 4, 4), 0, 0, 0, 192 * (3 + 5)),
    # Linear over the last dim: MACs = numel(out) * in_features; bias = numel(out) adds
    ("Linear", {"out_features": 7}, [(2, 5)], (2, 7), 7 * 5 + 7, 0, 2 * 7 * 5, 2 * 7),
    ("Linear", {"out_features": 7, "in_features": 5}, [X4], (2, 3, 4, 7), 7 * 5 + 7, 0,
     (2 * 3 * 4 * 7) * 5, 2 * 3 * 4 * 7),
    ("Linear", {"out_features": 7, "bias": False}, [(2, 9, 5)], (2, 9, 7), 35, 0,
     2 * 9 * 7 * 5, 0),
    # Bilinear: weight (out, in1, in2); MACs numel(out)*in1*in2
    ("Bilinear", {"out_features": 6}, [(2, 3, 4), (2, 3, 5)], (2, 3, 6), 6 * 4 * 5 + 6, 0,
     (2 * 3 * 6) * 4 * 5, 2 * 3 * 6),
    # data movers: no params, no arithmetic
    ("Identity", {}, [X4], X4, 0, 0, 0, 0),
    ("Flatten", {}, [X4], (2, 60), 0, 0, 0, 0),
    ("Flatten", {"start_dim": 2}, [X4], (2, 3, 20), 0, 0, 0, 0),
    ("Flatten", {"start_dim": 1, "end_dim": 2}, [X4], (2, 12, 5), 0, 0, 0, 0),
    ("Flatten", {"start_dim": -2, "end_dim": -2}, [X4], X4, 0, 0, 0, 0),
    ("Unflatten", {"dim": 1, "unflattened_size": [3, -1]}, [(2, 12, 5)], (2, 3, 4, 5),
     0, 0, 0, 0),
    ("Unflatten", {"dim": -1, "unflattened_size": [5, 1]}, [X4], (2, 3, 4, 5, 1), 0, 0, 0, 0),
    ("Reshape", {"shape": [4, -1]}, [X4], (2, 4, 15), 0, 0, 0, 0),
    ("Reshape", {"shape": [60]}, [X4], (2, 60), 0, 0, 0, 0),
    ("Permute", {"dims": [0, 2, 3, 1]}, [X4], (2, 4, 5, 3), 0, 0, 0, 0),
    ("Permute", {"dims": [0, -1, 1, 2]}, [X4], (2, 5, 3, 4), 0, 0, 0, 0),
    ("Dropout", {"p": 0.1}, [X4], X4, 0, 0, 0, 0),
    ("Dropout1d", {}, [(2, 3, 5)], (2, 3, 5), 0, 0, 0, 0),
    ("Dropout2d", {"p": 0.3, "inplace": True}, [X4], X4, 0, 0, 0, 0),
    ("Dropout3d", {}, [(2, 3, 2, 4, 5)], (2, 3, 2, 4, 5), 0, 0, 0, 0),
    ("AlphaDropout", {"p": 0.2}, [X4], X4, 0, 0, 0, 0),
    ("FeatureAlphaDropout", {}, [X4], X4, 0, 0, 0, 0),
    # merges: (n-1) element-wise ops per output element
    ("Add", {}, [X4, X4], X4, 0, 0, 0, 120 * 1),
    ("Add", {}, [X4, X4, X4], X4, 0, 0, 0, 120 * 2),
    ("Add", {}, [X4, (2, 3, 1, 1)], X4, 0, 0, 0, 120),
    ("Add", {}, [(5,), X4], X4, 0, 0, 0, 120),
    ("Add", {}, [(2, 3, 1, 5), (2, 1, 4, 1)], X4, 0, 0, 0, 120),
    ("Mul", {}, [X4, (2, 3, 1, 1)], X4, 0, 0, 0, 120),
    ("Mul", {}, [(2, 1, 4, 5), (2, 3, 1, 1), (5,)], X4, 0, 0, 0, 120 * 2),
    ("Concat", {}, [X4, (2, 6, 4, 5)], (2, 9, 4, 5), 0, 0, 0, 0),
    ("Concat", {"dim": -1}, [X4, (2, 3, 4, 1), (2, 3, 4, 2)], (2, 3, 4, 8), 0, 0, 0, 0),
    ("Concat", {}, [X4], X4, 0, 0, 0, 0),
    # MatMul: prod(batch) * M * K * N
    ("MatMul", {}, [(2, 4, 8), (2, 8, 6)], (2, 4, 6), 0, 0, 2 * 4 * 8 * 6, 0),
    ("MatMul", {}, [(2, 1, 4, 8), (3, 8, 6)], (2, 3, 4, 6), 0, 0, (2 * 3) * 4 * 8 * 6, 0),
    ("MatMul", {}, [(2, 4, 8), (8, 6)], (2, 4, 6), 0, 0, 2 * 4 * 8 * 6, 0),
    ("MatMul", {}, [(2, 4, 8), (8,)], (2, 4), 0, 0, 2 * 4 * 8 * 1, 0),
    ("MatMul", {}, [(8,), (2, 8, 6)], (2, 6), 0, 0, 2 * 1 * 8 * 6, 0),
]


def _id(case) -> str:
    type_, args, shapes = case[:3]
    return f"{type_}-{'-'.join(f'{k}={v}' for k, v in args.items())}-{shapes}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_analytic_counts(case):
    type_, args, shapes, out, params, buffers, macs, eflops = case
    layer = make(type_, args)
    assert infer(layer, *shapes) == out
    assert layer.params() == params
    assert layer.buffers() == buffers
    assert layer.macs() == macs
    assert layer.elementwise_flops() == eflops
    assert layer.flops() == 2 * macs + eflops


@pytest.mark.torch
@pytest.mark.parametrize("case", CASES, ids=_id)
def test_matches_torch(case):
    type_, args, shapes = case[:3]
    layer = make(type_, args)
    infer(layer, *shapes)
    torch_check(layer, *shapes)


# ---------------------------------------------------------------------- activations
# (type, args, FLOPs per element) -- the table of netcalc.layers.activation
ACTIVATIONS = [
    ("ReLU", {}, 1), ("ReLU", {"inplace": True}, 1), ("ReLU6", {}, 2),
    ("LeakyReLU", {"negative_slope": 0.2}, 2), ("PReLU", {}, 2),
    ("PReLU", {"num_parameters": 3, "init": 0.1}, 2), ("ELU", {"alpha": 0.5}, 4),
    ("SELU", {}, 5), ("CELU", {"alpha": 2.0}, 5), ("GELU", {}, 5),
    ("GELU", {"approximate": "tanh"}, 9), ("SiLU", {}, 4), ("Mish", {}, 5),
    ("Sigmoid", {}, 3), ("Tanh", {}, 1), ("Hardtanh", {"min_val": -2, "max_val": 2.5}, 2),
    ("Hardswish", {}, 5), ("Hardsigmoid", {}, 4),
    ("Softplus", {"beta": 2.0, "threshold": 10.0}, 6), ("Softmax", {}, 5),
    ("Softmax", {"dim": 1}, 5), ("LogSoftmax", {"dim": -2}, 5), ("Softmin", {}, 6),
    ("Exp", {}, 1), ("Clamp", {"max": 4.6}, 1), ("Clamp", {"min": -1.0, "max": 1.0}, 2),
    ("Normalize", {}, 3), ("Normalize", {"dim": -1, "p": 1.0}, 3),  # + 2 per vector
]


@pytest.mark.parametrize("type_,args,cost", ACTIVATIONS,
                         ids=[f"{t}-{a}" for t, a, _ in ACTIVATIONS])
def test_activation(type_, args, cost):
    layer = make(type_, args)
    assert infer(layer, X4) == X4
    assert layer.macs() == 0
    vectors = prod(X4) // X4[layer.axis(len(X4))] if type_ == "Normalize" else 0
    assert layer.elementwise_flops() == prod(X4) * cost + 2 * vectors  # root, max(., eps)
    assert layer.params() == args.get("num_parameters", 1 if type_ == "PReLU" else 0)
    assert layer.buffers() == 0
    torch_check(layer, X4)


def test_every_activation_is_covered_and_shares_the_base():
    types = {name for name, cls in REGISTRY.items() if issubclass(cls, _Elementwise)}
    assert types == {t for t, _, _ in ACTIVATIONS}


def test_clamp_needs_a_bound():
    with fails("Clamp needs min or max"):
        make("Clamp", {})


def test_prelu_weight_is_tieable():
    layer = make("PReLU", {"num_parameters": 3})
    infer(layer, X4)
    assert layer.weight_shape() == (3,)


def test_linear_weight_shape_is_out_in():
    layer = make("Linear", {"out_features": 7})
    infer(layer, (2, 5))
    assert layer.weight_shape() == (7, 5)


def test_layernorm_infers_normalized_shape_for_torch():
    layer = make("LayerNorm")
    infer(layer, (2, 5, 8))
    assert layer.normalized_shape == (8,)
    assert layer.torch_module().normalized_shape == (8,)


# --------------------------------------------------------------------------- errors
ERRORS = [
    ("Add", {}, [(1, 64, 8, 8), (1, 128, 8, 8)],
     "shapes [1, 64, 8, 8] and [1, 128, 8, 8] do not broadcast (dim -3: 64 vs 128)"),
    ("Add", {}, [X4, X4, (2, 3, 4, 6)],
     "shapes [2, 3, 4, 5] and [2, 3, 4, 6] do not broadcast (dim -1: 5 vs 6)"),
    ("Mul", {}, [(2, 3), (2, 4)], "shapes [2, 3] and [2, 4] do not broadcast"),
    ("Concat", {}, [(1, 64, 8, 8), (1, 32, 4, 4)],
     "input 2 has shape [1, 32, 4, 4] but input 1 has [1, 64, 8, 8]: all dims except dim 1 "
     "must match (dim 2: 4 vs 8)"),
    ("Concat", {}, [(1, 64, 8, 8), (1, 32, 8)], "Concat needs inputs of the same rank"),
    ("Concat", {"dim": 0}, [X4, X4], "Concat along the batch dim (dim 0) is not supported"),
    ("Concat", {"dim": 4}, [X4, X4], "dim=4 is out of range for a 4-d input"),
    ("Reshape", {"shape": [5, 5]}, [(2, 3, 4, 2)],
     "cannot reshape [3, 4, 2] (24 elements per sample) into [5, 5] (25 elements)"),
    ("Reshape", {"shape": [5, -1]}, [(2, 3, 4, 2)],
     "cannot reshape [3, 4, 2] (24 elements per sample) into [5, -1]: 24 is not divisible by 5"),
    ("Unflatten", {"dim": 1, "unflattened_size": [5, 2]}, [(2, 12)],
     "cannot reshape dim 1 of size 12 (input [2, 12]) into [5, 2] (10 elements)"),
    ("Unflatten", {"dim": 0, "unflattened_size": [1, 2]}, [(2, 12)],
     "Unflatten would split the batch dim"),
    ("Flatten", {"start_dim": 0}, [X4], "Flatten would merge the batch dim"),
    ("Flatten", {"start_dim": 3, "end_dim": 2}, [X4], "start_dim=3 comes after end_dim=2"),
    ("Flatten", {"end_dim": 4}, [X4], "end_dim=4 is out of range for a 4-d input"),
    ("Permute", {"dims": [0, 1, 1, 2]}, [X4], "dims [0, 1, 1, 2] is not a permutation"),
    ("Permute", {"dims": [0, 2, 1]}, [X4], "dims [0, 2, 1] has 3 entries but the input has 4"),
    ("PReLU", {"num_parameters": 8}, [(2, 16, 4, 4)],
     "PReLU num_parameters=8 but the input [2, 16, 4, 4] has 16 channels (dim 1)"),
    ("LayerNorm", {"normalized_shape": [4, 8]}, [(2, 5, 8)],
     "normalized_shape [4, 8] does not match the trailing dims of the input [2, 5, 8]"),
    ("LayerNorm", {"normalized_shape": [2, 5, 8]}, [(2, 5, 8)],
     "normalized_shape [2, 5, 8] does not match the trailing dims of the input [2, 5, 8] "
     "(the batch dim cannot be normalised over)"),
    ("RMSNorm", {"normalized_shape": 7}, [(2, 8)],
     "normalized_shape [7] does not match the trailing dims of the input [2, 8]"),
    ("GroupNorm", {"num_groups": 3}, [(2, 4, 5)], "num_channels=4 is not divisible by num_groups=3"),
    ("BatchNorm2d", {}, [(2, 3, 5)], "BatchNorm2d needs a 4-d (N, C, H, W) input, got [2, 3, 5]"),
    ("BatchNorm1d", {"num_features": 4}, [(2, 3)], "num_features=4 but the input gives 3"),
    ("InstanceNorm1d", {}, [(2, 3)], "InstanceNorm1d needs a 3-d (N, C, L) input"),
    ("InstanceNorm3d", {}, [X4], "InstanceNorm3d needs a 5-d (N, C, D, H, W) input, got "
     "[2, 3, 4, 5]"),
    ("BatchNorm1d", {}, [X4], "BatchNorm1d needs a 2-d (N, C) or 3-d (N, C, L) input"),
    ("LocalResponseNorm", {"size": 2}, [(2, 3)], "LocalResponseNorm needs an (N, C, *) input"),
    ("Linear", {"out_features": 4, "in_features": 6}, [(2, 5)], "in_features=6 but the input gives 5"),
    ("Linear", {"out_features": 4}, [(5,)], "Linear needs an (N, *, in_features) input"),
    ("Bilinear", {"out_features": 4}, [(2, 3, 4), (2, 2, 5)],
     "Bilinear needs inputs (N, *, in1) and (N, *, in2) with equal leading dims"),
    ("MatMul", {}, [(2, 4, 8), (2, 6, 4)],
     "sequence-length/inner dims mismatch: [2, 4, 8] @ [2, 6, 4] (8 vs 6)"),
    ("MatMul", {}, [(2, 4, 8), (3, 8, 4)],
     "shapes [2, 4, 8] and [3, 8, 4] do not broadcast (dim -3: 2 vs 3)"),
    ("MatMul", {}, [(8,), (8,)], "MatMul of two 1-d inputs"),
    ("Softmax", {"dim": 4}, [X4], "dim=4 is out of range for a 4-d input"),
    ("Dropout2d", {}, [(2, 3, 4)], "Dropout2d needs a 4-d (N, C, H, W) input"),
    ("Add", {}, [X4], "Add takes 2 or more input(s), got 1"),
    # one batch-first check for recurrent and attention layers
    ("LSTM", {"hidden_size": 4}, [(2, 8)],
     "LSTM needs a 3-d input (N, L, features), batch first, got [2, 8]"),
    ("MultiheadAttention", {"num_heads": 2}, [(2, 5, 8), (2, 5, 8, 1)],
     "MultiheadAttention needs 3-d inputs (N, L, E), batch first; the key is [2, 5, 8, 1]"),
    ("TransformerDecoderLayer", {"nhead": 2}, [(2, 5, 8), (5, 8)],
     "TransformerDecoderLayer needs 3-d inputs (N, L, d_model), batch first; the memory "
     "is [5, 8]"),
]


@pytest.mark.parametrize("type_,args,shapes,message", ERRORS,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(ERRORS)])
def test_shape_errors(type_, args, shapes, message):
    layer = make(type_, args)
    with fails(message) as info:
        infer(layer, *shapes)
    assert info.value.message.startswith("layer: ")  # the layer's name leads the message


ARG_ERRORS = [
    ("Reshape", {"shape": [-1, -1]}, "shape [-1, -1]: sizes must be >= 1, with at most one -1"),
    ("Reshape", {"shape": [0, 4]}, "sizes must be >= 1"),
    ("Unflatten", {"dim": 1, "unflattened_size": [-1, 3, -1]}, "at most one -1"),
    ("Hardtanh", {"min_val": 1, "max_val": 0}, "max_val=0 must be greater than min_val=1"),
    ("GroupNorm", {"num_groups": 3, "num_channels": 4}, "num_channels=4 is not divisible"),
    ("GELU", {"approximate": "fast"}, "expected one of none, tanh"),
    ("Dropout", {"p": 1.5}, "argument p: must be <= 1.0"),
    ("Linear", {}, "Linear needs argument 'out_features'"),
    ("Identity", {"foo": 1}, "Identity has no argument 'foo'"),
    ("Reshape", {}, "Reshape needs argument 'shape'"),
    ("Reshape", {"target_shape": [4]}, "Reshape has no argument 'target_shape'"),
    ("Softmax", {"dims": 1}, "Softmax has no argument 'dims' (did you mean dim?)"),
]


@pytest.mark.parametrize("type_,args,message", ARG_ERRORS,
                         ids=[f"{e[0]}-{i}" for i, e in enumerate(ARG_ERRORS)])
def test_argument_errors(type_, args, message):
    with fails(message):
        make(type_, args)


def test_dtypes():
    # data movers accept token ids and keep their dtype
    for type_, args in [("Reshape", {"shape": [2, 3]}), ("Flatten", {}), ("Identity", {}),
                        ("Permute", {"dims": [0, 2, 1]}), ("Unflatten",
                                                           {"dim": 1, "unflattened_size": [3, 2]})]:
        layer = make(type_, args)
        outs = layer.infer([TensorInfo((4, 6, 1) if type_ != "Reshape" else (4, 6), INT)])
        assert outs[0].dtype == INT, type_
    cat = make("Concat", {"dim": -1})
    assert cat.infer([TensorInfo((2, 3), INT), TensorInfo((2, 4), INT)])[0] == \
        TensorInfo((2, 7), INT)
    torch_check(cat, (2, 3), (2, 4), dtype=INT)
    with fails("Concat inputs mix dtypes (float, int64)"):
        make("Concat", {"dim": -1}).infer([TensorInfo((2, 3), INT), TensorInfo((2, 4))])
    for type_, args in [("Linear", {"out_features": 3}), ("ReLU", {}), ("LayerNorm", {}),
                        ("Add", {}), ("Dropout", {})]:
        n = 2 if type_ == "Add" else 1
        with fails(f"{type_} needs a float input, got int64"):
            make(type_, args).infer([TensorInfo((2, 6), INT)] * n)


# -------------------------------------------------------------------- receptive fields
FIELD = RF((RFDim(F(3), F(2), F(1)), RFDim(F(5), F(2), F(2))))
H, W = FIELD.dims


@pytest.mark.parametrize("type_,args,shapes,expected", [
    ("ReLU", {}, [X4], FIELD),
    ("GELU", {}, [X4], FIELD),
    ("PReLU", {"num_parameters": 3}, [X4], FIELD),
    ("BatchNorm2d", {}, [X4], FIELD),
    ("GroupNorm", {"num_groups": 1}, [X4], FIELD),
    ("InstanceNorm2d", {}, [X4], FIELD),
    ("LayerNorm", {"normalized_shape": [3, 4, 5]}, [X4], FIELD),  # statistics ignored
    ("RMSNorm", {}, [X4], FIELD),
    ("LocalResponseNorm", {"size": 3}, [X4], FIELD),
    ("Softmax", {"dim": 1}, [X4], FIELD),       # across channels: point-wise
    ("Softmax", {}, [X4], RF((H, WHOLE))),      # along W: mixes positions along W only
    ("LogSoftmax", {"dim": 2}, [X4], RF((WHOLE, W))),
    ("Dropout2d", {}, [X4], FIELD),
    ("Identity", {}, [X4], FIELD),
    ("Linear", {"out_features": 3}, [X4], RF((H, WHOLE))),  # mixes W
    # a reshape moves no position: H and W merged into one axis keep their coordinates
    # (H = value // 5 % 4, W = value % 5 of that axis); one cut in pieces is global
    ("Flatten", {}, [X4], RF(FIELD.dims, axes=(-1, -1), packing=((5, 4), (1, 5)))),
    ("Flatten", {"start_dim": 1, "end_dim": 1}, [X4], FIELD),
    ("Flatten", {"start_dim": 2}, [X4], RF(FIELD.dims, axes=(-1, -1),
                                           packing=((5, 4), (1, 5)))),
    ("Unflatten", {"dim": 1, "unflattened_size": [3, 1]}, [X4], FIELD),
    # H split in 2 x 2: its digits of weight 1 (axis -2) and 2 (axis -3)
    ("Unflatten", {"dim": 2, "unflattened_size": [2, 2]}, [X4],
     RF(FIELD.dims, axes=(-2, -1), outer=(((-3, 1, 2, 2),), None))),
    ("Reshape", {"shape": [3, 4, 5]}, [X4], FIELD),
    ("Reshape", {"shape": [1, 3, 4, 5]}, [X4], FIELD),   # trailing (4, 5) unchanged
    ("Reshape", {"shape": [12, 5]}, [X4], RF(FIELD.dims, packing=((1, 4), None))),
    # a translation in the interior: unit h reads unit h - 1 (W untouched)
    ("Roll", {"shifts": 1, "dims": 2}, [X4], RF((RFDim(H.size, H.stride, H.start - H.stride), W))),
    ("Mean", {"dim": 3, "keepdim": True}, [X4], RF((H, WHOLE))),
    ("Sum", {"dim": 3}, [X4], RF((H, WHOLE), axes=(-1, None))),  # H is now the last dim
    ("Permute", {"dims": [1, 0, 2, 3]}, [X4], FIELD),
    # a permutation moves no position: the field follows H and W to their new axes
    ("Permute", {"dims": [0, 1, 3, 2]}, [X4], RF(FIELD.dims, axes=(-1, -2))),
    ("Permute", {"dims": [0, 2, 3, 1]}, [X4], RF(FIELD.dims, axes=(-3, -2))),
    ("MatMul", {}, [X4, (2, 3, 5, 4)], GLOBAL),
])
def test_receptive_field(type_, args, shapes, expected):
    layer = make(type_, args)
    infer(layer, *shapes)
    assert layer.receptive_field([FIELD] * len(shapes)) == expected


@pytest.mark.parametrize("type_,args,shapes", [
    ("Linear", {"out_features": 3}, [(2, 5)]),
    ("MatMul", {}, [(2, 4, 8), (2, 8, 6)]),
    ("Bilinear", {"out_features": 3}, [(2, 4), (2, 5)]),
    ("Softmax", {}, [(2, 5)]),
    ("Flatten", {}, [(2, 3, 4)]),
    ("Add", {}, [(2, 5), (2, 5)]),
])
def test_no_field_stays_none(type_, args, shapes):
    layer = make(type_, args)
    infer(layer, *shapes)
    assert layer.receptive_field([None] * len(shapes)) is None


def test_global_stays_global():
    for type_, args in [("ReLU", {}), ("Identity", {}), ("Reshape", {"shape": [3, 4, 5]}),
                        ("Permute", {"dims": [0, 1, 2, 3]}), ("BatchNorm2d", {})]:
        layer = make(type_, args)
        infer(layer, X4)
        assert layer.receptive_field([GLOBAL]) == GLOBAL


def test_merge_fields():
    other = RF((RFDim(F(7), F(2), F(1)), RFDim(F(5), F(2), F(2))))
    add = make("Add")
    infer(add, X4, X4)
    assert add.receptive_field([FIELD, FIELD]) == FIELD
    union = add.receptive_field([FIELD, other])
    assert union.dims[0].size == 7 and union.aligned
    assert add.receptive_field([FIELD, GLOBAL]) == GLOBAL
    cat = make("Concat")
    infer(cat, X4, X4)
    assert cat.receptive_field([FIELD, FIELD]) == FIELD
    along_w = make("Concat", {"dim": 3})
    infer(along_w, X4, X4)
    rf = along_w.receptive_field([FIELD, FIELD])
    assert rf.dims == FIELD.dims and not rf.aligned
    mm = make("MatMul")
    infer(mm, (2, 4, 8), (2, 8, 6))
    # H is contracted (mixed: global), W moves to the output's columns
    assert mm.receptive_field([None, FIELD]) == RF((WHOLE, W))
    assert mm.receptive_field([FIELD, None]) == RF((H, WHOLE))  # W contracted, H the rows


# ---------------------------------------------------------------------- through a spec
def test_spec_uses_primary_arguments():
    report = analyze_text("""
input: [3, 8, 8]
layers:
  - BatchNorm2d
  - ReLU
  - {Reshape: [3, 64], name: flat}
  - {Permute: [0, 2, 1]}
  - LayerNorm
  - Linear: 10
  - {Softmax: -1}
  - {Linear: 10, from: flat}
  - {Concat: 1, from: [softmax_6, linear_7]}
""", batch=2)
    rows = {r.name: r for r in report.layers}
    assert rows["flat"].shape == (2, 3, 64)
    # (8, 8) merged into one axis of 64: H = value // 8, W = value % 8 along it
    assert rows["flat"].rf == RF(RF.identity(2).dims, axes=(-1, -1), packing=((8, 8), (1, 8)))
    assert rows["linear_5"].rf == RF.identity(2).placed((1, 1), 3, packing=((8, 8), (1, 8)))
    assert rows["softmax_6"].rf == rows["linear_5"].rf  # over the features: point-wise
    assert rows["linear_7"].rf == GLOBAL  # mixes the 64 positions
    assert rows["relu_1"].rf == RF.identity(2)
    assert rows["batchnorm2d_0"].buffers == 2 * 3 + 1
    assert rows["layernorm_4"].params == 2 * 3
    assert rows["linear_5"].macs == 2 * 64 * 3 * 10  # numel(out) * in_features
    assert rows["linear_7"].macs == 2 * 3 * 10 * 64
    assert report.outputs == {"concat_8": (2, 64 + 3, 10)}


# ---------------------------------------------------------------------- registry-wide
@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registered_class_defines_the_contract_and_a_docstring(name):
    cls = REGISTRY[name]
    for method in CONTRACT:
        assert getattr(cls, method) is not getattr(Layer, method), f"{name} lacks {method}"
    doc = cls.__dict__.get("__doc__")
    assert doc and doc.strip(), f"{name} has no docstring of its own"


def _complete(base: type, **skip: bool) -> type:
    """A layer class deriving from ``base`` that defines every rule but those in ``skip``."""
    body = {"__doc__": "A test layer.", "PARAMS_FORMULA": "p", "MACS_FORMULA": "m",
            "shape": lambda self, x: x, "params": lambda self: 1, "macs": lambda self: 1,
            "elementwise_flops": lambda self: 1, "receptive_field": lambda self, f: f[0],
            "torch_module": lambda self: None, "backward_macs": lambda self, g: 1,
            "saved": lambda self, g, d: []}
    return type("Probe", (base,), {k: v for k, v in body.items() if not skip.get(k)})


def test_register_refuses_a_missing_rule_even_next_to_a_declared_zero():
    for base, skip, missing in [
        (Layer, {"params": True}, "params"),
        (Layer, {"saved": True}, "saved"),
        (MacFree, {"saved": True, "params": True}, "params, saved"),  # MacFree: backward 0
        (Parameterless, {"params": True, "macs": True}, "macs"),  # a zero does not spread
        (MacFree, {"macs": True, "params": True}, "params"),
        (DataMovement, {"params": True, "macs": True, "elementwise_flops": True,
                        "shape": True}, "shape"),
        (Layer, {"PARAMS_FORMULA": True, "MACS_FORMULA": True},
         "PARAMS_FORMULA, MACS_FORMULA"),
    ]:
        with pytest.raises(TypeError, match=f"layer Probe does not define {missing}$"):
            register(_complete(base, **skip))
    assert "Probe" not in REGISTRY
    probe = _complete(Parameterless, params=True, PARAMS_FORMULA=True)
    assert probe(None, Ctx("p", Mark(1, 1))).params() == 0 and probe.PARAMS_FORMULA == "0"


# the types without parameters: whole modules (but PReLU, which learns its slope) and these
PARAMETERLESS_MODULES = ("activation", "pool", "pad", "shape", "resample")
PARAMETERLESS = {"Add", "Mul", "Concat", "MatMul", "ScaledDotProductAttention",
                 "LocalResponseNorm"}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_zero_counts_are_declared_by_a_base(name):
    """A type with no parameters (MACs) inherits Parameterless (MacFree) and keeps its zero:
    no override that would contradict the declaration."""
    cls = REGISTRY[name]
    if issubclass(cls, Parameterless):
        assert cls.params is Parameterless.params and cls.PARAMS_FORMULA == "0"
        assert cls.weight_shape is Layer.weight_shape  # None: nothing to tie or prune
    if issubclass(cls, MacFree):
        assert cls.macs is MacFree.macs
    module = cls.__module__.rsplit(".", 1)[1]
    if name in PARAMETERLESS or (module in PARAMETERLESS_MODULES and name != "PReLU"):
        assert issubclass(cls, Parameterless)


def test_argument_kept_under_another_attribute():
    """Reshape's ``shape`` argument is stored as ``target_shape``: ``shape`` is the rule."""
    arg = REGISTRY["Reshape"].args["shape"]
    assert (arg.name, arg.attr) == ("shape", "target_shape")
    layer = make("Reshape", {"shape": [4, -1]})
    assert layer.target_shape == (4, -1)
    assert infer(layer, X4) == (2, 4, 15)
    assert layer.arg_values() == {"shape": (4, -1), "batch": True}
    assert layer.arg_values() == make("Reshape", {"shape": [4, -1]}).arg_values()
    torch_check(layer, X4)
    whole = make("Reshape", {"shape": [-1, 5], "batch": False})  # no batch dim: all of it
    assert infer(whole, X4) == (prod(X4) // 5, 5)
    torch_check(whole, X4)


def test_sequence_hooks():
    """What the sequence section reads off each layer (netcalc.sequence), without type names."""
    q, k, v = (2, 4, 10, 8), (2, 2, 12, 8), (2, 2, 12, 6)  # 4 query heads, 2 kv heads
    sdpa = make("ScaledDotProductAttention", {"enable_gqa": True})
    infer(sdpa, q, k, v)
    assert sdpa.attention_terms() == [(12, 4 * 8)]  # key length, heads x head dim
    assert sdpa.causal_macs() is None
    assert sdpa.attention_caches() == [AttentionCache(0, (1, 2), 2 * 8 + 2 * 6, 12, False)]
    causal = make("ScaledDotProductAttention", {"enable_gqa": True, "is_causal": True})
    infer(causal, q, k, v)
    assert causal.macs() == 2 * 4 * 10 * 12 * (8 + 6)
    assert causal.causal_macs() == 2 * 4 * causal_kept(10, 12) * (8 + 6) == 2 * 4 * 55 * 14
    # k and v of the 2 kv heads per key position
    assert causal.attention_caches() == [AttentionCache(0, (1, 2), 2 * 8 + 2 * 6, 12, True)]

    mha = make("MultiheadAttention", {"num_heads": 2})
    infer(mha, (2, 5, 8), (2, 7, 8))
    assert mha.attention_terms() == [(7, 8)]
    assert mha.causal_macs() is None  # no causal mask; k and v from input 1, projected
    assert mha.attention_caches() == [AttentionCache(0, (1,), 2 * 8, 7, False)]
    enc = make("TransformerEncoderLayer", {"nhead": 2, "dim_feedforward": 16})
    infer(enc, (2, 5, 8))
    assert enc.attention_terms() == [(5, 8)]
    assert enc.attention_caches() == [AttentionCache(0, (0,), 2 * 8, 5, False)]
    dec = make("TransformerDecoderLayer", {"nhead": 2, "dim_feedforward": 16})
    infer(dec, (2, 5, 8), (2, 9, 8))
    assert dec.attention_terms() == [(5, 8), (9, 8)]
    # causal self-attention over tgt; cross-attention over the memory
    assert dec.attention_caches() == [AttentionCache(0, (0,), 2 * 8, 5, True),
                                      AttentionCache(0, (1,), 2 * 8, 9, False)]

    relu = make("ReLU")
    infer(relu, X4)
    assert (relu.attention_terms(), relu.causal_macs(), relu.attention_caches()) == ([], None, [])
    assert {n for n, cls in REGISTRY.items() if cls.EMBEDDING} == {"Embedding", "EmbeddingBag"}


def test_analytic_core_does_not_import_torch():
    code = ("import sys, netcalc, netcalc.layers; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
