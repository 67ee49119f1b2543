"""Encoder-decoder models: the token input (``tokens:``), the self- and cross-attention
caches, and the T5-small and Whisper-tiny specs against Hugging Face transformers.

The oracle is transformers itself: T5ForConditionalGeneration and
WhisperForConditionalGeneration built from configs written here from the published
config.json values (no download) on the meta device for parameters and state_dict
keys, and tiny configs run for real on the CPU, whose ``past_key_values`` (summed
bytes of the cache tensors) and FlopCounterMode count prove the KV cache, the
cross-attention cache and the MACs. The tiny netcalc specs are the shipped specs with
their widths and lengths replaced (:func:`shrink`), so the structure tested is the
shipped one.
"""

from __future__ import annotations

import re

import pytest

import netcalc
from conftest import SPECS, analyze_text
from netcalc.cli import app
from netcalc.sections.sequence import kv_cache_absence, sequence_section

# The published config.json values (google-t5/t5-small, openai/whisper-tiny)
T5_SMALL = dict(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6,
                num_decoder_layers=6, num_heads=8, relative_attention_num_buckets=32,
                relative_attention_max_distance=128, dropout_rate=0.1,
                layer_norm_epsilon=1e-6, feed_forward_proj="relu", tie_word_embeddings=True)
WHISPER_TINY = dict(vocab_size=51865, num_mel_bins=80, encoder_layers=4, decoder_layers=4,
                    encoder_attention_heads=6, decoder_attention_heads=6, d_model=384,
                    encoder_ffn_dim=1536, decoder_ffn_dim=1536, max_source_positions=1500,
                    max_target_positions=448, pad_token_id=50257, bos_token_id=50257,
                    eos_token_id=50257, decoder_start_token_id=50258)
# Tiny ones, run for real: lengths S (encoder) and T (decoder) differ on purpose
T5_TINY = dict(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
               relative_attention_num_buckets=8, feed_forward_proj="relu")
WHISPER_TINY_CFG = dict(vocab_size=50, num_mel_bins=8, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, d_model=16,
                        encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=10,
                        max_target_positions=6, pad_token_id=0, bos_token_id=1,
                        eos_token_id=2, decoder_start_token_id=1)
BATCH, T5_S, T5_T = 2, 7, 5

# (pattern, replacement): the shipped spec's sizes -> the tiny config's
T5_SHRINK = [(r"input_ids: \{shape: \[512\]", "input_ids: {shape: [7]"),
             (r"decoder_input_ids: \{shape: \[128\]", "decoder_input_ids: {shape: [5]"),
             (r"Constant: \{shape: \[512, 512\]", "Constant: {shape: [7, 7]"),
             (r"Constant: \{shape: \[128, 128\]", "Constant: {shape: [5, 5]"),
             (r"Constant: \{shape: \[1, 8, 128, 512\]", "Constant: {shape: [1, 2, 5, 7]"),
             (r"\b32128\b", "50"), (r"\b2048\b", "32"), (r"\b512\b", "16"),
             (r"heads: 8", "heads: 2"), (r"num_embeddings: 32,", "num_embeddings: 8,"),
             (r"repeat: 5", "repeat: 1"), (r"Scale: 0\.044194173824159216", "Scale: 0.25")]
WHISPER_SHRINK = [(r"\b51865\b", "50"), (r"\b1536\b", "32"), (r"\b384\b", "16"),
                  (r"\b3000\b", "20"), (r"\b1500\b", "10"), (r"\b448\b", "6"),
                  (r"\[80, ", "[8, "), (r"heads: 6", "heads: 2"), (r"repeat: 4", "repeat: 2")]


def shrink(path, replacements) -> str:
    """The spec's text with each size replaced (every pattern must occur), without its
    expect: (the published figures are the full model's)."""
    text = path.read_text().split("\nexpect:")[0]
    for pattern, new in replacements:
        text, n = re.subn(pattern, new, text)
        assert n, f"{pattern} not in {path.name}"
    return text


def cache_bytes(cache) -> int:
    return sum(layer.keys.numel() * layer.keys.element_size()
               + layer.values.numel() * layer.values.element_size() for layer in cache.layers)


