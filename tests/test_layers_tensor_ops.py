"""The layer types of modern architectures: learned tensors (Parameter, Buffer,
Constant, Expand), parts (Chunk, Split, Slice, Select, Gather, IndexSelect, Roll),
reductions, Scale, StochasticDepth, Einsum, RotaryEmbedding; several outputs,
``repeat: 0`` and channel-last receptive fields. Each number is stated as its
derivation; tests/test_crosscheck.py FAMILIES proves the same types against torch."""

from __future__ import annotations

import pytest

from conftest import analyze_text
from netcalc.errors import SpecError
from netcalc.layers.base import Grads
from netcalc.rf import GLOBAL


def rows(text: str, batch: int = 2, **kw):
    r = analyze_text(text, batch=batch, **kw)
    return r, {l.name: l for l in r.layers}


def dims(rf):
    return "G" if rf.global_ else [(d.size, d.stride, d.start) for d in rf.dims]


WHOLE_DIM = (None, None, None)  # global along this dim only


VIT_HEAD = """
input: [3, 32, 32]
layers:
  - {name: conv_proj, Conv2d: {out_channels: 8, kernel_size: 16, stride: 16}}
  - {Flatten: {start_dim: 2}}
  - {name: seq, Permute: [0, 2, 1]}
  - {name: class_token, Parameter: [1, 1, 8]}
  - {name: cls, Expand: [-1, -1], from: [class_token, seq]}
  - {name: tokens, Concat: 1, from: [cls, seq]}
  - {name: pos_embedding, Parameter: {shape: [1, 5, 8]}}
  - {name: x, Add: ~, from: [tokens, pos_embedding]}
  - {name: first, Select: {dim: 1, index: 0}}
"""


def test_learned_tensors_have_no_batch_and_count_as_params():
    r, by = rows(VIT_HEAD)
    assert by["class_token"].shape == (1, 1, 8) and by["class_token"].params == 8
    assert by["cls"].shape == (2, 1, 8)  # the batch of `seq`
    assert by["x"].shape == (2, 5, 8) and by["pos_embedding"].params == 5 * 8
    assert by["first"].shape == (2, 8)
    assert r.totals.params == 3 * 256 * 8 + 8 + 8 + 40
    assert by["class_token"].rf is None and by["x"].rf is GLOBAL
    for name in ("cls", "tokens", "x", "first"):
        assert by[name].macs == 0
    assert by["x"].flops == 2 * 5 * 8  # the add; the broadcast position table is free


def test_buffer_and_constant():
    r, by = rows("""
input: [4, 6]
layers:
  - {name: idx, Buffer: {shape: [10], dtype: int64}}
  - {name: mask, Constant: {shape: [1, 4, 6]}}
  - {name: bias, Buffer: [1, 4, 6]}
  - {name: y, Add: ~, from: [input, mask, bias]}
""")
    assert by["idx"].buffers == 10 and by["idx"].params == 0
    assert r.graph.by_name["idx"].layer.int_buffers() == 10
    assert by["mask"].buffers == by["mask"].params == 0  # computed in forward: nowhere
    assert by["bias"].buffers == 24 and r.totals.buffers == 34
    assert by["idx"].activation_bytes == 0  # the buffer itself: not an activation
    with pytest.raises(SpecError, match="takes 0 input"):
        analyze_text("input: [4]\nlayers:\n  - Linear: 3\n"
                     "  - {Parameter: [1, 3], from: linear_0}")


