"""Pooling, padding and resampling layers (layers/pool.py, pad.py, resample.py).

Shapes, params and buffers are compared with torch on small CPU tensors (each module
built by the layer's own ``torch_module()``); the window rule of the fixed pools is
swept over many (n, k, s, p, d, ceil_mode) combinations, errors included; adaptive
windows are read off torch's gradients. FLOPs and receptive fields are checked
against hand-derived values.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from netcalc.errors import Mark, SpecError
from netcalc.layers import REGISTRY
from netcalc.layers.base import Ctx, TensorInfo
from netcalc.rf import RF

from conftest import analyze_text

POOLS = ["MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
         "LPPool1d", "LPPool2d", "LPPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
         "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d"]
PADS = [f"{kind}Pad{n}d" for kind in ("Zero", "Constant", "Reflection", "Replication")
        for n in (1, 2, 3)]
RESAMPLE = ["Upsample", "PixelShuffle", "PixelUnshuffle", "ChannelShuffle"]


def make(type_: str, args, shape) -> object:
    """Build a layer from raw args (a dict, or its primary argument) and run its shape rule."""
    layer = REGISTRY[type_](_raw(type_, args), Ctx("l", Mark(1, 1)))
    layer.infer([TensorInfo(tuple(shape))])
    return layer


def rf_of(layer, ndim: int | None = None) -> RF:
    ndim = len(layer.x) - 2 if ndim is None else ndim
    return layer.receptive_field([RF.identity(ndim)])


# ---------------------------------------------------------------------- torch parity
CASES = [
    ("MaxPool1d", 3, (2, 3, 11)),
    ("MaxPool1d", {"kernel_size": 4, "stride": 3, "padding": 2, "dilation": 2, "ceil_mode": True}, (1, 2, 13)),
    # ceil_mode keeps a window larger than the input when it starts inside it
    ("MaxPool1d", {"kernel_size": 2, "ceil_mode": True}, (1, 1, 1)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 1, 1, 2)),
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 3, 10, 9)),
    ("MaxPool2d", {"kernel_size": [2, 3], "stride": [1, 2], "ceil_mode": True}, (1, 2, 7, 8)),
    ("MaxPool3d", {"kernel_size": 2, "dilation": [1, 2, 1], "padding": [1, 0, 1]}, (1, 2, 5, 6, 7)),
    ("AvgPool1d", {"kernel_size": 3, "stride": 2, "padding": 1, "count_include_pad": False}, (2, 3, 10)),
    ("AvgPool2d", {"kernel_size": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (1, 3, 8, 9)),
    ("AvgPool2d", {"kernel_size": 2, "divisor_override": 3}, (1, 3, 8, 9)),
    ("AvgPool3d", {"kernel_size": [1, 2, 3], "ceil_mode": True}, (1, 2, 3, 5, 7)),
    ("LPPool1d", {"norm_type": 2, "kernel_size": 3}, (1, 2, 10)),
    ("LPPool2d", {"norm_type": 1.5, "kernel_size": [2, 3], "stride": 2, "ceil_mode": True}, (1, 2, 9, 9)),
    ("LPPool3d", {"norm_type": 2, "kernel_size": 2}, (1, 2, 4, 5, 6)),
    ("AdaptiveAvgPool1d", 3, (2, 3, 10)),
    ("AdaptiveAvgPool2d", 1, (2, 3, 7, 7)),
    ("AdaptiveAvgPool2d", [None, 3], (1, 3, 7, 5)),
    ("AdaptiveAvgPool3d", [2, None, 5], (1, 2, 5, 4, 3)),
    ("AdaptiveMaxPool1d", 4, (1, 3, 9)),
    ("AdaptiveMaxPool2d", [3, 2], (1, 3, 7, 5)),
    ("AdaptiveMaxPool3d", 1, (1, 2, 3, 4, 5)),
    ("ZeroPad1d", 2, (1, 3, 5)),
    ("ZeroPad2d", [1, 2, 3, 4], (1, 3, 5, 6)),
    ("ZeroPad2d", [-1, 0, 2, -2], (2, 3, 5, 6)),
    ("ZeroPad3d", 1, (1, 2, 3, 4, 5)),
    ("ConstantPad1d", {"padding": [0, 3], "value": 1.5}, (1, 3, 5)),
    ("ConstantPad2d", {"padding": 2, "value": -1}, (1, 3, 5, 6)),
    ("ConstantPad3d", {"padding": [1, 0, 0, 2, 2, 1], "value": 0}, (1, 2, 3, 4, 5)),
    ("ReflectionPad1d", [4, 1], (1, 3, 5)),
    ("ReflectionPad2d", [1, 2, 3, 4], (1, 3, 5, 6)),
    ("ReflectionPad2d", 2, (3, 5, 6)),
    ("ReflectionPad3d", 2, (1, 2, 3, 4, 5)),
    ("ReplicationPad1d", 7, (1, 3, 5)),
    ("ReplicationPad2d", [0, 1, 2, 3], (1, 3, 5, 6)),
    ("ReplicationPad3d", [1, 1, 2, 2, 3, 3], (1, 2, 3, 4, 5)),
    ("Upsample", 2, (1, 3, 5, 6)),
    ("Upsample", {"scale_factor": 1.7, "mode": "bilinear"}, (1, 3, 10, 7)),
    ("Upsample", {"scale_factor": [2, 0.5], "mode": "bicubic", "align_corners": True}, (1, 3, 5, 6)),
    ("Upsample", {"size": 7, "mode": "linear"}, (1, 3, 5)),
    ("Upsample", {"size": [4, 5, 6], "mode": "trilinear"}, (1, 2, 3, 4, 5)),
    ("Upsample", {"scale_factor": 0.3, "mode": "nearest-exact"}, (1, 2, 10)),
    ("Upsample", {"scale_factor": 2.5, "recompute_scale_factor": True}, (1, 2, 3, 4, 5)),
    ("PixelShuffle", 2, (1, 12, 3, 4)),
    ("PixelShuffle", 3, (2, 2, 9, 3, 4)),
    ("PixelUnshuffle", 2, (1, 3, 4, 6)),
    ("ChannelShuffle", 3, (1, 6, 4, 4)),
    ("ChannelShuffle", 2, (1, 4, 5)),
]


def test_every_type_has_a_torch_case():
    assert {c[0] for c in CASES} == set(POOLS + PADS + RESAMPLE)
    assert set(POOLS + PADS + RESAMPLE) <= set(REGISTRY)


def _raw(type_, args):
    return args if isinstance(args, dict) else {REGISTRY[type_].PRIMARY: args}


@pytest.mark.torch
@pytest.mark.parametrize("type_,args,shape", CASES, ids=lambda v: str(v).replace(" ", ""))
def test_shape_params_buffers_match_torch(type_, args, shape):
    torch = pytest.importorskip("torch")
    layer = make(type_, _raw(type_, args), shape)
    module = layer.torch_module()
    assert type(module).__name__ == type_
    with torch.no_grad():
        y = module(torch.randn(shape))
    assert layer.y == tuple(y.shape)
    assert layer.params() == sum(p.numel() for p in module.parameters()) == 0
    assert layer.buffers() == sum(b.numel() for b in module.buffers()) == 0
    assert layer.macs() == 0
    assert layer.flops() == layer.elementwise_flops() >= 0


# ---------------------------------------------------------------------- window sweep
def _sweep(kind: str):
    for n, k, s, ceil in itertools.product(range(1, 10), range(1, 5), range(1, 4), (False, True)):
        for p in range(0, k // 2 + 2):  # k//2 + 1 is refused by torch and netcalc alike
            for d in ((1, 2, 3) if kind == "MaxPool1d" else (1,)):
                yield n, k, s, p, d, ceil


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["MaxPool1d", "AvgPool1d"])
def test_window_rule_sweep_matches_torch(kind):
    torch = pytest.importorskip("torch")
    mismatches = []
    count = 0
    for n, k, s, p, d, ceil in _sweep(kind):
        args = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil}
        if d != 1:
            args["dilation"] = d
        try:
            ours = make(kind, args, (1, 1, n)).y[2]
        except SpecError:
            ours = None
        module = getattr(torch.nn, kind)(**args)
        try:
            theirs = module(torch.zeros(1, 1, n)).shape[2]
        except RuntimeError:
            theirs = None
        if theirs == 0:  # torch's empty output where no window fits: netcalc refuses it
            theirs = None
        count += 1
        if ours != theirs:
            mismatches.append((n, k, s, p, d, ceil, ours, theirs))
    assert count > 400
    assert not mismatches


@pytest.mark.torch
@pytest.mark.parametrize("ceil", [False, True])
def test_window_rule_2d_on_meta(ceil):
    torch = pytest.importorskip("torch")
    for h, w, k, s, p in itertools.product((4, 7), (5, 8), (2, 3), (1, 2, 3), (0, 1)):
        args = {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil}
        for kind in ("MaxPool2d", "AvgPool2d"):
            layer = make(kind, args, (1, 2, h, w))
            y = layer.torch_module()(torch.empty(1, 2, h, w, device="meta"))
            assert layer.y == tuple(y.shape), (kind, h, w, k, s, p, ceil)


# ---------------------------------------------------------------------- adaptive windows
def _torch_windows(n: int, o: int) -> list[list[int]]:
    """Input positions each output of AdaptiveAvgPool1d reads, from torch's gradients."""
    import torch

    x = torch.zeros(1, 1, n, requires_grad=True)
    y = torch.nn.AdaptiveAvgPool1d(o)(x)
    rows = []
    for i in range(o):
        (g,) = torch.autograd.grad(y[0, 0, i], x, retain_graph=True)
        rows.append(torch.nonzero(g[0, 0]).flatten().tolist())
    return rows


