"""MixtureOfExperts (issue 12): the analytic counts against the built torch module, the
routing rule, active_params in every output, and the training rules against a real step."""

from __future__ import annotations

import json
import re

import pytest

import netcalc
from conftest import analyze_text
from netcalc.errors import SpecError
from netcalc.render.view import report_dict

torch = pytest.importorskip("torch")

from netcalc.torch import traincheck  # noqa: E402
from netcalc.torch.build import build_module  # noqa: E402
from netcalc.torch.crosscheck import crosscheck  # noqa: E402
from netcalc.training import TrainOptions  # noqa: E402

D, F, E, K, T = 16, 24, 4, 2, 6  # width, expert hidden, experts, top_k, tokens
SPEC = f"""\
name: tiny-moe-lm
inputs: {{tokens: {{shape: [{T}], dtype: int64}}}}
blocks:
  SwiGLU:
    args: {{hidden: {F}}}
    layers:
      - {{name: w1, Linear: {{out_features: $hidden, bias: false}}}}
      - {{name: act, SiLU: ~}}
      - {{name: w3, Linear: {{out_features: $hidden, bias: false}}, from: input}}
      - {{name: mul, Mul: ~, from: [act, w3]}}
      - {{name: w2, Linear: {{out_features: {D}, bias: false}}}}
layers:
  - {{name: embed, Embedding: {{num_embeddings: 50, embedding_dim: {D}}}}}
  - {{name: moe, MixtureOfExperts: {{num_experts: {E}, top_k: {K}, expert: SwiGLU}}}}
  - {{name: head, Linear: {{out_features: 50, bias: false}}}}
"""
EXPERT = 3 * D * F  # w1, w3, w2 without biases
ROUTER = D * E


def tiny():
    return netcalc.parse(SPEC, "moe.yaml")


def test_counts_equal_the_built_module_and_flopcountermode():
    from torch.utils.flop_counter import FlopCounterMode

    report = netcalc.analyze(tiny(), batch=2)
    moe = next(r for r in report.layers if r.name == "moe")
    assert moe.params == ROUTER + E * EXPERT
    assert moe.active_params == ROUTER + K * EXPERT
    assert moe.extra == {"num_experts": E, "top_k": K, "router_params": ROUTER,
                         "params_per_expert": EXPERT}
    tokens = 2 * T
    assert moe.macs == tokens * D * E + K * tokens * EXPERT  # router + top_k experts per token

    model = build_module(tiny(), batch=2)
    module = model.get_submodule("moe")
    assert sum(p.numel() for p in module.parameters()) == moe.params
    assert sum(p.numel() for p in module.experts[0].parameters()) == EXPERT
    keys = set(module.state_dict())
    assert keys == {"gate.weight"} | {f"experts.{i}.{w}.weight" for i in range(E)
                                      for w in ("w1", "w3", "w2")}
    calls = []
    for expert in module.experts:  # hooks count the tokens each expert really computes
        expert.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    x = torch.randint(0, 50, (2, T))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    assert sum(calls) == K * tokens == sum(module.tokens_per_expert)
    per = fc.get_flop_counts()
    assert sum(per["NetcalcModule.moe"].values()) == 2 * moe.macs
    assert fc.get_total_flops() == 2 * report.totals.macs


def test_routing_rule_top_k_logits_ties_to_the_lower_index():
    from netcalc.torch.modules import MixtureOfExperts

    torch.manual_seed(0)
    experts = [torch.nn.Linear(D, D) for _ in range(E)]
    moe = MixtureOfExperts(D, K, experts, router_bias=False)
    with torch.no_grad():
        moe.gate.weight.zero_()  # every logit ties: experts 0 and 1 for every token
        x = torch.randn(3, D)
        y = moe(x)
        assert moe.tokens_per_expert == [3, 3, 0, 0]
        torch.testing.assert_close(y, 0.5 * experts[0](x) + 0.5 * experts[1](x))
        moe.gate.weight.copy_(torch.randn(E, D))  # the reference: Mixtral's formula
        y = moe(x)
        logits = moe.gate(x)
        want = torch.zeros_like(x)
        for t in range(3):
            top = torch.topk(logits[t], K).indices
            w = torch.softmax(logits[t][top], -1)
            want[t] = sum(w[j] * experts[int(top[j])](x[t]) for j in range(K))
        torch.testing.assert_close(y, want)
        assert sum(moe.tokens_per_expert) == 3 * K


def test_verify_proves_params_and_macs():
    result = crosscheck(tiny(), batch=2)
    assert result.ok, [r.message for r in result.mismatches]
    rows = {(r.layer, r.metric): r for r in result.rows}
    assert rows[("moe", "flopcounter")].verdict == "match"
    assert rows[("moe", "params")].verdict == "match"