def test_parts_shapes_and_outputs():
    r, by = rows("""
input: [6, 5, 4]
layers:
  - {name: c, Chunk: 3}
  - {name: s, Split: {split_size_or_sections: 2, dim: 2}, from: input}
  - {name: t, Split: {split_size_or_sections: [1, 4], dim: -2}, from: input}
  - {name: a, Add: ~, from: ["s:0", "s:1"]}
  - {name: sl, Slice: {dim: 3, start: -3, step: 2}, from: "s:2"}
  - {name: sel, Select: {dim: 1, index: -1}, from: "t:0"}
""")
    assert by["c"].output_shapes == [(2, 2, 5, 4)] * 3
    assert by["s"].output_shapes == [(2, 6, 2, 4), (2, 6, 2, 4), (2, 6, 1, 4)]
    assert by["t"].output_shapes == [(2, 6, 1, 4), (2, 6, 4, 4)]
    assert by["a"].shape == (2, 6, 2, 4) and by["a"].sources == ["s", "s:1"]
    assert by["sl"].shape == (2, 6, 1, 2)  # indices 1, 3 of 4
    assert by["sel"].shape == (2, 1, 4)
    assert all(l.params == l.macs == l.flops == 0 for l in r.layers if l.name != "a")


@pytest.mark.parametrize("layers, message", [
    ("- {Chunk: 4, from: input}", "returns 3 pieces of 2, not 4"),
    ("- {Split: {split_size_or_sections: [2, 2]}}", "sum to 4 but the dim has size 6"),
    ("- {Chunk: {chunks: 2, dim: 0}}", "along the batch dim"),
    ("- {name: s, Split: 4}\n  - {Identity: ~, from: 's:2'}", "'s' has 2 output(s)"),
    ("- {name: c, Chunk: 2}\n  - {Identity: ~, from: 'c:2'}", "has no output '2'"),
    ("- {Slice: {dim: 2, start: 9}}", "is empty"),
    ("- {Select: {dim: 1, index: 6}}", "out of range"),
    ("- {Mean: [1, -2]}", "names a dim twice"),
    ("- {Mean: [0]}", "along the batch dim"),
    ("- {Roll: {shifts: [1, 2], dims: 1}}", "differ in length"),
    ("- {Expand: [4, 5]}", "only size-1 dims expand"),
    ("- {Einsum: 'bij,bjk->bik'}", "1 input(s) are given"),
    ("- {name: k, Identity: ~}\n  - {Einsum: 'bij,bjk->bik', from: [input, k]}",
     "label 'j' has size 5 and 6"),
    ("- {name: k, Identity: ~}\n  - {Einsum: 'bij,bij', from: [input, k]}", "a scalar"),
    ("- {RotaryEmbedding: 3}", "must be even"),
])
def test_parts_refuse_what_torch_or_the_batch_would(layers, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        analyze_text(f"input: [6, 5]\nlayers:\n  {layers}\n")


def test_gather_and_index_select():
    r, by = rows("""
input: [4, 6]
layers:
  - {name: table, Parameter: {shape: [13, 3]}}
  - {name: index, Buffer: {shape: [20], dtype: int64}}
  - {name: bias, IndexSelect: 0, from: [table, index]}
  - {name: gi, Buffer: {shape: [2, 2, 6], dtype: int64}}
  - {name: g, Gather: {dim: 1}, from: [input, gi]}
""")
    assert by["bias"].shape == (20, 3) and by["g"].shape == (2, 2, 6)
    layer = r.graph.by_name["bias"].layer
    assert layer.index_bound(1) == 13 and layer.index_bound(0) is None
    assert r.graph.by_name["g"].layer.index_bound(1) == 4
    with pytest.raises(SpecError, match="must be int64"):
        analyze_text("input: [4, 6]\nlayers:\n  - {name: t, Parameter: [5, 6]}\n"
                     "  - {IndexSelect: 0, from: [t, input]}")


def test_reductions_scale_and_stochastic_depth():
    n = 2 * 4 * 5 * 6
    r, by = rows("""
input: [4, 5, 6]
layers:
  - {name: m, Mean: [2, 3]}
  - {name: s, Sum: {dim: 1, keepdim: true}, from: input}
  - {name: x, Amax: -1, from: input}
  - {name: k, Scale: 0.5, from: input}
  - {name: d, StochasticDepth: {p: 0.1, mode: batch}}
""")
    assert by["m"].shape == (2, 4) and by["m"].flops == n  # adds + one divide per output
    assert by["s"].shape == (2, 1, 5, 6) and by["s"].flops == n - 2 * 30
    assert by["x"].shape == (2, 4, 5) and by["x"].flops == n - 2 * 20
    assert by["k"].flops == n and by["d"].flops == 0  # identity in eval
    # a reduction over a spatial dim makes that dim global; over the channels it keeps
    # the field
    assert by["m"].rf is GLOBAL and dims(by["x"].rf) == [(1, 1, 0), WHOLE_DIM]
    assert dims(by["s"].rf) == [(1, 1, 0), (1, 1, 0)]
    g = Grads((True,), False)
    layer = {name: r.graph.by_name[name].layer for name in by}
    assert layer["m"].saved(g, "cuda") == [] and len(layer["x"].saved(g, "cuda")) == 2
    assert layer["d"].saved(g, "cuda")[0].numel == 1  # batch mode: one noise value
    row = analyze_text("input: [4]\nlayers:\n  - {StochasticDepth: 0.2}", batch=3)
    assert row.graph.nodes[0].layer.saved(g, "cpu")[0].numel == 3  # row mode: per sample


@pytest.mark.parametrize("equation, shapes, out, macs, flops", [
    # two operands with a contraction: the product of all index sizes
    ("bhid,bhjd->bhij", [(2, 3, 4, 5), (2, 3, 6, 5)], (2, 3, 4, 6), 2 * 3 * 4 * 6 * 5, 0),
    # spaces, upper case, implicit output (upper case sorts first)
    ("bj, jK", [(2, 3), (3, 4)], (4, 2), 24, 0),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (2, 5, 4, 6)], (2, 5, 3, 6), 2 * 5 * 3 * 4 * 6, 0),
    # k is summed away before the product (as torch does): MACs b*j, sum 3*4-3 adds
    ("bj,jk->b", [(2, 3), (3, 4)], (2,), 6, 3 * 4 - 3),
    # no contraction: an element-wise product, FLOPs only
    ("bi,bj->bij", [(2, 3), (2, 4)], (2, 3, 4), 0, 24),
    # three operands, left to right: (bj,jk->bk) then (bk,kl->bl)
    ("bj,jk,kl->bl", [(2, 3), (3, 4), (4, 5)], (2, 5), 2 * 3 * 4 + 2 * 4 * 5, 0),
])
def test_einsum_counts(equation, shapes, out, macs, flops):
    """The first operand is the input (batch 2), the others Parameters of full shape."""
    names = ["input"] + [f"w{i}" for i in range(1, len(shapes))]
    params = "".join(f"  - {{name: {n}, Parameter: {list(s)}}}\n"
                     for n, s in zip(names[1:], shapes[1:]))
    r, by = rows(f"input: {list(shapes[0][1:])}\nlayers:\n{params}  - {{name: e, Einsum: "
                 f"'{equation}', from: [{', '.join(names)}]}}", batch=shapes[0][0])
    e = by["e"]
    assert (e.shape, e.macs, e.flops - 2 * e.macs) == (out, macs, flops)
    layer = r.graph.by_name["e"].layer
    both = Grads((True,) * len(shapes), False)
    assert layer.backward_macs(both) == 2 * macs


