"""Regression tests for engine bugs found by the torch cross-check and the property
tests (tests/test_property.py). Each names the disagreement it fixed; the analytic
side runs without torch, the torch side (when installed) shows PyTorch's behaviour."""

from __future__ import annotations

import pytest

import netcalc
from netcalc.errors import SpecError

from conftest import analyze_text


def _one(input_: str, layer: str, batch: int = 1) -> netcalc.Report:
    return analyze_text(f"name: r\ninput: {input_}\nlayers:\n  - {layer}\n", batch=batch)


def _torch_refuses(module_factory, shape) -> bool:
    torch = pytest.importorskip("torch")
    try:
        module_factory(torch.nn).eval()(torch.randn(*shape))
    except (RuntimeError, ValueError):
        return True
    return False


# --------------------------------------------------------------------------- conv padding
@pytest.mark.parametrize("mode,pad,ok", [("reflect", 1, False), ("reflect", 0, True),
                                         ("circular", 1, True), ("circular", 2, False),
                                         ("replicate", 3, True)])
def test_conv_padding_mode_needs_padding_within_the_input(mode, pad, ok):
    """Conv with padding_mode reflect needs padding < input size, circular <= (F.pad);
    netcalc accepted `padding: same, padding_mode: reflect` on a size-1 dim."""
    layer = f"{{Conv1d: {{out_channels: 1, kernel_size: 1, padding: {pad}, padding_mode: {mode}}}}}"
    if ok:
        _one("[1, 1]", layer)
    else:
        with pytest.raises(SpecError, match="padding_mode"):
            _one("[1, 1]", layer)
    refused = _torch_refuses(lambda nn: nn.Conv1d(1, 1, 1, padding=pad, padding_mode=mode),
                             (1, 1, 1))
    assert refused == (not ok)


def test_conv_same_padding_reflect_on_a_size_one_dim():
    with pytest.raises(SpecError, match="padding_mode='reflect' needs padding < the input size 1"):
        _one("[1, 1, 3, 3]", "{Conv3d: {out_channels: 1, kernel_size: [2, 1, 1], padding: same, "
             "padding_mode: reflect}}")


# --------------------------------------------------------------------------- AvgPool3d
def test_avgpool3d_input_smaller_than_kernel_is_refused_even_with_padding():
    """ATen's avg_pool3d checks the raw input against the kernel ('input image (T: 1 H: 3
    W: 3) smaller than kernel size'); 1-d/2-d avg pools and max pools do not."""
    with pytest.raises(SpecError, match="smaller than kernel_size"):
        _one("[1, 1, 3, 3]", "{AvgPool3d: {kernel_size: [2, 1, 1], stride: 1, padding: [1, 0, 0]}}")
    assert _one("[1, 1, 3]", "{AvgPool2d: {kernel_size: [2, 1], stride: 1, padding: [1, 0]}}"
                ).layers[0].shape == (1, 1, 2, 3)
    assert _one("[1, 1, 3, 3]", "{MaxPool3d: {kernel_size: [2, 1, 1], stride: 1, "
                "padding: [1, 0, 0]}}").layers[0].shape == (1, 1, 2, 3, 3)
    assert _torch_refuses(lambda nn: nn.AvgPool3d((2, 1, 1), 1, (1, 0, 0)), (1, 1, 1, 3, 3))
    assert not _torch_refuses(lambda nn: nn.MaxPool3d((2, 1, 1), 1, (1, 0, 0)), (1, 1, 1, 3, 3))


# --------------------------------------------------------------------------- norms
@pytest.mark.parametrize("layer,shape,batch", [
    ("{BatchNorm1d: {track_running_stats: false}}", "[1, 1]", 1),
    ("{BatchNorm2d: {track_running_stats: false}}", "[3, 1, 1]", 1),
    ("InstanceNorm2d", "[3, 1, 1]", 4),
    ("{GroupNorm: 3}", "[3, 1, 1]", 1),
])
def test_statistics_of_a_single_value_are_refused(layer, shape, batch):
    """torch refuses batch/instance/group statistics over one value, in eval too
    ("Expected more than 1 value per channel when training")."""
    with pytest.raises(SpecError, match="torch refuses it"):
        _one(shape, layer, batch=batch)


