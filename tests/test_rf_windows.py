"""Windowed (uneven) receptive fields: Swin's window attention, exact, against autograd.

The engine's fields (netcalc.rfperiod) are compared with the probe, which backpropagates
from every unit of one period to the input on CPU (netcalc.torch.rf_probe), and with
sizes derived by hand from the architecture: a 2x2 stride-2 stem makes unit p see input
pixels [2p, 2p+1]; window attention over windows of 7 units makes it see its window
(14 pixels); the shifted block (roll -3, windows, roll +3) sees a window that straddles
two of the first block's (28 pixels); a patch merging joins units 2p and 2p+1 (42 where
they straddle a shifted window's edge).
"""

from __future__ import annotations

import json
import re

import pytest

import netcalc
from conftest import SPECS, analyze_text

pytest.importorskip("torch")

from netcalc.torch.build import prepare  # noqa: E402
from netcalc.torch.rf_probe import empirical_rf  # noqa: E402


def window_block(shifted: bool, nw: int = 4) -> str:
    """Swin's shifted window attention on a (7 nw)^2 channel-last map of 8 channels,
    nw x nw windows of 7x7, 2 heads of 4, written as specs/swin_t.yaml writes it."""
    roll = "      - {name: shift, Roll: {shifts: [-3, -3], dims: [1, 2]}}\n" if shifted else ""
    unroll = "      - {name: unshift, Roll: {shifts: [3, 3], dims: [1, 2]}}\n" if shifted else ""
    mask = (f"      - {{name: attn_mask, Constant: [{nw * nw}, 1, 49, 49]}}\n"
            "      - {name: masked, Add: ~, from: [biased, attn_mask]}\n") if shifted else ""
    return (roll +
            f"      - {{name: windows, Reshape: [{nw}, 7, {nw}, 7, 8]}}\n"
            "      - {name: window_major, Permute: [0, 1, 3, 2, 4, 5]}\n"
            f"      - {{name: tokens, Reshape: [{nw * nw}, 49, 8]}}\n"
            "      - {name: qkv, Linear: 24}\n"
            f"      - {{name: split_heads, Reshape: [{nw * nw}, 49, 3, 2, 4]}}\n"
            "      - {name: qkv_major, Permute: [0, 3, 1, 4, 2, 5]}\n"
            "      - {name: q, Select: {dim: 1, index: 0}}\n"
            "      - {name: k, Select: {dim: 1, index: 1}, from: qkv_major}\n"
            "      - {name: v, Select: {dim: 1, index: 2}, from: qkv_major}\n"
            "      - {name: k_t, Permute: [0, 1, 2, 4, 3], from: k}\n"
            "      - {name: scores, MatMul: ~, from: [q, k_t]}\n"
            "      - {name: table, Parameter: [2, 49, 49]}\n"
            "      - {name: biased, Add: ~, from: [scores, table]}\n" + mask +
            "      - {name: probs, Softmax: -1}\n"
            "      - {name: context, MatMul: ~, from: [probs, v]}\n"
            "      - {name: merge_heads, Permute: [0, 1, 3, 2, 4]}\n"
            f"      - {{name: merged, Reshape: [{nw * nw}, 49, 8]}}\n"
            "      - {name: proj, Linear: 8}\n"
            f"      - {{name: window_grid, Reshape: [{nw}, {nw}, 7, 7, 8]}}\n"
            "      - {name: map_order, Permute: [0, 1, 3, 2, 4, 5]}\n"
            f"      - {{name: map, Reshape: [{7 * nw}, {7 * nw}, 8]}}\n" + unroll)


def spec(nw: int) -> str:
    """Stem (2x2, stride 2), a window block, a shifted one, then a patch merging."""
    return f"""
input: [3, {14 * nw}, {14 * nw}]
blocks:
  Plain:
    layers:
      - {{name: norm1, LayerNorm: 8}}
{window_block(False, nw)}      - {{name: add, Add: ~, from: [map, input]}}
      - {{name: mlp, Linear: 8}}
  Shifted:
    layers:
      - {{name: norm1, LayerNorm: 8}}
{window_block(True, nw)}      - {{name: add, Add: ~, from: [unshift, input]}}
      - {{name: mlp, Linear: 8}}
layers:
  - {{name: stem, Conv2d: {{out_channels: 8, kernel_size: 2, stride: 2}}}}
  - {{name: last, Permute: [0, 2, 3, 1]}}
  - {{name: b1, Plain: ~}}
  - {{name: b2, Shifted: ~}}
  - {{name: rows_even, Slice: {{dim: 1, start: 0, step: 2}}}}
  - {{name: rows_odd, Slice: {{dim: 1, start: 1, step: 2}}, from: b2}}
  - {{name: x0, Slice: {{dim: 2, start: 0, step: 2}}, from: rows_even}}
  - {{name: x1, Slice: {{dim: 2, start: 0, step: 2}}, from: rows_odd}}
  - {{name: x2, Slice: {{dim: 2, start: 1, step: 2}}, from: rows_even}}
  - {{name: x3, Slice: {{dim: 2, start: 1, step: 2}}, from: rows_odd}}
  - {{name: merge, Concat: -1, from: [x0, x1, x2, x3]}}
  - {{name: reduce, Linear: 16}}
  - {{name: conv, Permute: [0, 3, 1, 2]}}
  - {{name: pool, MaxPool2d: {{kernel_size: 3, stride: 2}}}}
"""


