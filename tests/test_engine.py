"""The spec -> graph -> report engine: names, references, blocks, expressions, limits,
receptive-field merges, --depth, batch scaling and the sums-equal-totals invariant."""

from __future__ import annotations

import gc
from fractions import Fraction

import pytest

import netcalc
from netcalc.errors import SpecError
from netcalc.expr import ExprError, evaluate, substitute
from netcalc.render.view import collapse
from netcalc.units import human, parse_quantity

from conftest import analyze_text

RESIDUAL = """
input: [8, 16, 16]
blocks:
  Res:
    args: {c: ~, k: 3}
    layers:
      - {name: conv, Conv2d: {out_channels: $c, kernel_size: $k, padding: "${k // 2}"}}
      - ReLU
      - {name: sum, Add: ~, from: [relu_1, input]}
layers:
  - {name: stage, Res: {c: 8}, repeat: 3}
  - {name: head, Conv2d: {out_channels: 4, kernel_size: 1}, from: stage.1.conv}
outputs: [head, stage]
"""


def test_hierarchical_names_like_torch_module_paths():
    r = analyze_text(RESIDUAL)
    names = [l.name for l in r.layers]
    assert names[:3] == ["stage.0.conv", "stage.0.relu_1", "stage.0.sum"]
    assert names[-1] == "head"
    assert len(names) == 3 * 3 + 1


def test_references_block_input_dotted_paths_and_outputs():
    r = analyze_text(RESIDUAL)
    by = {l.name: l for l in r.layers}
    assert by["stage.0.sum"].sources == ["stage.0.relu_1", "input"]
    assert by["stage.1.sum"].sources == ["stage.1.relu_1", "stage.0.sum"]
    assert by["head"].sources == ["stage.1.conv"]
    assert r.outputs == {"head": (1, 4, 16, 16), "stage": (1, 8, 16, 16)}


NUMBERED = """
input: [3, 8, 8]
blocks:
  Unit:
    args: {c: ~}
    numbered: true
    layers:
      - Conv2d: {out_channels: $c, kernel_size: 3, padding: 1}
      - ReLU
  Body:
    numbered: true
    layers:
      - {Unit: 4}
      - {Unit: 4, repeat: 2}
      - {Add: ~, from: [1, 0]}
layers:
  - {name: features, Body: ~}
  - {name: head, Conv2d: {out_channels: 2, kernel_size: 1}, from: features.1.0}
"""


def test_numbered_blocks_name_children_by_position_like_sequential():
    r = analyze_text(NUMBERED)
    names = [l.name for l in r.layers]
    # nn.Sequential(Unit, Unit, Unit, Add): a repeat continues the count (1, 2), no group
    assert names == ["features.0.0", "features.0.1", "features.1.0", "features.1.1",
                     "features.2.0", "features.2.1", "features.3", "head"]
    by = {l.name: l for l in r.layers}
    assert by["features.3"].sources == ["features.1.1", "features.0.1"]  # `from: [1, 0]`
    assert by["head"].sources == ["features.1.0"]
    assert "features.1" in r.containers and "features" in r.containers


def test_block_expression_and_receptive_field_through_residual():
    r = analyze_text(RESIDUAL)
    by = {l.name: l for l in r.layers}
    # each 3x3 conv adds 2; the residual union keeps the widest path
    assert [d.size for d in by["stage.2.sum"].rf.dims] == [1 + 3 * 2] * 2
    assert by["stage.0.sum"].rf.aligned  # same stride, same centre on both paths
    assert by["stage.0.conv"].params == 8 * 8 * 3 * 3 + 8


