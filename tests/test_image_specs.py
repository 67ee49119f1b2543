"""The image models of issue 12 (ViT-B/16, ConvNeXt-Tiny, Swin-T, ShuffleNetV2 x1.0)
against torchvision's own models, built with ``weights=None``.

What is compared, per spec in specs/:

* the built module's state_dict (keys and shapes), its parameters and its buffers
  against torchvision's model on the meta device; params and MACs against the weights'
  metadata (``num_params``; ``_ops`` in GFLOPS, which torchvision counts as MACs);
* MACs against FlopCounterMode (FLOPs / 2) on a forward of torchvision's model: a
  real CPU forward at a small input where the model allows one (ConvNeXt and
  ShuffleNet at 32x32; Swin-T's shifts and windows are fixed for 224x224), on the meta
  device for ViT-B/16 (its position embedding fixes 224x224, and on CPU the attention
  runs the flash kernel, which FlopCounterMode does not count: the meta forward
  counts it, as netcalc.conventions' ``flopcounter.attention`` says);
* the output shape, and ``netcalc verify``'s checks with the receptive fields measured
  by backpropagation (torch/rf_probe.py), FlopCounterMode as the counting tool;
* the activations autograd keeps in train mode (ConvNeXt and ShuffleNet).

Measured (torch 2.14.1, torchvision 0.29.1): params ViT-B/16 86,567,656, ConvNeXt-Tiny
28,589,128, Swin-T 28,288,354 (buffers 28,812: twelve relative_position_index of
2,401), ShuffleNetV2 2,278,604 (buffers 16,236); MACs 17,563,828,224, 4,455,531,264,
4,490,566,656 and 144,907,992 at 224x224 (torchvision: 17.564, 4.456, 4.491, 0.145).
"""

from __future__ import annotations

import pytest

import netcalc
from netcalc.rf import GLOBAL

from conftest import SPECS

torch = pytest.importorskip("torch")
models = pytest.importorskip("torchvision.models")

pytestmark = pytest.mark.torch

# spec -> (torchvision builder, published num_params, published _ops in GFLOPS)
MODELS = {
    "vit_b_16": ("vit_b_16", 86_567_656, 17.564),
    "convnext_tiny": ("convnext_tiny", 28_589_128, 4.456),
    "swin_t": ("swin_t", 28_288_354, 4.491),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", 2_278_604, 0.145),
}
# input side of the CPU forward; None: the meta device (see the module docstring)
SIDE = {"vit_b_16": None, "convnext_tiny": 32, "swin_t": 224, "shufflenet_v2_x1_0": 32}


def spec_path(name: str):
    return SPECS / f"{name}.yaml"


def torchvision_model(name: str, device: str = "cpu"):
    """torchvision's model, on ``device``; on CPU its tensors are allocated without
    torchvision's initialisation (the values do not change any count)."""
    with torch.device("meta"):
        model = getattr(models, MODELS[name][0])(weights=None)
    if device == "meta":
        return model
    model = model.to_empty(device=device)
    for b in model.buffers():  # valid indices (Swin's relative_position_index)
        if not b.is_floating_point():
            b.zero_()
    return model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_spec_is_torchvisions_model(name):
    from netcalc.torch.build import build_module

    theirs = torchvision_model(name, "meta")
    ours = build_module(spec_path(name), device="meta")
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    report = netcalc.analyze(spec_path(name))
    _, num_params, ops = MODELS[name]
    assert report.totals.params == sum(p.numel() for p in theirs.parameters()) == num_params
    assert report.totals.buffers == sum(b.numel() for b in theirs.buffers())
    assert round(report.totals.macs / 1e9, 3) == ops