def state_shapes(module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def hf():
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


# ------------------------------------------------------------------ published models
@pytest.mark.torch
def test_t5_small_params_and_state_dict_equal_hugging_face(hf):
    torch = pytest.importorskip("torch")
    from netcalc.torch.build import build_module

    with torch.device("meta"):
        ref = hf.T5ForConditionalGeneration(hf.T5Config(**T5_SMALL))
    report = netcalc.analyze(SPECS / "t5_small.yaml")
    assert report.totals.params == ref.num_parameters() == 60_506_624
    ours, theirs = state_shapes(build_module(SPECS / "t5_small.yaml", device="meta")), \
        state_shapes(ref)
    # HF registers its one token table also as `shared` (encoder.embed_tokens is it)
    assert set(theirs) - set(ours) == {"shared.weight"}
    assert ours == {k: theirs[k] for k in ours}


@pytest.mark.torch
def test_whisper_tiny_params_and_state_dict_equal_hugging_face(hf):
    torch = pytest.importorskip("torch")
    from netcalc.torch.build import build_module

    with torch.device("meta"):
        ref = hf.WhisperForConditionalGeneration(hf.WhisperConfig(**WHISPER_TINY))
    report = netcalc.analyze(SPECS / "whisper_tiny.yaml")
    assert report.totals.params == ref.num_parameters() == 37_760_640
    assert state_shapes(build_module(SPECS / "whisper_tiny.yaml", device="meta")) \
        == state_shapes(ref)


def test_published_caches():
    """Per generated token: layers x (k + v) x d_model x 4 bytes; cross-attention: the
    same over the encoder's length, once."""
    t5 = sequence_section(netcalc.analyze(SPECS / "t5_small.yaml"))
    assert (t5["tokens_input"], t5["tokens_chosen_by"]) == ("decoder_input_ids", "tokens")
    assert t5["kv_cache_bytes_per_token"] == 6 * 2 * 512 * 4 == 24_576
    assert t5["cross_attention_cache_bytes"] == 6 * 2 * 512 * 512 * 4 == 12_582_912
    assert t5["cross_attention_length"] == 512 and t5["cross_attention_layers"] == 6
    assert t5["kv_cache_bytes"] == 24_576 * 128 + 12_582_912
    whisper = sequence_section(netcalc.analyze(SPECS / "whisper_tiny.yaml"))
    assert whisper["kv_cache_bytes_per_token"] == 4 * 2 * 384 * 4 == 12_288
    assert whisper["cross_attention_cache_bytes"] == 4 * 2 * 384 * 1500 * 4 == 18_432_000
    assert whisper["self_attention_cache_bytes"] == 12_288 * 448


# ------------------------------------------------------------------ tiny, run for real
def _t5_run(hf, torch):
    model = hf.T5ForConditionalGeneration(hf.T5Config(**T5_TINY)).eval()
    inputs = dict(input_ids=torch.randint(0, 50, (BATCH, T5_S)),
                  decoder_input_ids=torch.randint(0, 50, (BATCH, T5_T)))
    return shrink(SPECS / "t5_small.yaml", T5_SHRINK), model, inputs, T5_T


def _whisper_run(hf, torch):
    model = hf.WhisperForConditionalGeneration(hf.WhisperConfig(**WHISPER_TINY_CFG)).eval()
    inputs = dict(input_features=torch.randn(BATCH, 8, 20),
                  decoder_input_ids=torch.randint(0, 50, (BATCH, 6)))
    return shrink(SPECS / "whisper_tiny.yaml", WHISPER_SHRINK), model, inputs, 6


@pytest.mark.torch
@pytest.mark.parametrize("case", [_t5_run, _whisper_run], ids=["t5", "whisper"])
def test_caches_and_macs_equal_a_real_hugging_face_forward(hf, case):
    """HF's cache after one forward over T tokens: self-attention T positions, cross-
    attention the encoder's S; FlopCounterMode's matmul count is 2 x netcalc's MACs."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from netcalc.torch.build import build_module

    from torch.nn.attention import SDPBackend, sdpa_kernel

    torch.manual_seed(0)
    text, model, inputs, length = case(hf, torch)
    # the math backend: its products are the counter's matmuls (the CPU flash kernel's
    # are not counted)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) \
            as counter:
        out = model(**inputs, use_cache=True)
    cache = out.past_key_values
    report = analyze_text(text, batch=BATCH)
    seq = sequence_section(report)
    assert seq["n_ctx"] == length
    assert seq["kv_cache_bytes_per_token"] * BATCH * length \
        == seq["self_attention_cache_bytes"] == cache_bytes(cache.self_attention_cache)
    assert seq["cross_attention_cache_bytes"] == cache_bytes(cache.cross_attention_cache)
    assert seq["kv_cache_bytes"] == cache_bytes(cache.self_attention_cache) \
        + cache_bytes(cache.cross_attention_cache)
    assert counter.get_total_flops() == 2 * report.totals.macs
    assert report.totals.params == model.num_parameters()
    built = build_module(netcalc.parse(text, "t.yaml")).eval()
    with torch.no_grad():
        assert built(**inputs).shape == out.logits.shape


@pytest.mark.torch
@pytest.mark.parametrize("path, replacements", [("t5_small", T5_SHRINK),
                                                ("whisper_tiny", WHISPER_SHRINK)])
def test_tiny_copies_pass_verify_and_verify_train(path, replacements):
    """``verify`` on CPU (the bundled cross-check runs the full specs on meta), and the
    training rules of every layer (backward FLOPs, saved tensors) against a real CPU
    step: the bundled training check cuts their token inputs but not their Constants."""
    pytest.importorskip("torch")
    from netcalc.torch import crosscheck, traincheck
    from netcalc.training import TrainOptions

    spec = netcalc.parse(shrink(SPECS / f"{path}.yaml", replacements), f"{path}.yaml")
    forward = crosscheck.crosscheck(spec, batch=2, device="cpu", tools=("flopcounter",),
                                    rf=False)
    assert forward.ok, [r.message for r in forward.mismatches[:5]]
    assert {r.metric: r.verdict for r in forward.totals}["flopcounter"] in ("match",
                                                                            "convention")
    result = traincheck.crosscheck_training(spec, TrainOptions(device="cpu"), batch=2)
    exact = [r.message for r in (*result.rows, *result.totals)
             if r.metric != "peak_bytes" and r.verdict == "MISMATCH"]
    assert not exact, exact[:5]


def test_cache_fields_only_with_kv_cache(runner):
    import json

    spec = str(SPECS / "whisper_tiny.yaml")
    plain = json.loads(runner.invoke(app, ["shapes", spec, "-f", "json"]).stdout)["sequence"]
    full = json.loads(runner.invoke(app, ["shapes", spec, "-f", "json", "--kv-cache"])
                      .stdout)["sequence"]
    assert not any("cache" in k or k.startswith("cross") for k in plain)
    assert {k: full[k] for k in full if k not in plain} == {
        "kv_cache_bytes_per_token": 12_288, "kv_cache_bytes": 12_288 * 448 + 18_432_000,
        "self_attention_cache_bytes": 12_288 * 448, "cross_attention_cache_bytes": 18_432_000,
        "cross_attention_layers": 4, "cross_attention_length": 1500}


# ------------------------------------------------------------------ the token input
TWO_INTS = """
inputs: {ids: {shape: [6], dtype: int64}, pos: {shape: [6], dtype: int64}}
%s
layers:
  - {name: emb, Embedding: {num_embeddings: 10, embedding_dim: 8}, from: ids}
  - {name: wpe, Embedding: {num_embeddings: 6, embedding_dim: 8}, from: pos}
  - {name: x, Add: ~, from: [emb, wpe]}
  - {name: heads, Unflatten: {dim: 2, unflattened_size: [2, 4]}}
  - {name: t, Permute: [0, 2, 1, 3]}
  - {name: attn, ScaledDotProductAttention: {is_causal: true}, from: [t, t, t]}
"""


def test_tokens_chosen_by_the_spec_the_only_or_the_first_int_input():
    assert sequence_section(analyze_text(TWO_INTS % ""))["tokens_chosen_by"] == "first"
    seq = sequence_section(analyze_text(TWO_INTS % "tokens: pos"))
    assert (seq["tokens_input"], seq["tokens_chosen_by"]) == ("pos", "tokens")
    one = "inputs: {ids: {shape: [6], dtype: int64}}\nlayers:\n  - {Embedding: [10, 8]}\n"
    assert sequence_section(analyze_text(one.replace("[10, 8]", "{num_embeddings: 10, "
                                                     "embedding_dim: 8}")))[
        "tokens_chosen_by"] == "only"


def test_table_says_which_int_input_was_taken(runner, tmp_path):
    spec = tmp_path / "two.yaml"
    spec.write_text(TWO_INTS % "")
    out = runner.invoke(app, ["shapes", str(spec)]).stdout
    assert "Sequence: 6 tokens (1 × 6 of ids, the first int64 input: name another with " \
           "`tokens:`)" in out
    spec.write_text(TWO_INTS % "tokens: ids")
    assert "Sequence: 6 tokens (1 × 6); " in runner.invoke(app, ["shapes", str(spec)]).stdout


@pytest.mark.parametrize("tokens, message", [
    ("idz", "tokens: 'idz' is not an input (inputs: ids, pos) (did you mean ids?)"),
    ("[ids]", "tokens: ['ids'] is not an input"),
])
def test_tokens_errors(tokens, message):
    with pytest.raises(netcalc.SpecError) as err:
        netcalc.parse(TWO_INTS % f"tokens: {tokens}", "t.yaml")
    assert str(err.value).startswith(f"t.yaml:3:9: {message}")


# ------------------------------------------------------------------ when there is no cache
@pytest.mark.parametrize("spec, why", [
    ("input: [4]\nlayers: [ReLU]\n", "it has no token input (an int64 input; name it with "
                                     "`tokens:`)"),
    (TWO_INTS.replace("is_causal: true", "is_causal: false") % "",
     "its self-attention over 'ids' is not causal (an encoder: nothing is cached token by "
     "token; a decoder sets is_causal, beside a bias input too) (the first of several "
     "int64 inputs: name another with `tokens:`)"),
    ("inputs: {ids: {shape: [6], dtype: int64}}\nlayers:\n"
     "  - {Embedding: {num_embeddings: 10, embedding_dim: 8}}\n",
     "no attention reads the token input 'ids'"),
])
def test_kv_cache_says_why_it_does_not_apply(runner, tmp_path, spec, why):
    path = tmp_path / "m.yaml"
    path.write_text(spec)
    assert kv_cache_absence(netcalc.analyze(path)) == why
    result = runner.invoke(app, ["shapes", str(path), "--kv-cache"])
    assert result.exit_code == 0
    assert result.stderr == f"--kv-cache: no KV cache for this model: {why}\n"


def test_the_tokens_decide_which_attention_is_cross():
    """Cross-attention is the one whose keys/values do not descend from the tokens:
    naming the other int64 input as tokens turns the roles around."""
    text = """
inputs: {src: {shape: [9], dtype: int64}, tgt: {shape: [4], dtype: int64}}
tokens: %s
layers:
  - {name: enc, Embedding: {num_embeddings: 10, embedding_dim: 8}, from: src}
  - {name: dec, Embedding: {num_embeddings: 10, embedding_dim: 8}, from: tgt}
  - {name: self_attn, TransformerDecoderLayer: {nhead: 2, dim_feedforward: 16},
     from: [dec, enc]}
"""
    seq = sequence_section(analyze_text(text % "tgt", batch=3))
    assert seq["kv_cache_bytes_per_token"] == 2 * 8 * 4  # the decoder's self-attention
    assert seq["cross_attention_cache_bytes"] == 3 * 2 * 8 * 9 * 4  # memory keys, once
    assert seq["cross_attention_length"] == 9
    report = analyze_text(text % "src", batch=3)
    assert "kv_cache_bytes_per_token" not in sequence_section(report)
    assert kv_cache_absence(report) == "no attention reads the token input 'src'"


@pytest.mark.torch
def test_causal_beside_a_bias_folds_the_mask_into_the_bias():
    """is_causal with a bias input: what torch computes with the causal mask added to
    the bias by hand."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from netcalc.torch.modules import ScaledDotProductAttention

    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    bias = torch.randn(3, 5, 5)
    causal = torch.ones(5, 5, dtype=torch.bool).tril()
    expected = F.scaled_dot_product_attention(
        q, k, v, attn_mask=bias.masked_fill(~causal, float("-inf")))
    got = ScaledDotProductAttention(is_causal=True)(q, k, v, bias)
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.torch
def test_layer_is_a_free_name_inside_a_block_only():
    """netcalc's root module has a ``layer`` method, its block containers do not: T5's
    ``encoder.block.0.layer.0`` is buildable, a top-level ``layer`` is not."""
    pytest.importorskip("torch")
    from netcalc.torch.build import build_module

    with pytest.raises(netcalc.SpecError, match="'layer' is an attribute of torch.nn.Module"):
        analyze_text("input: [4]\nlayers:\n  - {name: layer, Linear: 4}\n")
    inner = ("input: [4]\nblocks:\n  B:\n    layers:\n      - {name: layer, Linear: 4}\n"
             "layers:\n  - {name: b, B: ~}\n")
    assert set(build_module(netcalc.parse(inner, "t.yaml"), device="meta").state_dict()) \
        == {"b.layer.weight", "b.layer.bias"}