SPEC = spec(4)  # 56 x 56 pixels, 28 x 28 units, 4 x 4 windows

#: layer -> (size per dim, period per dim, jump per dim), derived by hand (module doc)
EXPECTED = {
    "stem": ([2, 2], None, [2, 2]),
    "b1.tokens": ([2, 2], None, [2, 2]),           # a reshape moves no position
    "b1.scores": ([14, 14], [7, 7], [2, 2]),      # query and key tokens: the window
    "b1.context": ([14, 14], [7, 7], [2, 2]),
    "b1.map": ([14, 14], [7, 7], [2, 2]),         # back on the map, each unit its window
    "b1.mlp": ([14, 14], [7, 7], [2, 2]),
    "b2.shift": ([14, 14], [7, 7], [2, 2]),       # a translation
    "b2.probs": ([28, 28], [7, 7], [2, 2]),       # a shifted window spans two windows
    "b2.mlp": ([28, 28], [7, 7], [2, 2]),
    "x1": ([28, 28], [7, 7], [4, 4]),
    "merge": ([42, 42], [7, 7], [4, 4]),          # units 2p, 2p+1 across a window edge
    # 3 merged units, stride 2: b2's units 4r..4r+5, in at most two shifted windows
    "pool": ([42, 42], [7, 7], [8, 8]),
}


def test_windowed_fields_match_the_derivation_and_autograd():
    graph, report = prepare(netcalc.parse(SPEC, "t.yaml"))
    fields = {r.name: r.rf for r in report.layers}
    for name, (size, period, jump) in EXPECTED.items():
        rf = fields[name]
        assert [d.size for d in rf.dims] == size, name
        assert [d.stride for d in rf.dims] == jump, name
        assert ([d.period for d in rf.dims] if period else [1, 1]) == (period or [1, 1]), name
    # the 6 x 6 pool has no unit of a period inside the input: not probed
    probed = [name for name in EXPECTED if name != "pool"]
    rows = {r.layer: r for r in empirical_rf(graph, report, layers=probed, every_unit=True)}
    for name in probed:
        size = EXPECTED[name][0]
        assert rows[name].verdict == "match", rows[name]
        measured = [hi - lo + 1 for lo, hi in rows[name].torch]
        assert measured == size, rows[name]  # (the widest unit's) measured extent


def test_a_map_of_one_window_is_global():
    """Attention over the whole map (Swin's last stage: one window) is global."""
    text = spec(1)
    fields = {r.name: r.rf for r in analyze_text(text[:text.index("  - {name: rows_even")]).layers}
    assert fields["b1.tokens"].dims[0].size == 2
    assert fields["b1.context"].global_ and fields["b2.mlp"].global_


def test_json_and_table_state_the_largest_extent():
    from netcalc.render.view import rf_json, rf_text

    fields = {r.name: r.rf for r in analyze_text(SPEC).layers}
    out = rf_json(fields["merge"])
    assert out["size"] == [42, 42] and out["period"] == [7, 7] and out["stride"] == [4, 4]
    assert "period" not in rf_json(fields["stem"])
    assert rf_text(fields["merge"]) == "≤42" and rf_text(fields["stem"]) == "2"


def reduced_swin_t() -> str:
    """specs/swin_t.yaml with channels / 16 and heads of 2 features: the same maps,
    windows and shifts (so the same fields), a forward cheap enough for the probe."""
    text = (SPECS / "swin_t.yaml").read_text()
    for big, small in (("768", "48"), ("384", "24"), ("192", "12"), ("96", "6")):
        text = re.sub(rf"\b{big}\b", small, text)
    text = text.replace("$heads, 32]", "$heads, 2]")
    return re.sub(r"^expect:.*$", "", text, flags=re.M)