@pytest.mark.parametrize("layers", ["", "trainable"])
def test_training_rules_equal_a_real_step(layers):
    spec = SPEC.replace("expert: SwiGLU}}", "expert: SwiGLU}, trainable: false}") \
        if layers else SPEC
    result = traincheck.crosscheck_training(netcalc.parse(spec, "moe.yaml"),
                                            TrainOptions(device="cpu"), batch=2)
    exact = [r.message for r in (*result.rows, *result.totals)
             if r.metric in ("backward_flops", "saved_bytes") and r.verdict != "match"]
    assert not exact, exact
    assert {r.metric for r in result.rows} >= {"backward_flops", "saved_bytes"}


def test_active_params_in_totals_json_check_and_sequence(runner, tmp_path):
    from netcalc.cli import app

    report = netcalc.analyze(tiny())
    active = ROUTER + K * EXPERT + 2 * 50 * D  # + embedding and head
    assert report.totals.active_params == active
    totals = report_dict(report)["totals"]
    assert totals["active_params"] == active and totals["params"] == ROUTER + E * EXPERT + 1600
    assert "nonzero_params" not in totals  # not pruned: pruning's figures stay out
    seq = report.sections["sequence"]
    assert seq["active_non_embedding_params"] == active - 50 * D
    # Kaplan's N is what a token uses, as MACs per token count top_k experts
    assert seq["kaplan_flops_per_token"] == 2 * (active - 50 * D)
    assert seq["macs_per_token"] == active - 50 * D  # all products, no attention here
    # a dense model has no active_params total in its JSON
    assert "active_params" not in report_dict(analyze_text("input: [4]\nlayers: [{Linear: 3}]"))[
        "totals"]
    path = tmp_path / "moe.yaml"
    path.write_text(SPEC + f"expect:\n  active_params: {active}\n  params: {active}\n")
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1 and f"expected {active:,}" in result.output, result.output
    result = runner.invoke(app, ["shapes", str(path), "--format", "json"])
    assert json.loads(result.stdout)["layers"][1]["active_params"] == ROUTER + K * EXPERT
    table = runner.invoke(app, ["shapes", str(path)]).stdout
    assert f"active per token {active:,}" in table
    assert f"active per token {active - 50 * D:,}" in table
    assert (f"Mixture of experts: 1 layer × (router {ROUTER} + {E} experts × {EXPERT:,} "
            f"params), {K} experts per token") in table


def test_errors_are_located():
    """The corpus (tests/bad_specs/moe_*.yaml) has the CLI's cases; these name the rest."""
    for old, new, message in [
            ("expert: SwiGLU}", "expert: Nope}", "moe: argument expert: unknown block 'Nope'"),
            ("num_experts: 4,", "num_experts: 100000,", "moe: num_experts=100,000: at most"),
            ("    args: {hidden: 24}", "    args: {hidden: 24}\n    inputs: [a, b]",
             "block SwiGLU takes 2 inputs (a, b); it must take one")]:
        with pytest.raises(SpecError) as err:
            netcalc.analyze(netcalc.parse(SPEC.replace(old, new), "moe.yaml"))
        assert str(err.value).startswith("moe.yaml:") and message in str(err.value), str(err.value)


def test_torch_builds_at_most_max_nodes_expert_layers():
    """The analysis builds one graph for all experts; torch builds each: bounded too."""
    spec = netcalc.parse(SPEC.replace("num_experts: 4,", "num_experts: 5000,"), "moe.yaml")
    assert netcalc.analyze(spec).totals.params == 5000 * EXPERT + D * 5000 + 1600
    with pytest.raises(SpecError, match=r":14:\d+: moe: 5,000 experts of 5 layers: "
                                        r"torch would build 25,000 layers \(at most 20,000\)"):
        build_module(spec, device="meta")


def test_expert_block_arguments():
    """``expert: {Block: {argument: value}}`` sets the block's arguments, checked as a
    block instance's are."""
    spec = SPEC.replace("expert: SwiGLU}", "expert: {SwiGLU: {hidden: 32}}}")
    moe = next(r for r in netcalc.analyze(netcalc.parse(spec, "moe.yaml")).layers
               if r.name == "moe")
    assert moe.extra["params_per_expert"] == 3 * D * 32
    for new, message in [("expert: {SwiGLU: {hiden: 32}}}", "block SwiGLU has no argument "
                          "'hiden' (did you mean hidden?)"),
                         ("expert: {SwiGLU: 3}}", "expected a block of `blocks:`, by name or "
                          "as {name: {argument: value}}, got {'SwiGLU': 3}")]:
        with pytest.raises(SpecError, match=re.escape(message)):
            netcalc.analyze(netcalc.parse(SPEC.replace("expert: SwiGLU}", new), "moe.yaml"))
