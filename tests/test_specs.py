"""The spec library (specs/) against published figures, and the seeds' worked examples.

Every figure below is either a published one, with its source in a comment, or an
arithmetic derivation from the architecture's table, written out so it can be read
against the paper; where both exist the test checks that they agree. torchvision is
deliberately not a dependency: its published ``num_params`` and ``_ops`` metadata
(``torchvision/models/*.py``, the ``Weights`` entries) are quoted instead. ``_ops`` is
in GFLOPS as torchvision uses the word: multiply-accumulates of convolutions and
linear layers, bias excluded, which is netcalc's MAC.

Golden files: ``tests/golden/<spec>.json`` holds the totals and outputs of every spec
in specs/ at batch 1. Rewrite them after an intended change with::

    NETCALC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_specs.py -q
"""

from __future__ import annotations

import json
import os
from fractions import Fraction
from math import prod
from pathlib import Path

import pytest

import netcalc
from netcalc.render.view import report_dict

from conftest import SPECS, analyze_text

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("NETCALC_UPDATE_GOLDEN") == "1"
SPEC_FILES = sorted(SPECS.glob("*.yaml"))


def spec_id(path: Path) -> str:
    return path.stem


# ----------------------------------------------------------------- derivations
# Independent arithmetic from the architecture tables (no netcalc involved).