def test_seed_ten_stacked_5x5_convs():
    """Seed notes: 10 layers of 5x5 convs shrink 240x240 to 200x200; RF 1 + 10*4 = 41."""
    r = analyze_text("""
input: [1, 240, 240]
layers:
  - {Conv2d: {out_channels: 1, kernel_size: 5}, repeat: 10}
""")
    last = r.layers[-1]
    assert last.shape == (1, 1, 240 - 10 * 4, 240 - 10 * 4)
    assert [d.size for d in last.rf.dims] == [41, 41]
    assert [d.start for d in last.rf.dims] == [20, 20]  # centre of the first 41-wide window


def test_transposed_conv_makes_fractional_fields():
    r = analyze_text("""
input: [4, 8, 8]
layers:
  - Conv2d: {out_channels: 4, kernel_size: 3, stride: 2, padding: 1}
  - ConvTranspose2d: {out_channels: 4, kernel_size: 4, stride: 2, padding: 1}
""")
    conv, up = r.layers
    assert up.shape == (1, 4, 8, 8)
    d = up.rf.dims[0]
    # conv: size 3, jump 2, start 0; transposed (k=4, s=2, p=1): jump 2/2 = 1,
    # size 3 + 3*2/2 = 6, start 0 + (1 - 3/2)*2/2 = -1/2
    assert (d.size, d.stride, d.start) == (6, 1, Fraction(-1, 2))


def test_merge_of_misaligned_paths_is_flagged():
    r = analyze_text("""
input: [4, 16, 16]
layers:
  - {name: a, Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}
  - {name: b, Conv2d: {out_channels: 4, kernel_size: 2, padding: 0}, from: input}
  - {name: pad, ConstantPad2d: {padding: [0, 1, 0, 1], value: 0}}
  - {Add: ~, from: [a, pad]}
""")
    assert not r.layers[-1].rf.aligned


def test_global_after_flatten_and_linear():
    r = analyze_text("""
input: [3, 8, 8]
layers:
  - Conv2d: {out_channels: 4, kernel_size: 3}
  - Flatten
  - Linear: 10
""")
    assert r.layers[0].rf.global_ is False
    # flattening moves no position (C, H and W share one axis, each keeping its
    # coordinate); the Linear mixes that axis: every dim global
    assert r.layers[1].rf.dims == r.layers[0].rf.dims and r.layers[1].rf.packing
    assert r.layers[2].rf.global_


def test_token_inputs_have_no_receptive_field():
    r = analyze_text("""
inputs: {tokens: {shape: [16], dtype: int64}}
layers:
  - Embedding: {num_embeddings: 100, embedding_dim: 8}
""")
    assert r.layers[0].rf is None
    assert r.totals.input_bytes == 16 * 8  # int64 ids


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_totals_scale_with_batch_and_rows_sum_to_totals(batch):
    one = analyze_text(RESIDUAL)
    r = analyze_text(RESIDUAL, batch=batch)
    assert r.totals.macs == batch * one.totals.macs
    assert r.totals.flops == batch * one.totals.flops
    assert r.totals.params == one.totals.params
    for field in ("params", "macs", "flops", "activation_bytes", "weight_bytes", "buffers"):
        assert sum(getattr(l, field) for l in r.layers) == getattr(r.totals, field)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_depth_collapse_keeps_sums(depth):
    r = analyze_text(RESIDUAL)
    rows = collapse(r, depth)
    assert sum(x.macs for x in rows) == r.totals.macs
    assert sum(x.params for x in rows) == r.totals.params
    if depth == 1:
        assert [x.name for x in rows] == ["stage", "head"]
        assert rows[0].type == "Res×3" and rows[0].shape == (1, 8, 16, 16)
    if depth == 2:
        assert [x.name for x in rows] == ["stage.0", "stage.1", "stage.2", "head"]
        assert rows[0].type == "Res"


def test_dtype_sets_bytes():
    spec = "input: [3, 8, 8]\nlayers: [{Conv2d: {out_channels: 2, kernel_size: 1}}]"
    f32 = analyze_text(spec)
    f16 = analyze_text(spec, dtype="float16")
    assert f32.totals.weight_bytes == (2 * 3 + 2) * 4
    assert f16.totals.weight_bytes == (2 * 3 + 2) * 2
    assert f16.totals.activation_bytes == 2 * 8 * 8 * 2


