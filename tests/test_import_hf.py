"""`netcalc import --hf-config`: a Hugging Face config.json as a spec, proven against
transformers' own model built from the same config on the meta device (no download).

The oracle is transformers: parameter counts and state_dict keys/shapes of
``AutoModel*.from_config`` on meta, and FlopCounterMode on a real CPU forward of a tiny
config; the published counts are cited in tests/hf_configs.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import netcalc
from conftest import SPECS, analyze_text
from hf_configs import GEMMA_2B, GPT2, LLAMA3_8B, PHI_2, PUBLISHED, QWEN2_0_5B
from netcalc.errors import SpecError
from netcalc.importers import hf
from netcalc.sections.sequence import sequence_section

# tiny configs of every family: 2 layers, small dims (fast on meta and on a real CPU forward)
SMALL = dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, vocab_size=100)
TINY = {
    "gpt2": dict(model_type="gpt2", n_layer=2, n_embd=64, n_head=4, vocab_size=100, n_positions=32),
    "bert": dict(model_type="bert", **SMALL, intermediate_size=128, max_position_embeddings=32),
    "llama": dict(model_type="llama", **SMALL, num_key_value_heads=2, intermediate_size=128,
                  max_position_embeddings=64),
    "mistral": dict(model_type="mistral", **SMALL, num_key_value_heads=2, intermediate_size=128,
                    max_position_embeddings=64, sliding_window=8),
    "qwen2": dict(model_type="qwen2", **SMALL, num_key_value_heads=2, intermediate_size=128,
                  max_position_embeddings=64, tie_word_embeddings=True),
    "mixtral": dict(model_type="mixtral", **SMALL, num_key_value_heads=2, intermediate_size=96,
                    max_position_embeddings=64, num_local_experts=4, num_experts_per_tok=2),
    "gemma": dict(model_type="gemma", **SMALL, num_key_value_heads=1, head_dim=32,
                  intermediate_size=128, max_position_embeddings=64),
    "phi": dict(model_type="phi", **SMALL, intermediate_size=128, max_position_embeddings=64,
                partial_rotary_factor=0.5, qk_layernorm=True),
    "opt": dict(model_type="opt", **SMALL, ffn_dim=128, word_embed_proj_dim=32,
                max_position_embeddings=32, do_layer_norm_before=False),
    "t5": dict(model_type="t5", num_layers=2, d_model=64, num_heads=4, d_ff=128, d_kv=16,
               vocab_size=100),
    "t5-gated": dict(model_type="t5", num_layers=3, num_decoder_layers=2, d_model=64, num_heads=4,
                     d_ff=128, d_kv=8, vocab_size=100, feed_forward_proj="gated-gelu",
                     tie_word_embeddings=False, dropout_rate=0.0),
    "whisper": dict(model_type="whisper", encoder_layers=2, decoder_layers=2, d_model=64,
                    encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                    decoder_ffn_dim=128, vocab_size=100, num_mel_bins=16,
                    max_source_positions=30, max_target_positions=32, pad_token_id=1,
                    bos_token_id=2, eos_token_id=3, decoder_start_token_id=4),
}
SEQ2SEQ = {"t5", "t5-gated", "whisper"}
CLASSES = {"gpt2": "GPT2LMHeadModel", "bert": "BertModel", "llama": "LlamaForCausalLM",
           "mistral": "MistralForCausalLM", "mixtral": "MixtralForCausalLM", "qwen2": "Qwen2ForCausalLM",
           "gemma": "GemmaForCausalLM", "phi": "PhiForCausalLM", "opt": "OPTForCausalLM",
           "t5": "T5ForConditionalGeneration", "t5-gated": "T5ForConditionalGeneration",
           "whisper": "WhisperForConditionalGeneration"}


def lengths(family: str, n: int) -> dict:
    """--seq-len / --decoder-seq-len of the tiny configs (Whisper's encoder length is fixed)."""
    if family == "whisper":
        return {"decoder_seq_len": n}
    return {"seq_len": n, "decoder_seq_len": n // 2} if family in SEQ2SEQ else {"seq_len": n}


def write(tmp_path: Path, config: dict, name: str = "config.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(config, indent=2))
    return str(path)


def transformers_params(path: str) -> tuple[str, int]:
    from netcalc.importers.hfconfig import HFConfig
    from netcalc.importers.hfverify import transformers_model

    cfg = HFConfig.read(path)
    model_type, _, task = hf._family(cfg, None)
    model = transformers_model(cfg, model_type, task)
    return type(model).__name__, sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------- figures
@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_config_params_equal_transformers(tmp_path, name):
    """The full-size published configs: netcalc's count of the imported spec (analysis
    only) equals transformers' model built from the config, and the published figure."""
    pytest.importorskip("transformers")
    config, published = PUBLISHED[name]
    path = write(tmp_path, config)
    report = netcalc.analyze(netcalc.parse(hf.spec_text(path), path))
    cls, count = transformers_params(path)
    assert report.totals.params == count, cls
    if published is not None:
        assert count == published
    if name == "mixtral-8x7b":  # the paper's "13B active": the router and 2 of 8 experts
        assert report.totals.active_params == 12_879_925_248


@pytest.mark.torch
@pytest.mark.parametrize("family", sorted(TINY))
def test_family_state_dict_equals_transformers(tmp_path, family):
    """Every key and shape of the built spec's state_dict is the transformers model's
    (GPT-2's Conv1D weights are the documented transposed convention)."""
    pytest.importorskip("transformers")
    path = write(tmp_path, TINY[family])
    result = hf.verify(path, hf.spec_text(path, **lengths(family, 16)))
    assert result.ok, result.message
    assert f"transformers' {CLASSES[family]}:" in result.name
    totals = {r.metric: (r.analytic, r.torch) for r in result.totals}
    assert totals["params"][0] == totals["params"][1]
    assert totals["state_dict keys"][0] == totals["state_dict keys"][1]
    conv = [r.layer for r in result.rows if r.verdict == "convention"]
    if family == "gpt2":  # Conv1D: c_attn, c_fc, c_proj per layer
        assert len(conv) == 3 * 2
    else:  # T5's alias of its one token table
        assert conv == (["shared.weight"] if family.startswith("t5") else [])


@pytest.mark.torch
@pytest.mark.parametrize("family", sorted(TINY))
def test_tiny_macs_equal_flopcounter_on_a_real_forward(tmp_path, family):
    """2 x netcalc's MACs = FlopCounterMode's FLOPs of transformers' own forward on CPU
    (eager attention: its q k^T and weights x v are matmuls torch counts)."""
    pytest.importorskip("transformers")
    import torch
    import transformers
    from torch.utils.flop_counter import FlopCounterMode

    config = dict(TINY[family])
    path = write(tmp_path, config)
    length = 8  # below Mistral's window of 8 + 1: the band is the full causal triangle
    report = netcalc.analyze(netcalc.parse(hf.spec_text(path, **lengths(family, length)), path))
    model_type = config.pop("model_type")
    cfg = transformers.AutoConfig.for_model(model_type, **config)
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = "eager"  # Mixtral: each expert on the tokens routed to it
    model = getattr(transformers, CLASSES[family])(cfg).eval()
    inputs = {"input_ids": torch.randint(0, 100, (1, length))}
    if family in SEQ2SEQ:
        inputs["decoder_input_ids"] = torch.randint(0, 100, (1, lengths(family, length)
                                                              ["decoder_seq_len"]))
    if family == "whisper":
        del inputs["input_ids"]
        inputs["input_features"] = torch.randn(1, 16, 60)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    assert counter.get_total_flops() == 2 * report.totals.macs


def test_gemma_non_embedding_params_and_tying(tmp_path):
    """Non-embedding params (the sequence section, Kaplan's N) leave out embedding layers
    only: a head tied to the embedding adds nothing, an untied head counts in full."""
    d, ffn, kv, layers, vocab = 2048, 16384, 1 * 256, 18, 256000  # 8 query heads of 256 = d
    per_layer = d * d + 2 * d * kv + d * d + 3 * d * ffn + 2 * d  # q, k, v, o; MLP; 2 norms
    tied = analyze_text(hf.spec_text(write(tmp_path, GEMMA_2B), seq_len=64))
    s = sequence_section(tied)
    assert s["non_embedding_params"] == layers * per_layer + d == 1_981_884_416  # Gemma Table 2
    assert s["embedding_params"] == vocab * d
    untied = analyze_text(hf.spec_text(write(tmp_path, {**GEMMA_2B, "tie_word_embeddings": False}),
                                       seq_len=64))
    u = sequence_section(untied)
    assert untied.totals.params == tied.totals.params + vocab * d
    assert u["non_embedding_params"] == s["non_embedding_params"] + vocab * d
    assert u["embedding_params"] == s["embedding_params"]


# ---------------------------------------------------------------------------- bundled specs
BUNDLED = {"llama3_8b": LLAMA3_8B, "gemma_2b": GEMMA_2B, "qwen2_0_5b": QWEN2_0_5B, "phi_2": PHI_2}


def _body(text: str) -> str:
    """From the first block to the end of the layers: what the importer writes."""
    return text[text.index("\ninputs:"):text.index("\nexpect:")]


@pytest.mark.parametrize("stem", sorted(BUNDLED))
def test_bundled_spec_is_the_importers_output(tmp_path, stem):
    text = (SPECS / f"{stem}.yaml").read_text()
    assert _body(hf.spec_text(write(tmp_path, BUNDLED[stem]))) == _body(text)


@pytest.mark.torch
@pytest.mark.parametrize("stem", sorted(BUNDLED))
def test_bundled_spec_equals_transformers_on_meta(tmp_path, stem):
    """The bundled spec built on meta: params, state_dict keys and shapes equal the
    transformers model of the published config."""
    pytest.importorskip("transformers")
    path = write(tmp_path, BUNDLED[stem])
    result = hf.verify(path, (SPECS / f"{stem}.yaml").read_text())
    assert result.ok, result.message
    assert result.totals[0].torch == netcalc.load(SPECS / f"{stem}.yaml").expect["params"]


def test_gpt2_is_one_block_used_12_times(tmp_path):
    text = hf.spec_text(write(tmp_path, GPT2))
    assert text.count("\n  GPT2Block:") == 1
    assert "{name: h, GPT2Block: ~, repeat: 12}" in text
    assert "tie: transformer.wte" in text
    report = analyze_text(text)
    assert report.totals.params == 124_439_808
    # the same MACs as the hand-written specs/gpt2.yaml (q, k, v as one c_attn here)
    assert report.totals.macs == netcalc.analyze(SPECS / "gpt2.yaml").totals.macs


def test_header_provenance_and_expect(tmp_path):
    text = hf.spec_text(write(tmp_path, TINY["llama"]), seq_len=16)
    lines = text.splitlines()
    assert lines[0] == "# yaml-language-server: $schema=../netcalc.schema.json"
    assert f"netcalc {netcalc.__version__}" in lines[1] and "model_type llama" in text
    assert "task causal-lm: transformers' LlamaForCausalLM" in text
    spec = netcalc.parse(text, "t.yaml")
    assert dict(spec.expect) == {"output": [16, 100], "params": 86_848,
                                 "macs": analyze_text(text).totals.macs}


def test_import_runs_without_torch_or_transformers(tmp_path):
    path = write(tmp_path, TINY["llama"])
    code = ("import sys; from netcalc.importers import hf; hf.spec_text(sys.argv[1]); "
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; "
            "sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code, path]).returncode == 0


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("text, message", [
    ('{"model_type": "llama",\n  "hidden_size": 64,,}', r"config.json:2:21: not JSON"),
    ("[1, 2]", r"config.json:1:1: not a Hugging Face config"),
    ('{"hidden_size": 64}', r'config.json:1:1: not a Hugging Face config: it has no "model_type"'),
    ('{\n "model_type": "bloom"}', r"config.json:2:2: model_type: unknown model type bloom "
                                   r"\(the importer maps bert, gemma"),
    ('{"model_type": "a\\nb: 1"}', r'unknown model type "a\\nb: 1"'),
    ('{"model_type": "llama",\n "hidden_size": "64"}', r"2:2: hidden_size: expected an integer"),
    ('{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, '
     '"num_attention_heads": 4, "num_key_value_heads": 3}', r"3 kv heads do not divide 4"),
    ('{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": -2}',
     r"num_hidden_layers: -2 is out of range"),
    ('{"model_type": "gpt2", "n_embd": 64, "n_layer": 1, "n_head": 4, "vocab_size": 9, '
     '"activation_function": "mish"}', r'activation_function: "mish" is not supported'),
    ('{"model_type": "gpt2", "n_embd": 64}', r"1:1: 'n_layer' is missing"),
    ('{"model_type": "llama", "hidden_size": NaN}', r"not JSON: NaN is not a JSON number"),
])
def test_bad_config_is_one_located_line(tmp_path, text, message):
    path = tmp_path / "config.json"
    path.write_text(text)
    with pytest.raises(SpecError, match=message) as err:
        hf.spec_text(str(path))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"task": "seq2seq"}, r"--task: a gpt2 config maps to the causal-lm task only"),
    ({"task": "vision"}, r"--task: 'vision' is not a task"),
    ({"seq_len": 33}, r"--seq-len: 33 tokens, more than the model's 32 learned positions"),
    ({"decoder_seq_len": 8}, r"--decoder-seq-len: only for seq2seq models"),
])
def test_bad_options(tmp_path, kwargs, message):
    with pytest.raises(SpecError, match=message):
        hf.spec_text(write(tmp_path, TINY["gpt2"]), **kwargs)


