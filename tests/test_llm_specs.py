"""specs/mistral_7b.yaml and specs/mixtral_8x7b.yaml against Hugging Face transformers'
MistralForCausalLM and MixtralForCausalLM, built from configs written here with the
published config.json values (mistralai/Mistral-7B-v0.1, mistralai/Mixtral-8x7B-v0.1) on
the meta device: no download. Parameters and state_dict keys and shapes at full size;
MACs against FlopCounterMode on a real CPU forward of tiny configs and the same specs
shrunk to the same sizes."""

from __future__ import annotations

import re

import pytest

import netcalc
from conftest import SPECS
from hf_configs import MISTRAL_7B, MIXTRAL_8X7B

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from netcalc.torch.build import build_module  # noqa: E402
from netcalc.torch.crosscheck import crosscheck  # noqa: E402

# config.json of the published checkpoints (tests/hf_configs.py), as constructor keywords
MISTRAL, MIXTRAL = ({k: v for k, v in c.items() if k not in ("architectures", "model_type")}
                    for c in (MISTRAL_7B, MIXTRAL_8X7B))
# the same models shrunk: width 64, 4 heads of 16 (2 kv heads), 2 layers, 4 experts
TINY = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=16, vocab_size=100, num_local_experts=4,
            sliding_window=4)
TOKENS = 7


def hf(kind: str, values: dict, device: str = "meta"):
    cls = {"mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
           "mixtral": (transformers.MixtralConfig, transformers.MixtralForCausalLM)}[kind]
    config = cls[0](**values)
    config._attn_implementation = "eager"  # matmuls FlopCounterMode sees, as the spec's SDPA
    config._experts_implementation = "eager"  # each expert on the tokens routed to it
    with torch.device(device):
        return cls[1](config)


def shrink(text: str) -> str:
    """The spec with the TINY sizes (the expect: block left out)."""
    text = text.split("\nexpect:")[0]
    for old, new in [(r"shape: \[\d+\]", f"shape: [{TOKENS}]"), (r"window: 4096", "window: 4"),
                     (r"\b4096\b", "64"), (r"\b14336\b", "96"), (r"\b32000\b", "100"),
                     (r"\bheads: 32\b", "heads: 4"), (r"\bkv_heads: 8\b", "kv_heads: 2"),
                     (r"\bhead_dim: 128\b", "head_dim: 16"), (r"num_experts: 8", "num_experts: 4"),
                     (r"repeat: 32", "repeat: 2")]:
        text = re.sub(old, new, text)
    return text


def shapes(state: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def test_mistral_params_and_state_dict_equal_transformers():
    model = hf("mistral", MISTRAL)
    report = netcalc.analyze(SPECS / "mistral_7b.yaml")
    assert model.num_parameters() == report.totals.params == 7_241_732_096  # published
    ours = build_module(SPECS / "mistral_7b.yaml", device="meta")
    assert shapes(ours.state_dict()) == shapes(model.state_dict())


def test_mixtral_params_active_params_and_checkpoint_keys():
    model = hf("mixtral", MIXTRAL)
    report = netcalc.analyze(SPECS / "mixtral_8x7b.yaml")
    assert model.num_parameters() == report.totals.params == 46_702_792_704  # published
    # active: all but the 6 of 8 experts a token skips, from transformers' own tensors
    experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    assert model.num_parameters() - experts * 6 // 8 == report.totals.active_params
    assert report.totals.active_params == 12_879_925_248  # published ("13B active")
    # the spec holds the checkpoint's names; transformers 5 converts them on load
    mapping = transformers.conversion_mapping.get_checkpoint_conversion_mapping("mixtral")
    assert [(m.source_patterns, m.target_patterns) for m in mapping] == [
        ([".block_sparse_moe."], [".mlp."]),
        ([".experts.*.w1.weight", ".experts.*.w3.weight"], [".experts.gate_up_proj"]),
        ([".experts.*.w2.weight"], [".experts.down_proj"])]
    ours = shapes(build_module(SPECS / "mixtral_8x7b.yaml", device="meta").state_dict())
    converted: dict[str, tuple[int, ...]] = {}
    stacked: dict[str, list] = {}
    for key, shape in ours.items():
        key = key.replace(".block_sparse_moe.", ".mlp.")
        m = re.fullmatch(r"(.*\.experts)\.(\d+)\.(w[123])\.weight", key)
        if m is None:
            converted[key] = shape
            continue
        target = f"{m[1]}.down_proj" if m[3] == "w2" else f"{m[1]}.gate_up_proj"
        stacked.setdefault(target, []).append((int(m[2]), m[3], shape))
    for target, parts in stacked.items():
        n = 1 + max(i for i, _, _ in parts)
        rows = sum(s[0] for i, _, s in parts if i == 0)  # w1 and w3 concatenated on dim 0
        converted[target] = (n, rows, parts[0][2][1])
    assert converted == shapes(model.state_dict())


@pytest.mark.parametrize("kind", ["mistral", "mixtral"])
def test_tiny_forward_macs_equal_flopcountermode(kind):
    values = {**{"mistral": MISTRAL, "mixtral": MIXTRAL}[kind], **TINY}
    if kind == "mixtral":
        values.pop("head_dim")  # 64 / 4 heads
        values["sliding_window"] = None
    else:
        values.pop("num_local_experts")
    torch.manual_seed(0)
    model = hf(kind, values, device="cpu").eval()
    name = {"mistral": "mistral_7b", "mixtral": "mixtral_8x7b"}[kind]
    spec = netcalc.parse(shrink((SPECS / f"{name}.yaml").read_text()), f"{name}_tiny.yaml")
    report = netcalc.analyze(spec, batch=2)
    assert report.totals.params == model.num_parameters()
    x = torch.randint(0, 100, (2, TOKENS))
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x)
    assert fc.get_total_flops() == 2 * report.totals.macs
    # netcalc's own build of the spec: FlopCounterMode under its documented rules (the
    # CPU flash attention kernel is not counted), the MoE's per expert called
    result = crosscheck(spec, batch=2, tools=("flopcounter",))
    assert result.ok, [r.message for r in result.mismatches]
    seq = report.sections["sequence"]
    assert seq["kaplan_flops_per_token"] == 2 * seq["active_non_embedding_params"] + sum(
        2 * s * d for lay in (n.layer for n in report.graph.nodes)
        for s, d in lay.attention_terms())
    if kind == "mixtral":  # the per-token line: a token uses the router and 2 of 4 experts
        expert = 3 * 64 * 96
        assert seq["active_non_embedding_params"] == seq["non_embedding_params"] - 2 * 2 * expert


def test_mistral_sliding_window_bounds_the_kv_cache():
    from netcalc.layers.attention import causal_kept, window_kept

    seq = netcalc.analyze(SPECS / "mistral_7b.yaml", dtype="bfloat16").sections["sequence"]
    per_token = 32 * 2 * 8 * 128 * 2  # layers, k and v, kv heads, head dim, bfloat16
    assert seq["kv_cache_bytes_per_token"] == per_token
    assert seq["kv_cache_bytes"] == per_token * 4096  # 8,192 tokens, the window's 4,096 kept
    full = 32 * 32 * 8192 * 8192 * 256  # layers, heads, L x S, q.k and p.v products
    assert seq["macs"] - seq["window_macs"] == full - 32 * 32 * window_kept(8192, 8192, 4096) * 256
    assert seq["macs"] - seq["causal_macs"] == full - 32 * 32 * causal_kept(8192, 8192) * 256