def test_rotary_embedding():
    r, by = rows("""
input: [4, 16, 8]
layers:
  - {name: full, RotaryEmbedding: ~}
  - {name: part, RotaryEmbedding: {dim: 4, base: 500000}, from: input}
""")
    rows_, length = 2 * 4 * 16, 16
    assert by["full"].shape == (2, 4, 16, 8) and by["full"].buffers == 4  # inv_freq
    assert by["full"].flops == rows_ * 7 * 8 // 2 + length * 8 // 2 + 2 * length * 8
    assert by["part"].buffers == 2
    assert by["part"].flops == rows_ * 7 * 4 // 2 + length * 4 // 2 + 2 * length * 4
    assert by["full"].params == by["full"].macs == 0


def test_repeat_zero_passes_the_first_input_through():
    r, by = rows("""
input: [3, 8, 8]
blocks:
  Unit:
    args: {c: ~, se: 1}
    layers:
      - {name: conv, Conv2d: {out_channels: $c, kernel_size: 1}}
      - {name: gate, Sigmoid: ~, repeat: $se}
      - {name: out, ReLU: ~, from: gate}
layers:
  - {name: a, Unit: {c: 4}}
  - {name: b, Unit: {c: 4, se: 0}}
""")
    assert [l.name for l in r.layers] == ["a.conv", "a.gate.0", "a.out", "b.conv", "b.out"]
    assert by["b.out"].sources == ["b.conv"]