def test_statistics_of_two_values_and_running_statistics_are_fine():
    _one("[1, 1]", "{BatchNorm1d: {track_running_stats: false}}", batch=2)
    _one("[3, 1, 1]", "BatchNorm2d", batch=1)  # running statistics in eval
    _one("[3, 1, 1]", "{InstanceNorm2d: {track_running_stats: true}}")
    _one("[3, 2, 1]", "{GroupNorm: 3}")
    torch = pytest.importorskip("torch")
    assert _torch_refuses(lambda nn: nn.BatchNorm2d(3, track_running_stats=False), (1, 3, 1, 1))
    assert _torch_refuses(lambda nn: nn.InstanceNorm2d(3), (4, 3, 1, 1))
    assert _torch_refuses(lambda nn: nn.GroupNorm(3, 3), (1, 3, 1, 1))
    assert not _torch_refuses(lambda nn: nn.BatchNorm2d(3), (1, 3, 1, 1))
    assert torch is not None


# --------------------------------------------------------------------------- Upsample RF
@pytest.mark.parametrize("layer,size", [
    ("{Upsample: {mode: bilinear, scale_factor: 1}}", 1),          # the identity
    ("{Upsample: {mode: bicubic, scale_factor: 1}}", 1),
    ("{Upsample: {mode: bilinear, size: [3, 3], align_corners: true}}", 1),
    ("{Upsample: {mode: bilinear, size: [5, 5], align_corners: true}}", 1),  # 9->5: r = 2
    ("{Upsample: {mode: bilinear, scale_factor: 2}}", 2),          # half-pixel sources: 2 taps
])
def test_upsample_on_the_pixel_grid_reads_one_pixel(layer, size):
    """Linear/cubic interpolation whose source indices are whole pixels puts weight 0
    on the neighbours: one tap. netcalc said 2 (4 for bicubic); the measured field of
    a scale-1 bilinear Upsample is 1 pixel."""
    report = _one("[1, 9, 9]" if "5, 5" in layer else "[1, 3, 3]", layer)
    assert report.layers[0].rf.dims[0].size == size


def test_upsample_grid_rf_measured():
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    from netcalc.torch.crosscheck import crosscheck

    spec = netcalc.parse("name: u\ninput: [1, 5, 5]\nlayers:\n"
                         "  - {Upsample: {mode: bilinear, scale_factor: 1}}\n"
                         "  - {Conv2d: {out_channels: 1, kernel_size: 3}}\n", "u.yaml")
    rows = [r for r in crosscheck(spec, tools=()).rows if r.metric == "rf"]
    assert [r.verdict for r in rows] == ["match", "match"]
    assert rows[0].torch == [[2, 2], [2, 2]]


def test_flattened_channels_are_probed_together():
    """Property test (tests/test_property.py, random CNNs): after Flatten of a (C, H, W)
    map the probe backpropagated one flat index (unit (1, 1) of channel 0 only) and
    measured [1, 1] x [1, 1] where netcalc says [0, 2] x [0, 2]. The analytic field of a
    position is the union over its channels (Concat of a 1x1 path and a 3x3 path), as
    the unflattened Concat is measured; the flat unit is now every c*9 + 4."""
    pytest.importorskip("torch")
    from netcalc.torch.crosscheck import crosscheck

    spec = netcalc.parse(
        "name: random\ninput: [1, 3, 3]\nlayers:\n"
        "  - {name: l0, Conv2d: {out_channels: 1, kernel_size: [1, 1], stride: [1, 1], "
        "dilation: [1, 1], groups: 1, bias: false, padding: valid}}\n"
        "  - {name: l1, ZeroPad2d: {padding: [0, 0, 0, 0]}}\n"
        "  - {name: l2, Conv2d: {out_channels: 1, kernel_size: 3, padding: 1}, from: l1}\n"
        "  - {name: l3, Concat: ~, from: [l1, l2]}\n"
        "  - {name: l4, Flatten: ~}\n"
        "  - {name: l5, Linear: {out_features: 1}}\n", "random.yaml")
    result = crosscheck(spec, tools=(), rf=True)
    assert not result.mismatches, [r.message for r in result.mismatches]
    rows = {r.layer: r for r in result.rows if r.metric == "rf"}
    assert rows["l3"].torch == rows["l4"].torch == [[0, 2], [0, 2]]
    assert rows["l4"].verdict == "match" and "unit [[4, 13]]" in rows["l4"].rule