@pytest.mark.torch
@pytest.mark.parametrize("n", range(1, 13))
def test_adaptive_windows_flops_and_field_match_torch(n):
    pytest.importorskip("torch")
    for o in range(1, 13):
        windows = _torch_windows(n, o)
        assert all(w == list(range(w[0], w[-1] + 1)) for w in windows)  # contiguous
        layer = make("AdaptiveAvgPool1d", o, (2, 3, n))
        assert layer.y == (2, 3, o)
        assert layer.elementwise_flops() == 2 * 3 * sum(len(w) for w in windows)
        rf = rf_of(layer)
        if o == 1:
            assert rf.global_
            continue
        (dim,) = rf.dims
        assert dim.size == max(len(w) for w in windows)
        assert dim.stride == Fraction(n, o)
        first = windows[0]
        assert dim.start == Fraction(first[0] + first[-1], 2)
        if n % o == 0:  # the plain window k = s = n/o
            k = n // o
            assert (dim.size, dim.stride, dim.start) == (k, k, Fraction(k - 1, 2))


def test_adaptive_null_keeps_input_size_and_global_pool():
    layer = make("AdaptiveAvgPool2d", [None, 1], (1, 3, 7, 5))
    assert layer.y == (1, 3, 7, 1)
    rf = rf_of(layer)
    assert not rf.global_  # one dim is still spatial
    assert rf.dims[0] == rf_of(make("AdaptiveAvgPool2d", [7, 1], (1, 3, 7, 5))).dims[0]
    assert rf.dims[0].size == 1 and rf.dims[1].size == 5
    assert rf_of(make("AdaptiveMaxPool3d", 1, (1, 2, 3, 4, 5))).global_
    assert rf_of(make("AdaptiveAvgPool2d", 1, (1, 2, 1, 1))).global_