#: Swin-T's field at the end of each stage and patch merging, from its table (stem
#: 4x4/4; 7x7 windows): 28 and 56 pixels in stage 1, +28 at the merging, 112 and 168 in
#: stage 2, ..., global in stage 4 (its map is one window)
SWIN_T = {"features.1.0.mlp_add": 28, "features.1.1.mlp_add": 56, "features.2.reduction": 84,
          "features.3.0.mlp_add": 112, "features.3.1.mlp_add": 168,
          "features.4.reduction": 224, "features.5.5.mlp_add": 840,
          "features.6.reduction": 952, "features.7.0.mlp_add": None}


def test_swin_t_stage_fields_against_autograd(tmp_path, runner):
    from netcalc.cli import app
    from netcalc.render.view import rf_json

    done = runner.invoke(app, ["shapes", str(SPECS / "swin_t.yaml"), "-f", "json"])
    assert done.exit_code == 0, done.output
    full = {r["name"]: r["receptive_field"] for r in json.loads(done.stdout)["layers"]}
    for name, size in SWIN_T.items():
        assert full[name]["size"] == (None if size is None else [size, size]), name
        assert full[name]["global"] is (size is None), name
    small = tmp_path / "swin_small.yaml"
    small.write_text(reduced_swin_t())
    graph, report = prepare(small)
    assert [r.name for r in report.layers] == list(full)
    assert all(rf_json(r.rf) == full[r.name] for r in report.layers)  # the same fields
    probed = [n for n, s in SWIN_T.items() if s is not None and s <= 168]
    rows = {r.layer: r for r in empirical_rf(graph, report, layers=probed, every_unit=True)}
    for name in probed:
        assert rows[name].verdict == "match", rows[name]
        assert [hi - lo + 1 for lo, hi in rows[name].torch] == [SWIN_T[name]] * 2, rows[name]


def test_windows_of_a_long_period_turn_global_quickly():
    """Periods past netcalc.rfperiod.MAX_PERIOD (1024 units) are not tabled: the dim
    turns global (bounded time and memory on any spec); shorter ones stay exact."""
    text = """
input: [2, 6000]
layers:
  - {name: cut, Reshape: [2, %d, %d]}
  - {name: mix, Softmax: -1}
"""
    long = analyze_text(text % (3, 2000)).layers[-1].rf
    assert long.global_
    short = analyze_text(text % (1000, 6)).layers[-1].rf
    assert short.dims[0].size == 6 and short.dims[0].period == 6


def test_periodic_ends_equal_sets_of_positions():
    """netcalc.rfperiod against brute force: each unit's set of input positions, built
    tap by tap over the integers (no periods, no tables), for random chains of windows,
    mixing within windows, rolls, slices and unions; its extent is the region."""
    import random

    from netcalc.rf import RFDim
    from netcalc.rfperiod import end, strided, translated, union, windowed, within

    rng = random.Random(0)
    for _ in range(200):
        dim, sets = RFDim(1, 1, 0), (lambda p: {p})
        for _ in range(rng.randint(1, 6)):
            op = rng.choice(["window", "within", "roll", "slice", "union"])
            if op == "window":
                k, s, pad, dil = rng.randint(1, 4), rng.randint(1, 3), rng.randint(0, 2), \
                    rng.randint(1, 2)
                dim = windowed(dim, k, s, pad, dil)
                sets = (lambda f, k, s, pad, dil: lambda p: set().union(
                    *(f(p * s - pad + j * dil) for j in range(k))))(sets, k, s, pad, dil)
            elif op == "within":
                w = rng.randint(2, 7)
                dim = within(dim, w)
                sets = (lambda f, w: lambda p: set().union(
                    *(f(x) for x in range(p - p % w, p - p % w + w))))(sets, w)
            elif op == "roll":
                s = rng.randint(-4, 4)
                dim = translated(dim, s)
                sets = (lambda f, s: lambda p: f(p - s))(sets, s)
            elif op == "slice":
                first, step = rng.randint(0, 3), rng.randint(1, 3)
                dim = strided(dim, first, step)
                sets = (lambda f, a, b: lambda p: f(a + p * b))(sets, first, step)
            else:  # the map and its roll by 1 (equal jumps), as Add of two paths
                dim = union([dim, translated(dim, 1)])
                sets = (lambda f: lambda p: f(p) | f(p - 1))(sets)
        for p in range(-9, 10):
            seen = sets(p)
            assert end(dim, p) == (min(seen), max(seen)), (dim, p)
        assert dim.size == max(end(dim, p)[1] - end(dim, p)[0] + 1 for p in range(dim.period))