def test_peak_activation_counts_live_tensors_only():
    r = analyze_text("""
input: [1, 10, 10]
layers:
  - Conv2d: {out_channels: 1, kernel_size: 1}
  - Conv2d: {out_channels: 1, kernel_size: 1}
  - Conv2d: {out_channels: 1, kernel_size: 1}
""")
    # input(400 B) + first output(400 B) is the most ever alive: each input dies after use
    assert r.totals.peak_activation_bytes == 2 * 100 * 4
    assert r.totals.activation_bytes == 3 * 100 * 4


def test_trainable_false_and_sparsity():
    r = analyze_text("""
input: [16]
layers:
  - {Linear: 32, trainable: false}
  - {Linear: 10, sparsity: 0.75}
""")
    frozen, pruned = r.layers
    assert frozen.trainable_params == 0 and frozen.params == 16 * 32 + 32
    assert r.totals.trainable_params == 32 * 10 + 10
    assert pruned.nonzero_params == 32 * 10 + 10 - 32 * 10 * 3 // 4
    assert pruned.nonzero_macs == 32 * 10 // 4


def test_tie_counts_shared_weight_once():
    r = analyze_text("""
inputs: {tokens: {shape: [4], dtype: int64}}
layers:
  - {name: emb, Embedding: {num_embeddings: 50, embedding_dim: 8}}
  - {name: head, Linear: {out_features: 50, bias: false}, tie: emb}
""")
    assert r.totals.params == 50 * 8
    assert r.layers[1].tied_to == "emb" and r.layers[1].params == 0
    assert r.layers[1].macs == 4 * 50 * 8


def test_several_inputs_need_from():
    with pytest.raises(SpecError, match="several inputs"):
        analyze_text("inputs: {a: [4], b: [4]}\nlayers: [{Linear: 2}]")
    r = analyze_text("inputs: {a: [4], b: [4]}\nlayers: [{Add: ~, from: [a, b]}, {Linear: 2}]")
    assert r.outputs == {"linear_1": (1, 2)}


def test_named_output_selector():
    r = analyze_text("""
input: [5, 8]
layers:
  - {name: rnn, LSTM: 16}
  - {Linear: 3, from: "rnn:h_n"}
""")
    assert r.layers[1].shape == (1, 1, 3)


def test_input_override_and_bad_batch():
    r = netcalc.analyze(netcalc.parse(RESIDUAL, "t.yaml"), input_shapes={"input": (8, 32, 32)})
    assert r.outputs["head"] == (1, 4, 32, 32)
    with pytest.raises(SpecError):
        netcalc.analyze(netcalc.parse(RESIDUAL, "t.yaml"), batch=0)


def test_expressions_are_integer_arithmetic_only():
    env = {"c": 64, "e": 6}
    assert evaluate("c * e // 4 + max(1, c % 5) - min(2, 3)", env) == 64 * 6 // 4 + 4 - 2
    assert evaluate("c / 2", env) == 32 and isinstance(evaluate("c / 2", env), int)
    with pytest.raises(ExprError, match=r"\(c \+ 1\) / 2 is 32.5, not an integer"):
        evaluate("(c + 1) / 2", env)  # `/` is exact: a remainder is an error (issue 12)
    assert substitute("conv${c // 32}", env) == "conv2"
    assert substitute("$c", env) == 64
    for bad in ("__import__('os')", "c ** 2", "open('x')", "c.real", "[c]", "lambda: 1",
                "c if c else 1", "9" * 300):
        with pytest.raises(ExprError):
            evaluate(bad, env)
    with pytest.raises(ExprError, match="division by zero"):
        evaluate("c // 0", env)
    with pytest.raises(ExprError, match="too large"):
        evaluate("c" + " * 999999" * 5, env)


