"""Training analysis without torch: the metric contract, requires-grad propagation,
saved storages, checkpointing, optimizer state, `fit`, and the CLI's bad input.

The per-layer rules are proven against a real backward pass in
tests/test_training_torch.py; here the numbers come from published figures or from
arithmetic a reader can redo."""

from __future__ import annotations

import json

import pytest

import netcalc
from netcalc.cli import app
from netcalc.fit import fit_batch, memory_of
from netcalc.metrics import METRICS, SUMMED
from netcalc.render import render
from netcalc.render.view import collapse
from netcalc.training import TrainOptions

from conftest import SPECS, analyze_text

TINY = """
name: tiny
input: [3, 8, 8]
layers:
  - {name: conv, Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}
  - {name: bn, BatchNorm2d: ~}
  - {name: relu, ReLU: ~}
  - {name: flat, Flatten: ~}
  - {name: fc, Linear: 10}
"""


def resnet50(batch: int = 2, **kw) -> netcalc.Report:
    return netcalc.analyze(SPECS / "resnet50.yaml", batch=batch, train=TrainOptions(**kw))


def test_resnet50_backward_macs_and_adamw_state():
    r = resnet50()
    # issue 10's figure (FlopCounterMode: 32,241,418,240 FLOPs = 2x): every MAC of the
    # forward twice, less conv1's input gradient (the image needs none)
    assert r.totals.backward_macs == 16_120_709_120
    assert r.totals.backward_macs == 2 * r.totals.macs - r.layers[0].macs
    assert r.totals.backward_flops == 2 * r.totals.backward_macs
    tr = r.sections["training"]
    # fp32 AdamW: 4 weights + 4 gradients + 8 states per parameter, plus a float32 `step`
    # per parameter tensor: 53 convs, 53 BatchNorms (weight, bias), fc (weight, bias)
    assert tr["param_bytes"] == tr["gradient_bytes"] == 4 * 25_557_032
    assert tr["optimizer_bytes"] == 8 * 25_557_032 + 4 * (53 + 2 * 53 + 2)


@pytest.mark.parametrize("optimizer,states", [("sgd", 0), ("momentum", 1)])
def test_optimizer_states_per_parameter(optimizer, states):
    tr = resnet50(optimizer=optimizer).sections["training"]
    assert tr["optimizer_bytes"] == states * 4 * 25_557_032


def test_bf16_converts_everything_and_amp_keeps_fp32_state():
    bf16, amp = resnet50(precision="bf16"), resnet50(precision="amp-bf16")
    fp32 = resnet50()
    assert bf16.sections["training"]["param_bytes"] == 2 * 25_557_032
    assert amp.sections["training"]["param_bytes"] == 4 * 25_557_032
    # autocast runs the convs and the fc in 16 bits, casting their weights once: the
    # casts backward keeps (every conv's weight, the fc's as its input needs a gradient)
    # are saved tensors of their layers; only the fc's bias cast is not kept
    conv_fc = sum(r.params for r in amp.layers if r.type in ("Conv2d", "Linear"))
    assert amp.sections["training"]["cast_cache_bytes"] == 2 * 1000
    conv1 = next(r for r in amp.layers if r.name == "conv1")
    conv1_fp32 = next(r for r in fp32.layers if r.name == "conv1")
    assert conv1.saved_bytes == conv1_fp32.saved_bytes // 2 + 2 * conv1.params
    assert sum(r.saved_bytes for r in amp.layers) == amp.totals.saved_activation_bytes
    assert amp.totals.saved_activation_bytes > 2 * (conv_fc - 1000)
    # halved, but for what stays wide: BatchNorm's float32 statistics, int64 pool indices
    assert 0.5 < bf16.totals.saved_activation_bytes / fp32.totals.saved_activation_bytes < 0.51
    assert amp.totals.saved_activation_bytes < fp32.totals.saved_activation_bytes


def test_metric_contract_rows_sum_to_totals_and_fold_by_depth():
    r = resnet50()
    for m in SUMMED:
        values = [getattr(x, m.name) for x in r.layers]
        if m.fallback:
            values = [getattr(x, m.fallback) if v is None else v for v, x in zip(values, r.layers)]
        assert sum(values) == getattr(r.totals, m.key), m.name
        for depth in (1, 2):
            folded = [getattr(x, m.name) for x in collapse(r, depth)]
            if m.fallback:
                folded = [getattr(x, m.fallback) if v is None else v
                          for v, x in zip(folded, collapse(r, depth))]
            assert sum(folded) == getattr(r.totals, m.key), (m.name, depth)