# ---------------------------------------------------------------------- FLOPs
@pytest.mark.parametrize("type_,args,shape,flops", [
    # per output element: one compare/add per window element
    ("MaxPool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, (2, 4, 10, 10), 2 * 4 * 5 * 5 * 9),
    # span 3*(2-1)+1 = 4, stride = kernel_size = 2: (10-4)//2 + 1 = 4 outputs
    ("MaxPool1d", {"kernel_size": 2, "dilation": 3}, (1, 2, 10), 1 * 2 * 4 * 2),
    ("AvgPool3d", 2, (1, 2, 4, 4, 4), 1 * 2 * 8 * 8),
    # LPPool: x**p and an add per window element, one root per output
    ("LPPool2d", {"norm_type": 2, "kernel_size": 2}, (1, 3, 6, 6), 3 * 9 * (2 * 4 + 1)),
    # adaptive 5 -> 3: windows [0,2) [1,4) [3,5): 2 + 3 + 2 per map, squared in 2-d
    ("AdaptiveAvgPool2d", 3, (2, 3, 5, 5), 2 * 3 * 7 * 7),
    ("AdaptiveMaxPool1d", 1, (2, 3, 5), 2 * 3 * 5),
    ("ZeroPad2d", 3, (1, 3, 5, 5), 0),
    ("ReflectionPad1d", 2, (1, 3, 5), 0),
    # Upsample: weighted sum of taps**d inputs, 2*taps**d - 1 per output element
    ("Upsample", 2, (1, 3, 4, 4), 0),
    ("Upsample", {"scale_factor": 2, "mode": "nearest-exact"}, (1, 3, 4), 0),
    ("Upsample", {"scale_factor": 2, "mode": "linear"}, (1, 3, 4), 3 * 8 * 3),
    ("Upsample", {"scale_factor": 2, "mode": "bilinear"}, (1, 3, 4, 4), 3 * 64 * 7),
    ("Upsample", {"size": [2, 3, 4], "mode": "trilinear"}, (1, 1, 1, 1, 1), 24 * 15),
    ("Upsample", {"size": 8, "mode": "bicubic"}, (1, 2, 4, 4), 2 * 64 * 31),
    ("PixelShuffle", 2, (1, 8, 3, 3), 0),
    ("PixelUnshuffle", 2, (1, 2, 4, 4), 0),
    ("ChannelShuffle", 2, (1, 4, 3, 3), 0),
])
def test_elementwise_flops_hand_derived(type_, args, shape, flops):
    layer = make(type_, _raw(type_, args), shape)
    assert layer.elementwise_flops() == flops
    assert layer.macs() == 0
    assert layer.flops() == flops


# ---------------------------------------------------------------------- receptive fields
def _dims(rf: RF) -> list[tuple]:
    return [(d.size, d.stride, d.start) for d in rf.dims]


def test_resnet_stem_conv_then_maxpool_field():
    # conv 7x7/2 pad 3: size 7, jump 2, start (7-1)/2 - 3 = 0
    # maxpool 3x3/2 pad 1: size 7 + (3-1)*2 = 11, jump 2*2 = 4, start 0 + ((3-1)/2 - 1)*2 = 0
    r = analyze_text("""
input: [3, 224, 224]
layers:
  - Conv2d: {out_channels: 64, kernel_size: 7, stride: 2, padding: 3}
  - MaxPool2d: {kernel_size: 3, stride: 2, padding: 1}
""")
    pool = r.layers[-1]
    assert pool.shape == (1, 64, 56, 56)
    assert _dims(pool.rf) == [(11, 4, 0)] * 2
    assert pool.flops == 64 * 56 * 56 * 9


@pytest.mark.parametrize("type_,args,shape,dims", [
    # window k=2 s=2 no pad: size 2, jump 2, centre of pixels 0..1
    ("AvgPool2d", 2, (1, 1, 8, 8), [(2, 2, Fraction(1, 2))] * 2),
    # dilated max pool: span 2*(3-1)+1 = 5, start (5-1)/2 - 1 = 1
    ("MaxPool1d", {"kernel_size": 3, "dilation": 2, "padding": 1, "stride": 1}, (1, 1, 9), [(5, 1, 1)]),
    # ceil_mode changes the shape, not the field
    ("MaxPool1d", {"kernel_size": 3, "stride": 2, "ceil_mode": True}, (1, 1, 8), [(3, 2, 1)]),
    # adaptive 7 -> 3: windows [0,3) [2,5) [4,7): size 3, stride 7/3, first centre 1
    ("AdaptiveMaxPool1d", 3, (1, 1, 7), [(3, Fraction(7, 3), 1)]),
    # adaptive 10 -> 4: windows [0,3) [2,5) [5,8) [7,10): size 3, first centre 1
    ("AdaptiveAvgPool1d", 4, (1, 1, 10), [(3, Fraction(5, 2), 1)]),
    # padding shifts the start by -left on each dim (last dim first in torch's order)
    ("ZeroPad2d", [1, 2, 3, 4], (1, 1, 5, 5), [(1, 1, -3), (1, 1, -1)]),
    ("ReflectionPad1d", [2, 0], (1, 1, 5), [(1, 1, -2)]),
    ("ConstantPad1d", {"padding": [-2, 1], "value": 1}, (1, 1, 5), [(1, 1, 2)]),
    # nearest upsampling by 2: each output reads one input, two outputs per input
    ("Upsample", 2, (1, 1, 4, 4), [(1, Fraction(1, 2), 0)] * 2),
    # bilinear x2: source of output 0 is 0.25-0.5 < 0, clamped to 0: taps 0, 1
    ("Upsample", {"scale_factor": 2, "mode": "bilinear"}, (1, 1, 4, 4), [(2, Fraction(1, 2), Fraction(1, 2))] * 2),
    # linear /2: source 2*0.5-0.5 = 0.5: taps 0, 1 (a 2-wide average)
    ("Upsample", {"scale_factor": 0.5, "mode": "linear"}, (1, 1, 8), [(2, 2, Fraction(1, 2))]),
    # bicubic x2: source -0.25 not clamped, floor -1: taps -2..1, centre -1/2
    ("Upsample", {"scale_factor": 2, "mode": "bicubic"}, (1, 1, 4, 4), [(4, Fraction(1, 2), Fraction(-1, 2))] * 2),
    # align_corners 3 -> 5: step (3-1)/(5-1) = 1/2, output 0 on input 0: taps 0, 1
    ("Upsample", {"size": 5, "mode": "linear", "align_corners": True}, (1, 1, 3), [(2, Fraction(1, 2), Fraction(1, 2))]),
    # nearest-exact /2: output 0 reads floor(0.5*2) = 1
    ("Upsample", {"scale_factor": 0.5, "mode": "nearest-exact"}, (1, 1, 8), [(1, 2, 1)]),
    # scale 1.5 written as a float is exactly 3/2: jump 2/3
    ("Upsample", {"scale_factor": 1.5}, (1, 1, 4), [(1, Fraction(2, 3), 0)]),
    ("PixelShuffle", 2, (1, 4, 3, 3), [(1, Fraction(1, 2), 0)] * 2),
    ("PixelUnshuffle", 2, (1, 1, 4, 4), [(2, 2, Fraction(1, 2))] * 2),
    ("ChannelShuffle", 2, (1, 4, 3, 3), [(1, 1, 0)] * 2),
])
def test_receptive_field_hand_derived(type_, args, shape, dims):
    layer = make(type_, _raw(type_, args), shape)
    assert _dims(rf_of(layer)) == dims


def test_fields_compose_after_strided_conv():
    # conv 3x3/2 pad 1: size 3, jump 2, start 0; PixelShuffle 2: jump 2/2 = 1
    # ZeroPad2d 1: start 0 - 1*1 = -1; AdaptiveAvgPool2d 1: global
    r = analyze_text("""
input: [3, 16, 16]
layers:
  - Conv2d: {out_channels: 8, kernel_size: 3, stride: 2, padding: 1}
  - {name: shuf, PixelShuffle: 2}
  - {name: pad, ZeroPad2d: 1}
  - {name: up, Upsample: {scale_factor: 2, mode: bilinear}}
  - {name: pool, AdaptiveAvgPool2d: 1}
""")
    by = {l.name: l for l in r.layers}
    assert by["shuf"].shape == (1, 2, 16, 16)
    assert _dims(by["shuf"].rf) == [(3, 1, 0)] * 2
    assert by["pad"].shape == (1, 2, 18, 18)
    assert _dims(by["pad"].rf) == [(3, 1, -1)] * 2
    # jump 1 * 1/2; taps 0,1 of the padded map: size 3 + 1, start -1 + 1/2
    assert by["up"].shape == (1, 2, 36, 36)
    assert _dims(by["up"].rf) == [(4, Fraction(1, 2), Fraction(-1, 2))] * 2
    assert by["pool"].rf.global_


@pytest.mark.torch
@pytest.mark.parametrize("mode,scale", [("nearest", 0.5), ("nearest", 0.25), ("nearest-exact", 0.5),
                                        ("nearest-exact", 0.25), ("linear", 0.5), ("linear", 0.25)])
def test_downsampling_field_matches_torch_gradients(mode, scale):
    # integer source steps: every output reads exactly its taps at start + i*stride
    torch = pytest.importorskip("torch")
    n = 16
    layer = make("Upsample", {"scale_factor": scale, "mode": mode}, (1, 1, n))
    (dim,) = rf_of(layer).dims
    x = torch.zeros(1, 1, n, requires_grad=True)
    y = layer.torch_module()(x)
    assert y.shape[2] == layer.y[2]
    for i in range(layer.y[2]):
        (g,) = torch.autograd.grad(y[0, 0, i], x, retain_graph=True)
        read = torch.nonzero(g[0, 0]).flatten().tolist()
        centre = dim.start + i * dim.stride
        assert read == list(range(int(centre - (dim.size - 1) / 2), int(centre + (dim.size - 1) / 2) + 1))


# ---------------------------------------------------------------------- errors
def _spec_error(layers: str, input_: str = "[3, 8, 8]") -> SpecError:
    with pytest.raises(SpecError) as info:
        analyze_text(f"input: {input_}\nlayers:\n{layers}")
    err = info.value
    assert err.mark is not None, str(err)
    assert err.file == "t.yaml"
    return err


@pytest.mark.parametrize("layers,input_,line,message", [
    ("  - ReLU\n  - MaxPool2d: {kernel_size: 3, padding: 2}", "[3, 8, 8]", 4,
     "padding=2 should be at most half of kernel_size=3"),
    ("  - MaxPool1d: {kernel_size: 4, padding: 3, dilation: 3}", "[3, 20]", 3,
     "padding=3 should be at most half of kernel_size=4"),
    ("  - AvgPool3d: {kernel_size: [3, 2, 3],\n      padding: [1, 2, 1]}", "[1, 8, 8, 8]", 4,
     "padding=2 should be at most half of kernel_size=2"),
    ("  - MaxPool2d: 5", "[3, 4, 4]", 3, "kernel extent 5 is larger than the padded input 4"),
    ("  - MaxPool2d: 2", "[3, 8]", 3, "MaxPool2d needs a 4-d input (N, C, H, W), got [1, 3, 8]"),
    ("  - LPPool2d: {norm_type: 0, kernel_size: 2}", "[3, 8, 8]", 3, "norm_type must be > 0"),
    ("  - AdaptiveAvgPool2d: [2]", "[3, 8, 8]", 3, "expected 2 values"),
    ("  - AdaptiveAvgPool2d: 0", "[3, 8, 8]", 3, "values must be >= 1"),
    ("  - ReflectionPad2d: 8", "[3, 8, 8]", 3,
     "reflection padding (8, 8) must be smaller than the input size 8 of dim 3"),
    ("  - ReflectionPad1d: [1, 5]", "[3, 5]", 3,
     "reflection padding (1, 5) must be smaller than the input size 5 of dim 2"),
    ("  - ReplicationPad2d: 1", "[2, 3, 8, 8]", 3, "ReplicationPad2d needs a 3-d or 4-d input"),
    ("  - ZeroPad2d: [1, 2, 3]", "[3, 8, 8]", 3, "expected an int or 4 values (left, right, top, bottom)"),
    ("  - ZeroPad2d: -4", "[3, 8, 8]", 3, "non-positive size"),
    ("  - Upsample: {scale_factor: 2, mode: bilinear}", "[3, 16]", 3,
     "mode 'bilinear' needs a 4-d input, got 3-d"),
    ("  - Upsample: {scale_factor: 2, mode: trilinear}", "[3, 8, 8]", 3, "mode 'trilinear' needs a 5-d input"),
    ("  - Upsample: {scale_factor: 2, mode: cubic}", "[3, 8, 8]", 3, "expected one of nearest, linear"),
    ("  - Upsample: {scale_factor: 2, size: 4}", "[3, 8, 8]", 3, "size or scale_factor, not both"),
    ("  - Upsample: {mode: bilinear}", "[3, 8, 8]", 3, "Upsample needs size or scale_factor"),
    ("  - Upsample: {scale_factor: 2, align_corners: true}", "[3, 8, 8]", 3,
     "align_corners can only be set with the interpolating modes"),
    ("  - Upsample: {size: [4, 4, 4]}", "[3, 8, 8]", 3, "size has 3 values but the input"),
    ("  - Upsample: 0.05", "[3, 8, 8]", 3, "non-positive size"),
    ("  - Upsample: -2", "[3, 8, 8]", 3, "values must be finite and > 0"),
    ("  - PixelShuffle: 2", "[6, 8, 8]", 3, "channels 6 are not divisible by upscale_factor**2 = 4"),
    ("  - PixelUnshuffle: 3", "[2, 9, 8]", 3, "width 8 is not divisible by downscale_factor=3"),
    ("  - PixelShuffle: 2", "[8, 8]", 3, "PixelShuffle needs a 4-d input"),
    ("  - ChannelShuffle: 4", "[6, 8, 8]", 3, "channels 6 are not divisible by groups=4"),
])
def test_errors_are_located_spec_errors(layers, input_, line, message):
    err = _spec_error(layers, input_)
    assert message in err.message, err.message
    assert err.mark.line == line, str(err)


def test_argument_errors_point_at_the_argument():
    err = _spec_error("  - MaxPool2d: {kernel_size: 3,\n               padding: 2}")
    assert (err.mark.line, err.mark.col) == (4, 25)
    err = _spec_error("  - Upsample:\n      scale_factor: 2\n      mode: bilinear", "[3, 16]")
    assert (err.mark.line, err.mark.col) == (5, 13)


@pytest.mark.torch
@pytest.mark.parametrize("type_,args,shape", [
    ("MaxPool2d", {"kernel_size": 3, "padding": 2}, (1, 3, 8, 8)),
    ("MaxPool1d", {"kernel_size": 4, "padding": 3, "dilation": 3}, (1, 3, 20)),
    ("AvgPool2d", {"kernel_size": 2, "padding": 2}, (1, 3, 8, 8)),
    ("ReflectionPad2d", 8, (1, 3, 8, 8)),
    ("ReflectionPad1d", [1, 5], (1, 3, 5)),
    ("Upsample", {"scale_factor": 2, "mode": "bilinear"}, (1, 3, 16)),
    ("Upsample", {"scale_factor": 2, "mode": "bicubic"}, (1, 3, 2, 4, 4)),
    ("PixelShuffle", 2, (1, 6, 8, 8)),
    ("ChannelShuffle", 4, (1, 6, 8, 8)),
])
def test_torch_refuses_what_netcalc_refuses(type_, args, shape):
    torch = pytest.importorskip("torch")
    raw = _raw(type_, args)
    with pytest.raises(SpecError):
        make(type_, raw, shape)
    module = getattr(torch.nn, type_)(**raw)
    with pytest.raises((RuntimeError, ValueError, NotImplementedError)):
        module(torch.randn(shape))


def test_constant_pad_value_is_required_like_torch():
    with pytest.raises(SpecError, match="ConstantPad2d needs argument 'value'"):
        make("ConstantPad2d", 1, (1, 1, 2, 2))
    assert make("ConstantPad2d", {"padding": 1, "value": 0.5}, (1, 1, 2, 2)).torch_module().value == 0.5


def test_maxpool_stride_defaults_to_kernel_size():
    layer = make("MaxPool2d", [3, 2], (1, 1, 9, 8))
    assert layer.stride == (3, 2)
    assert layer.y == (1, 1, 3, 4)