def test_units_round_trip():
    assert parse_quantity("4.09G") == 4_090_000_000
    assert parse_quantity("25_557_032") == 25_557_032
    assert parse_quantity("20MB") == 20_000_000
    assert parse_quantity("1.5 GiB") == 3 * 2**29
    assert human(11_689_512) == "11.7 M" and human(1_814_073_344) == "1.81 G"
    with pytest.raises(ValueError):
        parse_quantity("lots")


def test_large_generated_spec_is_linear_and_bounded():
    n = 2000
    text = "input: [4, 8, 8]\nlayers:\n" + "".join(
        "  - Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}\n  - ReLU\n" for _ in range(n))
    r = analyze_text(text)
    assert len(r.layers) == 2 * n
    assert r.totals.macs == n * 8 * 8 * 4 * 4 * 9
    with pytest.raises(SpecError, match="more than 100 layers"):
        netcalc.analyze_graph(netcalc.build(netcalc.parse(text, "t.yaml"), max_nodes=100))


def test_analysis_leaves_the_garbage_collector_as_it_found_it():
    # netcalc.perf pauses the collector while a spec is built, errors included
    assert gc.isenabled()
    analyze_text(RESIDUAL)
    assert gc.isenabled()
    with pytest.raises(SpecError):
        analyze_text("input: [3, 8, 8]\nlayers: [Conv2d]\n")
    assert gc.isenabled()
    gc.disable()
    try:
        analyze_text(RESIDUAL)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_paused_gc_overlapping_threads_restore_the_collector():
    # one thread's pause may begin while another's is in progress: the last to end
    # re-enables the collector (a save/restore per pause can leave it off for good)
    import sys
    import threading

    from netcalc.perf import paused_gc

    def work():
        for _ in range(5000):  # a save/restore per pause fails this every time
            with paused_gc():
                with paused_gc():  # nested
                    sum(range(5))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert gc.isenabled()


def test_numbered_block_children_may_reuse_default_names_of_inputs():
    # names in a numbered block are positions, so a block input called relu_1 is no clash
    r = analyze_text("""
input: [3, 8, 8]
blocks:
  Pair:
    inputs: [x, relu_1]
    numbered: true
    layers:
      - {Conv2d: {out_channels: 3, kernel_size: 1}, from: x}
      - ReLU
      - {Add: ~, from: [1, relu_1]}
layers:
  - {name: a, ReLU: ~}
  - {name: p, Pair: ~, from: [input, a]}
""")
    assert [l.name for l in r.layers] == ["a", "p.0", "p.1", "p.2"]
    assert r.layers[-1].sources == ["p.1", "a"]


def test_a_repeated_layer_is_analysed_once_and_reports_as_each_instance():
    """Identical layers on identical inputs share their analysis (netcalc.analysis's
    reuse): each row keeps its own name, line, sources and field, and each layer its own
    inferred arguments (the torch builder reads them)."""
    r = analyze_text("input: [4, 8, 8]\nlayers:\n"
                     "  - {Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}\n"
                     "  - {Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}\n"
                     "  - {name: fc, Flatten: ~}\n  - {Linear: 5}\n  - {Linear: 5, from: fc}\n")
    a, b = r.layers[0], r.layers[1]
    assert (a.name, a.line, a.sources, b.name, b.line, b.sources) == (
        "conv2d_0", 3, ["input"], "conv2d_1", 4, ["conv2d_0"])
    assert (a.params, a.macs, a.rf.dims[0].size, b.rf.dims[0].size) == (148, 9216, 3, 5)
    assert a.params == b.params and a.macs == b.macs and a.extra is not b.extra
    lin1, lin2 = r.graph.nodes[3].layer, r.graph.nodes[4].layer
    assert lin1.in_features == lin2.in_features == 256
    assert [x.name for x in r.layers[3:]] == ["linear_3", "linear_4"]
    assert r.totals.params == sum(x.params for x in r.layers)