@pytest.mark.parametrize("name", sorted(MODELS))
def test_macs_and_output_equal_flopcounter(name):
    from torch.utils.flop_counter import FlopCounterMode

    side = SIDE[name]
    device = "meta" if side is None else "cpu"
    side = side or 224
    model = torchvision_model(name, device).eval()
    x = torch.randn(1, 3, side, side, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        y = model(x)
    report = netcalc.analyze(spec_path(name), input_shapes={"input": (3, side, side)})
    assert report.totals.macs * 2 == counter.get_total_flops()
    assert list(report.outputs.values()) == [tuple(y.shape)]


# layers whose receptive field the probe must measure (exact, not global), in input
# pixels; the sizes are the analytic ones at the checked input
MEASURED = {
    # ViT: the patch map flattened into tokens and moved channel-last keeps its field
    "vit_b_16": (224, {"conv_proj": 16, "patches": 16, "tokens": 16}),
    # ConvNeXt: channel-last LayerNorm/Linear between permutes keep it; layer scale
    # (a Parameter) adds none
    "convnext_tiny": (32, {"features.0.1": 4, "features.1.0.block.2": 28,
                           "features.1.0.block.5": 28, "features.1.0.scaled": 28,
                           "features.3.2.add": 224}),
    # Swin: the stem, its permute and norm, and the first two (windowed) blocks
    "swin_t": (224, {"features.0.2": 4, "features.1.0.norm1": 4,
                     # windowed: each unit its 7x7 window, then its shifted window
                     "features.1.0.mlp_add": 28, "features.1.1.mlp_add": 56}),
    # ShuffleNet: Chunk halves and the channel shuffle (Unflatten, Permute, Flatten)
    "shufflenet_v2_x1_0": (32, {"stage2.1.split": 15, "stage2.1.shuffle.shuffled": 31,
                                "stage3.0.shuffle.shuffled": 79}),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_verify_passes_with_measured_receptive_fields(name):
    """verify's checks (shapes, params, buffers, FlopCounterMode per layer, on the meta
    device: the CPU counts are the test above), and its receptive-field probe on CPU
    for the layers above (the probe's forward stops after the deepest of them)."""
    from netcalc.torch.build import prepare
    from netcalc.torch.crosscheck import crosscheck
    from netcalc.torch.rf_probe import empirical_rf

    side, sizes = MEASURED[name]
    shapes = {"input": (3, side, side)}
    result = crosscheck(spec_path(name), input_shapes=shapes, tools=("flopcounter",),
                        device="meta", rf=False)
    assert result.ok, result.message
    graph, report = prepare(spec_path(name), input_shapes=shapes)
    rows = {r.layer: r for r in empirical_rf(graph, report, layers=list(sizes))}
    fields = {r.name: r.rf for r in report.layers}
    for layer, size in sizes.items():
        assert layer in rows, f"{layer}: receptive field not measured"
        assert rows[layer].verdict == "match", rows[layer]
        assert fields[layer] is not GLOBAL and {d.size for d in fields[layer].dims} == {size}


def test_channel_last_rows_keep_their_field():
    """ConvNeXt's rows never turn global before the pooling; Swin's stay exact through
    the window partitions (each spatial dim cut into (window, offset) digits) up to its
    last stage, whose map is one window (tests/test_rf_windows.py measures them)."""
    convnext = netcalc.analyze(spec_path("convnext_tiny"))
    pooled = [r.name for r in convnext.layers].index("avgpool")
    assert all(r.rf is None or not r.rf.global_ for r in convnext.layers[:pooled])
    assert convnext.layers[pooled - 1].rf.dims[0].size == 1688
    swin = {r.name: r.rf for r in netcalc.analyze(spec_path("swin_t")).layers}
    assert swin["features.1.0.norm1"].dims[0].size == 4
    assert swin["features.1.0.attn.windows"].dims == swin["features.1.0.norm1"].dims
    assert swin["features.1.0.attn.probs"].dims[0].size == 28  # the 7x7 window
    last = [r.name for r in netcalc.analyze(spec_path("swin_t")).layers].index(
        "features.7.0.attn.scores")
    assert all(not f.global_ for n, f in list(swin.items())[:last] if f is not None)
    assert swin["features.7.0.attn.scores"] is GLOBAL


FLATTEN_AND_BACK = """
name: flatten-and-back
input: [4, 12, 10]
layers:
  - {name: conv, Conv2d: {out_channels: 6, kernel_size: 3, padding: 1}}
  - {name: tokens, Flatten: {start_dim: 2}}            # (N, 6, 120): H, W share one axis
  - {name: t, Permute: [0, 2, 1]}                      # (N, 120, 6): tokens, channel-last
  - {name: ln, LayerNorm: ~}
  - {name: fc, Linear: 8}                              # over the channels only
  - {name: back, Permute: [0, 2, 1]}
  - {name: map, Unflatten: {dim: 2, unflattened_size: [12, 10]}}   # H and W again
  - {name: conv2, Conv2d: {out_channels: 5, kernel_size: 3, stride: 2}}
  - {name: roll, Roll: {shifts: -1, dims: 2}}          # along H: a translation
  - {name: soft, Softmax: 2}                           # along H only
  - {name: conv3, Conv2d: {out_channels: 5, kernel_size: 3}}
"""


def test_flatten_and_back_and_per_dim_global_are_measured():
    """A ViT/Swin-style detour through tokens keeps the field exact (probed at the
    unit's index in the merged axis), a Roll along H translates it, and a softmax along
    H makes H alone global: W is still measured exact by backpropagation."""
    from netcalc.torch.crosscheck import crosscheck

    spec = netcalc.parse(FLATTEN_AND_BACK, "fb.yaml")
    report = netcalc.analyze(spec)
    fields = {r.name: r.rf for r in report.layers}
    assert fields["tokens"].packing == ((10, 12), (1, 10)) and fields["fc"].dims[0].size == 3
    assert fields["map"] == fields["conv"]  # back where it was, exact
    assert fields["roll"].dims[0].start == fields["conv2"].dims[0].start + 2  # unit p: p+1's
    assert fields["soft"].dims[0].whole and fields["conv3"].dims[1].size == 9
    result = crosscheck(spec, tools=("flopcounter",))
    assert result.ok, result.message
    rf = {r.layer: r for r in result.rows if r.metric == "rf"}
    assert set(rf) >= {"conv", "tokens", "t", "fc", "back", "map", "conv2", "roll", "soft",
                       "conv3"}
    assert all(r.verdict == "match" for r in rf.values())
    assert rf["conv3"].analytic[0] == "global" and rf["conv3"].analytic[1] == [1, 9]


@pytest.mark.parametrize("name", ["convnext_tiny", "shufflenet_v2_x1_0"])
def test_saved_activation_bytes_match_autograd(name):
    """What autograd keeps in train mode (tests/test_torchvision_oracle.py's measure),
    ConvNeXt's StochasticDepth noise and LayerNorm2d included, at batch 2 and 32x32.
    Measured the same way, exact too (batch 2, 224x224): Swin-T 213,268,432 bytes and
    ViT-B/16 236,321,360 (too slow for the suite)."""
    from test_torchvision_oracle import autograd_saved_bytes

    model = torchvision_model(name).train()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
        for b in model.buffers():
            if b.is_floating_point():
                b.fill_(1.0)
    expected = autograd_saved_bytes(model, torch.randn(2, 3, 32, 32))
    report = netcalc.analyze(spec_path(name), batch=2, input_shapes={"input": (3, 32, 32)},
                             train=netcalc.TrainOptions(device="cpu"))
    assert report.totals.saved_activation_bytes == expected