def conv_macs(out_hw: int, c_in: int, c_out: int, k: int, groups: int = 1) -> int:
    """MACs of a square conv: output positions x C_out x (C_in/groups) x k*k."""
    return out_hw * out_hw * c_out * (c_in // groups) * k * k


def conv_params(c_in: int, c_out: int, k: int, groups: int = 1, bias: bool = True) -> int:
    return c_out * (c_in // groups) * k * k + (c_out if bias else 0)


def fc_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def bn_params(c: int) -> int:
    return 2 * c  # weight (gamma) and bias (beta)


def lenet5_params() -> int:
    # LeCun et al. 1998, with C3 fully connected and a Linear output (see specs/lenet5.yaml)
    return (conv_params(1, 6, 5) + conv_params(6, 16, 5) + conv_params(16, 120, 5)
            + fc_params(120, 84) + fc_params(84, 10))


def lenet5_macs() -> int:
    return (conv_macs(28, 1, 6, 5) + conv_macs(10, 6, 16, 5) + conv_macs(1, 16, 120, 5)
            + 120 * 84 + 84 * 10)


def alexnet_macs() -> int:
    # torchvision AlexNet: 224 -> conv1 (k11 s4 p2) 55 -> pool 27 -> pool 13 -> pool 6
    return (conv_macs(55, 3, 64, 11) + conv_macs(27, 64, 192, 5) + conv_macs(13, 192, 384, 3)
            + conv_macs(13, 384, 256, 3) + conv_macs(13, 256, 256, 3)
            + 256 * 6 * 6 * 4096 + 4096 * 4096 + 4096 * 1000)


VGG16_CFG = [(224, [64, 64]), (112, [128, 128]), (56, [256] * 3), (28, [512] * 3),
             (14, [512] * 3)]  # Simonyan & Zisserman 2014, Table 1, configuration D


def vgg16_macs() -> int:
    total, c = 0, 3
    for hw, widths in VGG16_CFG:
        for w in widths:
            total += conv_macs(hw, c, w, 3)
            c = w
    return total + 512 * 7 * 7 * 4096 + 4096 * 4096 + 4096 * 1000


def alexnet_params() -> int:
    return (conv_params(3, 64, 11) + conv_params(64, 192, 5) + conv_params(192, 384, 3)
            + conv_params(384, 256, 3) + conv_params(256, 256, 3)
            + fc_params(256 * 6 * 6, 4096) + fc_params(4096, 4096) + fc_params(4096, 1000))


def vgg16_params() -> int:
    total, c = 0, 3
    for _, widths in VGG16_CFG:
        for w in widths:
            total += conv_params(c, w, 3)
            c = w
    return total + fc_params(25088, 4096) + fc_params(4096, 4096) + fc_params(4096, 1000)


def resnet_figures(bottleneck: bool, blocks: list[int]) -> tuple[int, int]:
    """(params, MACs) of a torchvision ResNet (v1.5) at 224x224, 1000 classes."""
    params = conv_params(3, 64, 7, bias=False) + bn_params(64)
    macs = conv_macs(112, 3, 64, 7)
    c, hw = 64, 56  # after the stride-2 maxpool
    for stage, n in enumerate(blocks):
        planes = 64 * 2 ** stage
        out = planes * 4 if bottleneck else planes
        for i in range(n):
            stride = 2 if stage > 0 and i == 0 else 1
            o = hw // stride
            if bottleneck:
                convs = [(c, planes, 1, hw), (planes, planes, 3, o), (planes, out, 1, o)]
            else:
                convs = [(c, planes, 3, o), (planes, planes, 3, o)]
            if stride != 1 or c != out:
                convs.append((c, out, 1, o))  # the downsample projection
            for ci, co, k, ohw in convs:
                params += conv_params(ci, co, k, bias=False) + bn_params(co)
                macs += conv_macs(ohw, ci, co, k)
            c, hw = out, o
    return params + fc_params(c, 1000), macs + c * 1000


MOBILENET_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 \
    + [(1024, 2), (1024, 1)]  # Howard et al. 2017, Table 1 (last depthwise stride 1)


def mobilenet_v1_figures() -> tuple[int, int]:
    params = conv_params(3, 32, 3, bias=False) + bn_params(32)
    macs = conv_macs(112, 3, 32, 3)
    c, hw = 32, 112
    for out, stride in MOBILENET_V1:
        hw //= stride
        params += conv_params(c, c, 3, groups=c, bias=False) + bn_params(c)
        params += conv_params(c, out, 1, bias=False) + bn_params(out)
        macs += conv_macs(hw, c, c, 3, groups=c) + conv_macs(hw, c, out, 1)
        c = out
    return params + fc_params(1024, 1000), macs + 1024 * 1000


MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]  # Sandler et al. 2018, Table 2: t, c, n, s


def mobilenet_v2_figures() -> tuple[int, int]:
    params = conv_params(3, 32, 3, bias=False) + bn_params(32)
    macs = conv_macs(112, 3, 32, 3)
    c, hw = 32, 112
    for t, out, n, s in MOBILENET_V2:
        for i in range(n):
            stride = s if i == 0 else 1
            h = c * t
            o = hw // stride
            if t != 1:
                params += conv_params(c, h, 1, bias=False) + bn_params(h)
                macs += conv_macs(hw, c, h, 1)
            params += conv_params(h, h, 3, groups=h, bias=False) + bn_params(h)
            params += conv_params(h, out, 1, bias=False) + bn_params(out)
            macs += conv_macs(o, h, h, 3, groups=h) + conv_macs(o, h, out, 1)
            c, hw = out, o
    params += conv_params(320, 1280, 1, bias=False) + bn_params(1280)
    macs += conv_macs(7, 320, 1280, 1)
    return params + fc_params(1280, 1000), macs + 1280 * 1000


def rf_of(windows: list[tuple[int, int]]) -> int:
    """Receptive-field size after a chain of (kernel, stride) windows (Araujo et al. 2019):
    each window adds (kernel - 1) x the current jump, and multiplies the jump by its stride."""
    size, jump = 1, 1
    for k, s in windows:
        size += (k - 1) * jump
        jump *= s
    return size


def resnet_rf(blocks: list[int], convs_per_block: int) -> int:
    """3x3 convs only (1x1 convs add nothing); the first block of stages 2-4 has stride 2."""
    windows = [(7, 2), (3, 2)]  # conv1, maxpool
    for stage, n in enumerate(blocks):
        for i in range(n):
            windows.append((3, 2 if stage > 0 and i == 0 else 1))
            windows += [(3, 1)] * (convs_per_block - 1)
    return rf_of(windows)


DERIVED_RF = {
    "lenet5": rf_of([(5, 1), (2, 2), (5, 1), (2, 2), (5, 1)]),
    "alexnet": rf_of([(11, 4), (3, 2), (5, 1), (3, 2), (3, 1), (3, 1), (3, 1), (3, 2)]),
    "vgg16": rf_of([w for _, widths in VGG16_CFG for w in [(3, 1)] * len(widths) + [(2, 2)]]),
    "resnet18": resnet_rf([2, 2, 2, 2], 2),
    "resnet50": resnet_rf([3, 4, 6, 3], 1),
    "mobilenet_v1": rf_of([(3, 2)] + [(3, s) for _, s in MOBILENET_V1]),
    "mobilenet_v2": rf_of([(3, 2)] + [(3, s if i == 0 else 1)
                                      for _, _, n, s in MOBILENET_V2 for i in range(n)]),
}


# ----------------------------------------------------------------- published figures
# spec stem -> exact params, MACs, per-sample output, and (layer, receptive-field size).
# Receptive fields: published in the receptive_field library's table (Araujo et al.,
# google-research/receptive_field RECEPTIVE_FIELD_TABLE.md: alexnet_v2/pool5 195,
# vgg_16/pool5 212, mobilenet_v1/Conv2d_13_pointwise 315); the others are derived by
# DERIVED_RF. (That table's resnet_v1_50/block4 483 is TF-Slim's ResNet, which strides
# in the last unit of each block; torchvision's v1.5 gives 427.)
PUBLISHED = {
    # d2l.ai "LeNet" and most re-implementations: 61,706 params (tanh, full C3, Linear
    # output); MACs derived (the paper quotes no total).
    "lenet5": dict(params=61_706, macs=lenet5_macs(), output=[10], rf=("c5", 32)),
    # torchvision AlexNet_Weights.IMAGENET1K_V1: num_params 61,100,840; _ops 0.714.
    "alexnet": dict(params=61_100_840, macs=alexnet_macs(), ops=0.714, output=[1000],
                    rf=("pool5", 195)),
    # torchvision VGG16_Weights.IMAGENET1K_V1: num_params 138,357,544; _ops 15.47.
    "vgg16": dict(params=138_357_544, macs=vgg16_macs(), ops=15.47, output=[1000],
                  rf=("features.30", 212)),
    # torchvision ResNet18_Weights.IMAGENET1K_V1: num_params 11,689,512; _ops 1.814.
    "resnet18": dict(params=11_689_512, macs=1_814_073_344, ops=1.814, output=[1000],
                     rf=("layer4", 435)),
    # torchvision ResNet50_Weights.IMAGENET1K_V1: num_params 25,557,032; _ops 4.089.
    "resnet50": dict(params=25_557_032, macs=4_089_184_256, ops=4.089, output=[1000],
                     rf=("layer4", 427)),
    # Howard et al. 2017, Table 2: 569 M mult-adds, 4.2 M params; exact params: Keras
    # applications.MobileNet(alpha=1.0) "Trainable params: 4,231,976".
    "mobilenet_v1": dict(params=4_231_976, macs=mobilenet_v1_figures()[1],
                         output=[1000], rf=("ds13", 315)),
    # torchvision MobileNet_V2_Weights.IMAGENET1K_V1: num_params 3,504,872; _ops 0.301.
    "mobilenet_v2": dict(params=3_504_872, macs=mobilenet_v2_figures()[1], ops=0.301,
                         output=[1000], rf=("head", 491)),
}

# The torchvision models specs/ adds beyond the table above, against their Weights
# metadata (IMAGENET1K_V1 ``num_params`` and ``_ops``), each spec's MACs exact in its
# ``expect:``; tests/test_torchvision_oracle.py builds the models themselves.
TORCHVISION_META = {
    "densenet121": (7_978_856, 2.834),
    "googlenet": (6_624_904, 1.498),        # aux_logits=False, as the weights' model
    "squeezenet1_0": (1_248_424, 0.819),
    "efficientnet_b0": (5_288_548, 0.386),
    "mobilenet_v3_small": (2_542_856, 0.057),
}

DERIVED_PARAMS = {
    "lenet5": lenet5_params(),
    "alexnet": alexnet_params(),
    "vgg16": vgg16_params(),
    "resnet18": resnet_figures(False, [2, 2, 2, 2])[0],
    "resnet50": resnet_figures(True, [3, 4, 6, 3])[0],
    "mobilenet_v1": mobilenet_v1_figures()[0],
    "mobilenet_v2": mobilenet_v2_figures()[0],
}
DERIVED_MACS = {
    "resnet18": resnet_figures(False, [2, 2, 2, 2])[1],
    "resnet50": resnet_figures(True, [3, 4, 6, 3])[1],
}


def analyze(name: str, batch: int = 1) -> netcalc.Report:
    return netcalc.analyze(SPECS / f"{name}.yaml", batch=batch)


def rf_size(report: netcalc.Report, name: str):
    """Receptive-field size of a layer, or of the last layer of a block instance."""
    rows = [r for r in report.layers if r.name == name or r.name.startswith(name + ".")]
    rf = rows[-1].rf
    assert rf is not None and not rf.global_, f"{name}: no finite receptive field"
    sizes = {d.size for d in rf.dims}
    assert len(sizes) == 1, f"{name}: non-square field {sizes}"
    return sizes.pop()


# ----------------------------------------------------------------- the figures agree
@pytest.mark.parametrize("name", sorted(DERIVED_PARAMS))
def test_derived_params_match_published(name):
    assert DERIVED_PARAMS[name] == PUBLISHED[name]["params"]


@pytest.mark.parametrize("name", sorted(DERIVED_MACS))
def test_derived_macs_match_published(name):
    assert DERIVED_MACS[name] == PUBLISHED[name]["macs"]


@pytest.mark.parametrize("name", sorted(DERIVED_RF))
def test_derived_receptive_fields_match_published(name):
    assert DERIVED_RF[name] == PUBLISHED[name]["rf"][1]


@pytest.mark.parametrize("name", sorted(n for n in PUBLISHED if "ops" in PUBLISHED[n]))
def test_macs_round_to_torchvision_ops(name):
    # torchvision's _ops: GFLOPS (= G multiply-accumulates), rounded to the decimals it prints
    fig = PUBLISHED[name]
    decimals = len(str(fig["ops"]).split(".")[1])
    assert round(fig["macs"] / 1e9, decimals) == fig["ops"]


@pytest.mark.parametrize("name", sorted(TORCHVISION_META))
def test_torchvision_spec_matches_weights_meta(name):
    params, ops = TORCHVISION_META[name]
    report = analyze(name)
    expect = netcalc.load(SPECS / f"{name}.yaml").expect
    assert report.totals.params == expect["params"] == params
    assert report.totals.macs == expect["macs"]
    assert round(report.totals.macs / 1e9, 3) == ops
    assert [list(s)[1:] for s in report.outputs.values()] == [[1000]]


def test_mobilenet_v1_macs_round_to_the_paper():
    # Howard et al. 2017, Table 2: "569" million mult-adds for 1.0 MobileNet-224
    assert round(PUBLISHED["mobilenet_v1"]["macs"] / 1e6) == 569


def test_mobilenet_v1_params_split():
    # the 4,231,976 = conv weights (no bias) + BatchNorm gamma/beta + fc with bias
    bn_channels = 32 + sum(c_in + c_out for c_in, c_out in
                           zip([32] + [c for c, _ in MOBILENET_V1[:-1]], [c for c, _ in MOBILENET_V1]))
    assert 2 * bn_channels == 21_888  # Keras: "Non-trainable params: 21,888" (running stats)


# ----------------------------------------------------------------- netcalc on the specs
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_spec_matches_published(name):
    fig = PUBLISHED[name]
    report = analyze(name)
    assert report.totals.params == fig["params"]
    assert report.totals.macs == fig["macs"]
    assert [list(s)[1:] for s in report.outputs.values()] == [fig["output"]]
    assert [s[0] for s in report.outputs.values()] == [1]
    layer, size = fig["rf"]
    assert rf_size(report, layer) == size


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_spec_expect_block_agrees(name):
    """The spec's own `expect:` block states the same figures as this test."""
    spec = netcalc.load(SPECS / f"{name}.yaml")
    expect = dict(spec.expect or {})
    fig = PUBLISHED[name]
    assert expect.get("params") == fig["params"]
    assert expect.get("macs") == fig["macs"]
    assert list(expect.get("output")) == fig["output"]
    assert dict(expect.get("receptive_field")) == dict([fig["rf"]])


def test_spec_library_header_cites_schema():
    for path in SPEC_FILES:
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../netcalc.schema.json", path.name


def test_resnet50_spec_is_short():
    # the issue asks for ResNet-50 in under 60 lines, with blocks and repeat
    text = (SPECS / "resnet50.yaml").read_text()
    assert len(text.splitlines()) < 60
    assert "blocks:" in text and "repeat:" in text


def test_resnet50_names_follow_torchvision():
    names = {row.name for row in analyze("resnet50").layers}
    for expected in ("conv1", "bn1", "maxpool", "layer1.0.conv1", "layer1.0.downsample.0",
                     "layer1.0.downsample.1", "layer3.5.conv3", "layer4.2.relu", "avgpool", "fc"):
        assert expected in names, expected
    # 53 convs (49 main-path + 4 downsample) and 1 fc, as torchvision's resnet50
    types = [row.type for row in analyze("resnet50").layers]
    assert types.count("Conv2d") == 53 and types.count("Linear") == 1


def test_resnet50_downsample_paths_are_aligned():
    # v1.5: the 1x1 stride-2 projection and the 3x3 stride-2 main path see windows
    # centred on the same pixels, so merges are aligned
    report = analyze("resnet50")
    adds = [row for row in report.layers if row.type == "Add"]
    assert len(adds) == 16
    assert all(row.rf.aligned for row in adds)


def test_resnet50_layer_shapes():
    shapes = {row.name: row.shape for row in analyze("resnet50").layers}
    assert shapes["conv1"] == (1, 64, 112, 112)
    assert shapes["maxpool"] == (1, 64, 56, 56)
    assert shapes["layer1.2.relu"] == (1, 256, 56, 56)
    assert shapes["layer2.0.conv2"] == (1, 128, 28, 28)  # stride on the 3x3 (v1.5)
    assert shapes["layer2.3.relu"] == (1, 512, 28, 28)
    assert shapes["layer3.5.relu"] == (1, 1024, 14, 14)
    assert shapes["layer4.2.relu"] == (1, 2048, 7, 7)
    assert shapes["avgpool"] == (1, 2048, 1, 1)
    assert shapes["flatten"] == (1, 2048)


# ----------------------------------------------------------------- every spec
@pytest.mark.parametrize("path", SPEC_FILES, ids=spec_id)
def test_layer_rows_sum_to_totals(path):
    report = netcalc.analyze(path)
    for key in ("params", "trainable_params", "buffers", "macs", "flops", "weight_bytes",
                "activation_bytes"):
        assert sum(getattr(r, key) for r in report.layers) == getattr(report.totals, key), key


@pytest.mark.parametrize("path", SPEC_FILES, ids=spec_id)
def test_batch_scaling(path):
    one, eight = netcalc.analyze(path, batch=1), netcalc.analyze(path, batch=8)
    assert eight.totals.macs == 8 * one.totals.macs
    # FLOPs and activations are affine in the batch: a rotary embedding's cos/sin table
    # (computed once per forward for the positions, as Hugging Face's rotary modules do)
    # and a tensor without a batch dim (T5's position bias, Whisper's positions) do not scale
    two = netcalc.analyze(path, batch=2)
    for r1, r2, r8 in zip(one.layers, two.layers, eight.layers):
        for key in ("flops", "activation_bytes"):
            v1, v2, v8 = getattr(r1, key), getattr(r2, key), getattr(r8, key)
            assert v8 - v1 == 7 * (v2 - v1) and v2 >= v1, (r1.name, key)
    assert eight.totals.params == one.totals.params
    assert eight.totals.buffers == one.totals.buffers
    for name, shape in one.outputs.items():  # the batch is dim 0, or dim 1 of an RNN's h_n
        assert prod(eight.outputs[name]) == 8 * prod(shape), name


@pytest.mark.parametrize("path", SPEC_FILES, ids=spec_id)
def test_weight_bytes_follow_dtype(path):
    f32 = netcalc.analyze(path, dtype="float32")
    f16 = netcalc.analyze(path, dtype="float16")
    assert f32.totals.weight_bytes == 4 * f32.totals.params
    assert f16.totals.weight_bytes == 2 * f16.totals.params


# ----------------------------------------------------------------- golden files
def golden_of(report: netcalc.Report) -> dict:
    d = report_dict(report)
    return {"totals": d["totals"], "outputs": d["outputs"]}


@pytest.mark.parametrize("path", SPEC_FILES, ids=spec_id)
def test_golden(path):
    target = GOLDEN / f"{path.stem}.json"
    actual = golden_of(netcalc.analyze(path))
    if UPDATE_GOLDEN:
        GOLDEN.mkdir(exist_ok=True)
        target.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
        return
    assert target.exists(), (f"no golden file {target.name}: run "
                             "NETCALC_UPDATE_GOLDEN=1 pytest tests/test_specs.py")
    assert actual == json.loads(target.read_text()), (
        f"{path.name} differs from {target.name}; if the change is intended, rerun with "
        "NETCALC_UPDATE_GOLDEN=1")


def test_no_orphan_golden_files():
    stems = {p.stem for p in SPEC_FILES}
    orphans = [p.name for p in GOLDEN.glob("*.json") if p.stem not in stems]
    if UPDATE_GOLDEN:
        for name in orphans:
            (GOLDEN / name).unlink()
        return
    assert not orphans, f"golden files without a spec: {orphans}"


# ----------------------------------------------------------------- the seeds' examples
def test_seed_conv_3_to_16_k5_on_28():
    # seed notes: Conv2d(3 -> 16, kernel 5) on a 28x28 image gives 16 maps of 24x24
    report = analyze_text("""
input: [3, 28, 28]
layers:
  - Conv2d: {out_channels: 16, kernel_size: 5}
""", batch=4)
    assert report.layers[0].shape == (4, 16, 24, 24)
    assert report.totals.params == 16 * 3 * 5 * 5 + 16
    assert report.totals.macs == 4 * 24 * 24 * 16 * 3 * 5 * 5


def test_seed_3x3_conv_macs_and_weights():
    # seed notes (004), for a 3x3 conv 3 -> 64, padding 1, on 32x32:
    #   "Number of Multiply-Adds = 32 x 32 x 3 x 3 x 3 x 64 = 1,179,648"
    #   "Number of Weights = K_H x K_W x C_in x C_out" = 1,728.
    # The seed's formula is right but its product is an arithmetic slip: 32*32*3*3*3*64 is
    # 1,769,472 (1,179,648 would be 32*32*3*3*128). netcalc follows the formula.
    assert 32 * 32 * 3 * 3 * 3 * 64 == 1_769_472 != 1_179_648
    report = analyze_text("""
input: [3, 32, 32]
layers:
  - {name: conv, Conv2d: {out_channels: 64, kernel_size: 3, padding: 1, bias: false}}
""")
    row = report.layers[0]
    assert row.shape == (1, 64, 32, 32)
    assert row.macs == 32 * 32 * 3 * 3 * 3 * 64 == 1_769_472
    assert row.params == 3 * 3 * 3 * 64 == 1_728
    assert report.graph.by_name["conv"].layer.weight_shape() == (64, 3, 3, 3)
    with_bias = analyze_text("""
input: [3, 32, 32]
layers:
  - Conv2d: {out_channels: 64, kernel_size: 3, padding: 1}
""")
    assert with_bias.totals.params == 1_728 + 64
    assert with_bias.totals.macs == 1_769_472  # the bias add is not a MAC


def test_seed_ten_5x5_convs_on_240():
    # seed notes (000): "If we start with a (240 x 240) pixel image, 10 layers of (5 x 5)
    # convolutions reduce the image to (200 x 200) pixels"; receptive field 1 + 10*4 = 41
    report = analyze_text("""
input: [1, 240, 240]
layers:
  - {name: conv, Conv2d: {out_channels: 1, kernel_size: 5}, repeat: 10}
""")
    last = report.layers[-1]
    assert len(report.layers) == 10
    assert last.name == "conv.9"
    assert last.shape == (1, 1, 200, 200)
    assert [d.size for d in last.rf.dims] == [41, 41] == [1 + 10 * (5 - 1)] * 2
    assert [d.stride for d in last.rf.dims] == [1, 1]
    # the first output unit is centred on input pixel 20 (no padding): 10 * (5-1)/2
    assert [d.start for d in last.rf.dims] == [Fraction(20)] * 2


# ----------------------------------------------------------------- torch reference models
# torchvision is not a dependency, so the CNNs are rebuilt here from torch.nn primitives,
# following torchvision/models/{alexnet,vgg,resnet,mobilenetv2}.py; their counts must be
# the published ones above, and netcalc's analysis of the specs must equal them.

def _torch_models():
    import torch
    from torch import nn

    def cbr(c_in, c_out, k, stride=1, groups=1, act=nn.ReLU):
        return [nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, groups=groups, bias=False),
                nn.BatchNorm2d(c_out), act()]

    def lenet5():
        return nn.Sequential(nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5),
                             nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(16, 120, 5), nn.Tanh(),
                             nn.Flatten(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10))

    def alexnet():
        return nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(), nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(), nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.AdaptiveAvgPool2d(6), nn.Flatten(), nn.Dropout(), nn.Linear(9216, 4096), nn.ReLU(),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))

    def vgg16():
        layers, c = [], 3
        for _, widths in VGG16_CFG:
            for w in widths:
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
                c = w
            layers.append(nn.MaxPool2d(2))
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(7), nn.Flatten(),
                             nn.Linear(25088, 4096), nn.ReLU(), nn.Dropout(),
                             nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(), nn.Linear(4096, 1000))

    class Residual(nn.Module):
        def __init__(self, main, shortcut, post=None):
            super().__init__()
            self.main, self.shortcut, self.post = main, shortcut, post or nn.Identity()

        def forward(self, x):
            return self.post(self.main(x) + self.shortcut(x))

    def resnet(bottleneck, blocks):
        layers = cbr(3, 64, 7, 2) + [nn.MaxPool2d(3, 2, 1)]
        c = 64
        for stage, n in enumerate(blocks):
            planes = 64 * 2 ** stage
            out = planes * 4 if bottleneck else planes
            for i in range(n):
                s = 2 if stage > 0 and i == 0 else 1
                if bottleneck:  # v1.5: the stride on the 3x3
                    main = cbr(c, planes, 1) + cbr(planes, planes, 3, s) + cbr(planes, out, 1)[:2]
                else:
                    main = cbr(c, planes, 3, s) + cbr(planes, planes, 3)[:2]
                short = (nn.Sequential(nn.Conv2d(c, out, 1, s, bias=False), nn.BatchNorm2d(out))
                         if s != 1 or c != out else nn.Identity())
                layers.append(Residual(nn.Sequential(*main), short, nn.ReLU()))
                c = out
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 1000))

    def mobilenet_v1():
        layers, c = cbr(3, 32, 3, 2), 32
        for out, s in MOBILENET_V1:
            layers += cbr(c, c, 3, s, groups=c) + cbr(c, out, 1)
            c = out
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, 1000))

    def mobilenet_v2():
        layers, c = cbr(3, 32, 3, 2, act=nn.ReLU6), 32
        for t, out, n, s in MOBILENET_V2:
            for i in range(n):
                stride, h = (s if i == 0 else 1), c * t
                block = (cbr(c, h, 1, act=nn.ReLU6) if t != 1 else []) \
                    + cbr(h, h, 3, stride, groups=h, act=nn.ReLU6) + cbr(h, out, 1)[:2]
                block = nn.Sequential(*block)
                layers.append(Residual(block, nn.Identity()) if stride == 1 and c == out else block)
                c = out
        layers += cbr(320, 1280, 1, act=nn.ReLU6)
        return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2),
                             nn.Linear(1280, 1000))

    return torch, nn, {
        "lenet5": (lenet5, (1, 32, 32)), "alexnet": (alexnet, (3, 224, 224)),
        "vgg16": (vgg16, (3, 224, 224)),
        "resnet18": (lambda: resnet(False, [2, 2, 2, 2]), (3, 224, 224)),
        "resnet50": (lambda: resnet(True, [3, 4, 6, 3]), (3, 224, 224)),
        "mobilenet_v1": (mobilenet_v1, (3, 224, 224)), "mobilenet_v2": (mobilenet_v2, (3, 224, 224)),
    }


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_torch_reference_model(name):
    pytest.importorskip("torch")
    torch, nn, models = _torch_models()
    make, shape = models[name]
    model = make().eval()
    macs = 0

    def count(module, inputs, output):
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            macs += output.numel() * module.in_channels // module.groups \
                * module.kernel_size[0] * module.kernel_size[1]
        else:
            macs += output.numel() * module.in_features

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_hook(count)
    with torch.no_grad():
        y = model(torch.zeros(2, *shape))
    report = analyze(name, batch=2)
    params = sum(p.numel() for p in model.parameters())
    assert params == PUBLISHED[name]["params"] == report.totals.params
    assert macs == 2 * PUBLISHED[name]["macs"] == report.totals.macs
    assert sum(b.numel() for b in model.buffers()) == report.totals.buffers
    assert [tuple(y.shape)] == list(report.outputs.values())