# --------------------------------------------------------------------------- issue 12: smaller faults
def _block_spec(body: str, use: str) -> str:
    return (f"name: b\ninput: [8]\nblocks:\n  B:\n    args: {{n: 4, act: ReLU}}\n    layers:\n"
            f"{body}layers:\n  - {use}\n")


@pytest.mark.parametrize("expr,value", [("${n/2}", 2), ("${n*3/6}", 2), ("${7//2 + n}", 7)])
def test_division_is_exact_when_whole(expr, value):
    report = analyze_text(_block_spec(f"      - {{Linear: '{expr}'}}\n", "{B: {n: 4}}"))
    assert report.layers[0].shape == (1, value)


def test_division_with_a_remainder_is_a_located_error():
    """`${7/2}` gave 3.5 though the README promises integer arithmetic."""
    with pytest.raises(SpecError, match=r"t.yaml:7:.*7 / 2 is 3.5, not an integer.*use //"):
        analyze_text(_block_spec("      - {Linear: '${7/2}'}\n", "B"))


def test_division_error_is_one_line_through_the_cli(runner, tmp_path):
    from netcalc.cli import app

    path = tmp_path / "s.yaml"
    path.write_text(_block_spec("      - {Linear: '${n/3}'}\n", "B"))
    result = runner.invoke(app, ["shapes", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "n / 3 is 1.33333, not an integer" in lines[0]


@pytest.mark.parametrize("entry", ["- $act", "- {$act: ~}", "- {name: a, $act: ~}"])
def test_block_argument_as_the_type(entry):
    """`- $act` worked, `- {$act: ~}` said "unknown layer type '$act'"."""
    report = analyze_text(_block_spec(f"      {entry}\n", "{B: {act: GELU}}"))
    assert [r.type for r in report.layers] == ["GELU"]


def test_block_argument_key_must_be_a_string():
    with pytest.raises(SpecError, match="a key must be a string"):
        analyze_text(_block_spec("      - {$n: ~}\n", "B"))


@pytest.mark.parametrize("key,reserved", [("reapeat", "repeat"), ("nmae", "name"),
                                          ("form", "from"), ("trainabel", "trainable"),
                                          ("sparsty", "sparsity")])
def test_misspelt_reserved_key_is_named(key, reserved):
    """`reapeat: 2` beside a type was reported as "several types"."""
    with pytest.raises(SpecError, match=rf"t.yaml:4:.*unknown key '{key}'.*did you mean "
                                        rf"{reserved}\?"):
        analyze_text(f"name: r\ninput: [4]\nlayers:\n  - {{Linear: 2, {key}: 1}}\n")


def test_two_real_types_still_say_several_types():
    with pytest.raises(SpecError, match="several types"):
        analyze_text("name: r\ninput: [4]\nlayers:\n  - {Linear: 2, ReLU: ~}\n")


def test_sparsity_on_a_block_instance_prunes_every_weighted_layer():
    """`sparsity:` on a block instance was silently ignored. It prunes each layer with a
    weight inside (Linear 8->4: 32 weights, half kept, + 4 biases), skips the unweighted
    ones, and a layer's own sparsity wins (4*4 weights, a quarter pruned)."""
    body = ("      - {Linear: 4}\n      - $act\n"
            "      - {Linear: 4, sparsity: 0.25}\n")
    report = analyze_text(_block_spec(body, "{B: ~, sparsity: 0.5}"))
    rows = {r.type + str(i): r for i, r in enumerate(report.layers)}
    assert [(r.params, r.nonzero_params, r.macs, r.nonzero_macs) for r in rows.values()] == [
        (36, 36 - 16, 32, 16), (0, None, 0, None), (20, 20 - 4, 16, 12)]
    assert report.totals.nonzero_params == 20 + 0 + 16


def test_sparsity_on_a_block_reaches_nested_blocks():
    spec = ("name: n\ninput: [8]\nblocks:\n  In:\n    layers: [{Linear: 8}]\n"
            "  Out:\n    layers: [In, ReLU]\nlayers:\n  - {Out: ~, sparsity: 0.75}\n")
    row = analyze_text(spec).layers[0]
    assert (row.params, row.nonzero_params) == (72, 72 - 48)