def test_json_carries_training_fields_only_with_train():
    plain = json.loads(render(netcalc.analyze(SPECS / "resnet18.yaml"), "json"))
    assert "backward_macs" not in plain["totals"] and "training" not in plain
    assert "saved_bytes" not in plain["layers"][0]
    data = json.loads(render(resnet50(), "json"))
    for key in ("backward_macs", "backward_flops", "saved_activation_bytes", "train_peak_bytes"):
        assert isinstance(data["totals"][key], int), key
    assert {"backward_macs", "backward_flops", "saved_bytes"} <= set(data["layers"][0])
    assert set(data["training"]) >= {"device", "optimizer", "precision", "param_bytes",
                                     "buffer_bytes", "gradient_bytes", "optimizer_bytes",
                                     "cast_cache_bytes", "output_gradient_bytes", "loss_bytes",
                                     "peak_bytes", "recompute_macs"}
    assert data["totals"]["train_peak_bytes"] == data["training"]["peak_bytes"]
    # the inference figure keeps its meaning: params x --dtype
    assert data["totals"]["weight_bytes"] == 4 * 25_557_032


def test_every_metric_reaches_json_table_and_check():
    from netcalc.check import KEY_DOCS, TOTALS

    r = resnet50()
    data = json.loads(render(r, "json"))
    table = render(r, "table")
    for m in METRICS:
        assert m.key in data["totals"] or m.fallback, m.key
        assert m.key in KEY_DOCS
        assert (m.key in TOTALS) == m.budget
        if m.column:
            assert m.column in table


def test_saved_storages_are_counted_once_on_their_first_keeper():
    r = analyze_text(TINY, train=TrainOptions(device="cpu"))
    rows = {x.name: x for x in r.layers}
    assert rows["conv"].saved_bytes == 3 * 8 * 8 * 4  # its input: the weight gradient
    # BatchNorm keeps its input (conv's output) and per-channel mean and inverse std
    assert rows["bn"].saved_bytes == 4 * 8 * 8 * 4 + 2 * 4 * 4
    assert rows["relu"].saved_bytes == 4 * 8 * 8 * 4  # its result
    # Flatten is a view of relu's output, which fc keeps for its weight gradient
    assert rows["flat"].saved_bytes == rows["fc"].saved_bytes == 0
    assert r.totals.saved_activation_bytes == sum(x.saved_bytes for x in r.layers)


def test_frozen_backbone_gets_no_input_gradients():
    text = TINY.replace("Conv2d: {", "trainable: false, Conv2d: {").replace(
        "BatchNorm2d: ~}", "BatchNorm2d: ~, trainable: false}")
    r = analyze_text(text, train=TrainOptions())
    rows = {x.name: x for x in r.layers}
    assert rows["conv"].backward_macs == rows["bn"].backward_macs == 0
    assert rows["conv"].saved_bytes == rows["bn"].saved_bytes == rows["relu"].saved_bytes == 0
    assert rows["fc"].backward_macs == rows["fc"].macs  # weight gradient only


def test_inplace_that_breaks_backward_is_refused():
    text = TINY.replace("{name: relu, ReLU: ~}", "{name: sig, Sigmoid: ~}\n  - {name: relu, "
                        "ReLU: {inplace: true}}")
    with pytest.raises(netcalc.SpecError, match="overwrites sig, which sig keeps for backward"):
        analyze_text(text, train=TrainOptions())
    ok = analyze_text(TINY.replace("ReLU: ~", "ReLU: {inplace: true}"), batch=64,
                      train=TrainOptions())
    plain = analyze_text(TINY, batch=64, train=TrainOptions())
    # the in-place ReLU keeps its result in bn's output storage: as many saved bytes,
    # and bn's output and relu's never live side by side
    assert plain.totals.saved_activation_bytes == ok.totals.saved_activation_bytes
    assert ok.totals.train_peak_bytes <= plain.totals.train_peak_bytes


def test_checkpoint_keeps_region_inputs_and_recomputes():
    spec = SPECS / "resnet18.yaml"
    full = netcalc.analyze(spec, batch=16, train=TrainOptions())
    ck = netcalc.analyze(spec, batch=16, train=TrainOptions(checkpoint=("layer1", "layer2")))
    region = [x for x in full.layers if x.name.startswith(("layer1.", "layer2."))]
    assert ck.sections["training"]["recompute_macs"] == sum(x.macs for x in region)
    assert ck.totals.backward_macs == full.totals.backward_macs
    assert ck.totals.saved_activation_bytes < full.totals.saved_activation_bytes
    # a repeat group checkpoints each instance: layer1.0 and layer1.1 keep their inputs
    first = {x.name: x.saved_bytes for x in ck.layers}
    assert first["layer1.0.conv1"] == first["layer1.1.conv1"] == 16 * 64 * 56 * 56 * 4
    assert ck.sections["training"]["peak_bytes"] < full.sections["training"]["peak_bytes"]