def test_channel_last_layouts_keep_the_field():
    """ConvNeXt's block: permute to (N, H, W, C), LayerNorm and Linear over C, back."""
    r, by = rows("""
input: [3, 13, 11]
layers:
  - {name: conv, Conv2d: {out_channels: 4, kernel_size: 3, stride: 2}}
  - {name: nhwc, Permute: [0, 2, 3, 1]}
  - {name: norm, LayerNorm: ~}
  - {name: fc, Linear: 8}
  - {name: gamma, Parameter: [8]}
  - {name: scaled, Mul: ~, from: [fc, gamma]}
  - {name: back, Permute: [0, 3, 1, 2]}
  - {name: groups, Unflatten: {dim: 1, unflattened_size: [2, 4]}}
  - {name: swap, Permute: [0, 1, 2, 4, 3], from: groups}
  - {name: over_w, Softmax: -2}
""")
    conv = [(3, 2, 1), (3, 2, 1)]
    for name in ("nhwc", "norm", "fc", "scaled", "back", "groups", "swap"):
        assert dims(by[name].rf) == conv, name
        assert by[name].rf.aligned, name
    assert by["nhwc"].rf.axes == (-3, -2) and by["back"].rf.axes is None
    assert by["swap"].rf.axes == (-1, -2)  # H and W exchanged
    assert dims(by["over_w"].rf) == [conv[0], WHOLE_DIM]  # dim -2 holds W after the swap
    # a Linear over a spatial last dim mixes positions along it (W), not along H
    _, flat = rows("input: [3, 5, 6]\nlayers:\n  - {name: fc, Linear: 4}")
    assert dims(flat["fc"].rf) == [(1, 1, 0), WHOLE_DIM]


def test_slices_and_pieces_are_exact_windows():
    _, by = rows("""
input: [2, 9, 8]
layers:
  - {name: c, Conv2d: {out_channels: 2, kernel_size: 3}}
  - {name: s, Slice: {dim: 2, start: 1, end: 6, step: 2}}
  - {name: p, Chunk: {chunks: 2, dim: 3}, from: c}
  - {name: second, Identity: ~, from: "p:1"}
  - {name: r, Roll: {shifts: 1, dims: 1}, from: c}
  - {name: rw, Roll: {shifts: 1, dims: 3}, from: c}
  - {name: e, Mean: {dim: 2, keepdim: true}, from: c}
""")
    assert dims(by["s"].rf) == [(3, 2, 2), (3, 1, 1)]  # rows 1, 3, 5 of the conv
    assert dims(by["p"].rf) == [(3, 1, 1), (3, 1, 1)]  # piece 0
    assert dims(by["second"].rf) == [(3, 1, 1), (3, 1, 4)]  # piece 1 starts at column 3
    assert dims(by["r"].rf) == [(3, 1, 1), (3, 1, 1)]  # rolling channels moves no position
    # rolling along W translates it in the interior (unit w reads unit w - 1: centre 0);
    # averaging along one spatial dim makes that dim global, not the other
    assert dims(by["rw"].rf) == [(3, 1, 1), (3, 1, 0)]
    assert dims(by["e"].rf) == [WHOLE_DIM, (3, 1, 1)]


def test_outputs_past_a_split_are_located_errors():
    with pytest.raises(SpecError, match="'s' has 3 output"):
        analyze_text("input: [6, 5]\nlayers:\n  - {name: s, Split: 2}\noutputs: ['s:3']\n")
    r = analyze_text("input: [6, 5]\nlayers:\n  - {name: s, Split: 2}\noutputs: ['s:2', s]\n")
    assert r.outputs == {"s:2": (1, 2, 5), "s": (1, 2, 5)}