def test_nested_layers_may_take_the_roots_reserved_names():
    """BERT's modules are encoder.layer.N.attention.self: `layer` and `self` are names of
    netcalc's root module only, so they are refused at the top level, allowed in blocks."""
    inner = "blocks: {B: [{name: self, ReLU: ~}, {name: layer, ReLU: ~}]}\n"
    ok = "input: [4]\n" + inner + "layers: [{name: b, B: ~}]\n"
    assert [x.name for x in analyze_text(ok).layers] == ["b.self", "b.layer"]
    with pytest.raises(SpecError, match="'layer' is an attribute"):
        analyze_text("input: [4]\nlayers: [{name: layer, ReLU: ~}]\n")



# ---------------------------------------------------------------------------- CLI
def test_cli_writes_a_spec_that_check_passes(runner, tmp_path):
    from netcalc.cli import app

    out = tmp_path / "gpt2.yaml"
    result = runner.invoke(app, ["import", "--hf-config", write(tmp_path, TINY["gpt2"]),
                                 "--seq-len", "16", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["check", str(out)]).exit_code == 0
    again = runner.invoke(app, ["import", "--hf-config", str(tmp_path / "config.json"),
                                "-o", str(out)])
    assert again.exit_code == 2 and "--force" in again.stderr


@pytest.mark.torch
def test_cli_verify(runner, tmp_path):
    pytest.importorskip("transformers")
    from netcalc.cli import app

    result = runner.invoke(app, ["import", "--hf-config", write(tmp_path, TINY["bert"]),
                                 "--seq-len", "8", "-o", str(tmp_path / "b.yaml"), "--verify"])
    assert result.exit_code == 0, result.output
    assert "OK: every number matches" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--task", "encoder"], "--task: a llama config maps to the causal-lm task only"),
    (["--decoder-seq-len", "8"], "--decoder-seq-len: only for seq2seq models"),
])
def test_cli_bad_input_one_line_exit_2(runner, tmp_path, args, message):
    from netcalc.cli import app

    result = runner.invoke(app, ["import", "--hf-config", write(tmp_path, TINY["llama"]), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_cli_bad_config_one_line_exit_2(runner, tmp_path):
    from netcalc.cli import app

    path = tmp_path / "config.json"
    path.write_text('{"model_type": "llama", "hidden_size": 64,\n "num_hidden_layers": true}')
    result = runner.invoke(app, ["import", "--hf-config", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"{path}:2:2: num_hidden_layers: expected an integer, "
                                     "got true")
