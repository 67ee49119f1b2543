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