def test_cross_entropy_keeps_log_softmax_and_targets():
    r = analyze_text(TINY, batch=4, train=TrainOptions(loss="cross-entropy"))
    assert r.sections["training"]["loss_bytes"] == 4 * 10 * 4 + 4 * 8


def test_nothing_to_train_is_an_error():
    with pytest.raises(netcalc.SpecError, match="nothing to train"):
        analyze_text("input: [4]\nlayers:\n  - ReLU\n", train=TrainOptions())


def test_fit_finds_the_largest_batch():
    spec = netcalc.load(SPECS / "resnet18.yaml")
    train = TrainOptions()
    for memory in (3 * 10**8, 24 * 10**9, 24 * 2**30):
        r = fit_batch(spec, memory, train=train)
        assert r.needed <= memory < r.needed_next
        assert memory_of(netcalc.analyze(spec, batch=r.batch, train=train)) == r.needed
        assert memory_of(netcalc.analyze(spec, batch=r.batch + 1, train=train)) == r.needed_next
    nothing = fit_batch(spec, 10**6, train=train)
    assert nothing.batch is None and nothing.needed > 10**6


def test_cli_fit_exit_codes_and_units(runner):
    ok = runner.invoke(app, ["fit", str(SPECS / "resnet18.yaml"), "--memory", "24GB", "--train",
                             "-f", "json"])
    assert ok.exit_code == 0, ok.output
    gb, gib = (json.loads(runner.invoke(app, ["fit", str(SPECS / "resnet18.yaml"), "--memory",
                                              m, "-f", "json"]).output) for m in ("24GB", "24GiB"))
    assert gb["memory_bytes"] == 24 * 10**9 and gib["memory_bytes"] == 24 * 2**30
    assert gib["batch"] > gb["batch"]
    none = runner.invoke(app, ["fit", str(SPECS / "resnet18.yaml"), "--memory", "1MB", "--train"])
    assert none.exit_code == 1 and "nothing fits" in none.output and "needs" in none.output


@pytest.mark.parametrize("args,message", [
    (["--train", "--optimizer", "lion"], "--optimizer: unknown value 'lion' (sgd | momentum"),
    (["--train", "--precision", "fp8"], "--precision: unknown precision 'fp8' (fp32 | bf16"),
    (["--train", "--checkpoint", "layer9"], "--checkpoint: 'layer9' names no block instance"),
    (["--train", "--checkpoint", "layer"], "did you mean"),
    (["--train", "--convention", "fvcore"], "counts no backward pass; --train works with"),
    (["--train", "--convention", "torchinfo"], "counts no backward pass"),
])
def test_cli_training_bad_options(runner, args, message):
    result = runner.invoke(app, ["shapes", str(SPECS / "resnet18.yaml"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_fit_bad_memory(runner):
    result = runner.invoke(app, ["fit", str(SPECS / "resnet18.yaml"), "--memory", "lots"])
    assert result.exit_code == 2 and result.output.startswith("--memory: cannot read")


def test_check_accepts_training_totals_and_settings(tmp_path):
    from netcalc.check import check_file

    r = resnet50(batch=1, device="cpu", optimizer="sgd")
    spec = (SPECS / "resnet50.yaml").read_text(encoding="utf-8")
    head, _, _ = spec.partition("\nexpect:")
    path = tmp_path / "r50.yaml"
    path.write_text(head + f"""
expect:
  backward_macs: {r.totals.backward_macs}
  saved_activation_bytes: {r.totals.saved_activation_bytes}
  device: cpu
  optimizer: sgd
budget:
  train_peak_bytes: {r.totals.train_peak_bytes}
  optimizer: sgd
  device: cpu
""", encoding="utf-8")
    result = check_file(path)
    assert result.status == "passed", [c.message for c in result.checks] or result.error
    bad = tmp_path / "bad.yaml"
    bad.write_text(head + "\nbudget:\n  train_peak_bytes: 1GB\n  precision: fp16\n",
                   encoding="utf-8")
    err = check_file(bad).error
    assert err is not None and "budget.precision: unknown precision 'fp16'" in str(err)
    assert str(err).startswith(f"{bad}:")
