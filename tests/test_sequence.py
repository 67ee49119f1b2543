"""Sequence models: Embedding(Bag), RNN/LSTM/GRU, attention, transformer layers, the
sequence report section and the four sequence specs (GPT-2, BERT-base, LSTM LM,
Llama-2-7B).

Every layer case states shape, params, MACs and element-wise FLOPs as a hand
derivation; the same layer's ``torch_module()`` is then built on the meta device for
its exact parameter count and run on small CPU tensors under torch's FLOP counter
(math attention backend), whose matmul count is 2 x netcalc's MACs.
"""

from __future__ import annotations

import re
import warnings

import pytest

import netcalc
from conftest import SPECS, analyze_text
from netcalc.errors import Mark, SpecError
from netcalc.layers import REGISTRY
from netcalc.layers.attention import causal_kept, window_kept
from netcalc.layers.base import INT, Ctx, Layer, TensorInfo
from netcalc.sequence import kv_cache_bytes_per_token, sequence_section


def make(type_: str, args: dict | None = None) -> Layer:
    return REGISTRY[type_](args, Ctx("layer", Mark(3, 5)))


def run(layer: Layer, *inputs) -> list[tuple[int, ...]]:
    """Infer with inputs given as shapes (float) or (shape, dtype) pairs."""
    infos = [TensorInfo(*i) if isinstance(i[0], tuple) else TensorInfo(tuple(i)) for i in inputs]
    return [t.shape for t in layer.infer(infos)]


def fails(message: str):
    return pytest.raises(SpecError, match=re.escape(message))


# ------------------------------------------------------------------ derivations
def rnn_params(gates, in_size, hidden, layers=1, bias=True, bidir=False, proj=0):
    d = 2 if bidir else 1
    h_out = proj or hidden
    total = 0
    for k in range(layers):
        in_k = in_size if k == 0 else d * h_out
        total += d * (gates * hidden * (in_k + h_out) + (2 * gates * hidden if bias else 0)
                      + proj * hidden)
    return total


def rnn_macs(n, length, gates, in_size, hidden, layers=1, bidir=False, proj=0):
    d = 2 if bidir else 1
    h_out = proj or hidden
    per_step = sum(gates * hidden * ((in_size if k == 0 else d * h_out) + h_out) + proj * hidden
                   for k in range(layers))
    return n * length * d * per_step


def mha_params(e, kdim=None, vdim=None, bias=True, bias_kv=False):
    kdim, vdim = kdim or e, vdim or e
    return e * e + e * kdim + e * vdim + e * e + (4 * e if bias else 0) + (2 * e if bias_kv else 0)


def mha_macs(n, length, s, e, kdim=None, vdim=None, extra_kv=0):
    kdim, vdim = kdim or e, vdim or e
    return n * (2 * length * e * e + s * e * (kdim + vdim) + 2 * length * (s + extra_kv) * e)


def encoder_params(d, ff, bias=True):
    norms = 2 * (2 if bias else 1) * d  # LayerNorm(bias=bias): weight (+ bias)
    return mha_params(d, bias=bias) + 2 * d * ff + (ff + d if bias else 0) + norms


def encoder_macs(n, length, d, ff):
    return n * (4 * length * d * d + 2 * length * length * d + 2 * length * d * ff)


def decoder_params(d, ff):
    return 2 * mha_params(d) + 2 * d * ff + ff + d + 3 * 2 * d


def decoder_macs(n, t, s, d, ff):
    return n * (4 * t * d * d + 2 * t * t * d          # self-attention
                + 2 * t * d * d + 2 * s * d * d + 2 * t * s * d   # cross-attention
                + 2 * t * d * ff)


# ------------------------------------------------------------------ layer cases
# (type, args, inputs, output shapes, params, macs, elementwise flops)
I8 = ((2, 7), INT)
CASES = [
    # Embedding: lookup, 0 MACs; weight num_embeddings x embedding_dim
    ("Embedding", {"num_embeddings": 50, "embedding_dim": 8}, [I8], [(2, 7, 8)], 400, 0, 0),
    ("Embedding", {"num_embeddings": 50, "embedding_dim": 8, "padding_idx": 0},
     [((2, 3, 4), INT)], [(2, 3, 4, 8)], 400, 0, 0),
    # EmbeddingBag (N, B) -> (N, E): sum N*(B-1)*E adds, mean + N*E divides
    ("EmbeddingBag", {"num_embeddings": 50, "embedding_dim": 8}, [I8], [(2, 8)], 400, 0,
     2 * 6 * 8 + 2 * 8),
    ("EmbeddingBag", {"num_embeddings": 50, "embedding_dim": 8, "mode": "sum"}, [I8], [(2, 8)],
     400, 0, 2 * 6 * 8),
    ("EmbeddingBag", {"num_embeddings": 50, "embedding_dim": 8, "mode": "max"}, [I8], [(2, 8)],
     400, 0, 2 * 6 * 8),
    # RNN: G=1; per step and unit 2 FLOPs + 2 bias adds
    ("RNN", {"hidden_size": 16}, [(2, 5, 10)], [(2, 5, 16), (1, 2, 16)],
     16 * 10 + 16 * 16 + 32, 2 * 5 * 16 * (10 + 16), 2 * 5 * 16 * 4),
    ("RNN", {"hidden_size": 16, "num_layers": 3, "nonlinearity": "relu", "bias": False},
     [(2, 5, 10)], [(2, 5, 16), (3, 2, 16)], rnn_params(1, 10, 16, 3, bias=False),
     rnn_macs(2, 5, 1, 10, 16, 3), 2 * 5 * 3 * 16 * 2),
    # GRU: G=3; 11 + 6 bias FLOPs per unit and step
    ("GRU", {"hidden_size": 16, "num_layers": 2, "bidirectional": True}, [(2, 5, 10)],
     [(2, 5, 32), (4, 2, 16)], rnn_params(3, 10, 16, 2, bidir=True),
     rnn_macs(2, 5, 3, 10, 16, 2, bidir=True), 2 * 5 * 2 * 2 * 16 * 17),
    # LSTM: G=4; 13 + 8 bias FLOPs per unit and step; c_n is a third output
    ("LSTM", {"hidden_size": 16}, [(2, 5, 10)], [(2, 5, 16), (1, 2, 16), (1, 2, 16)],
     4 * 16 * (10 + 16) + 8 * 16, 2 * 5 * 4 * 16 * 26, 2 * 5 * 16 * 21),
    ("LSTM", {"hidden_size": 16, "proj_size": 6, "num_layers": 2, "bidirectional": True},
     [(2, 5, 10)], [(2, 5, 12), (4, 2, 6), (4, 2, 16)],
     rnn_params(4, 10, 16, 2, bidir=True, proj=6), rnn_macs(2, 5, 4, 10, 16, 2, True, 6),
     2 * 5 * 2 * 2 * 16 * 21),
    # MultiheadAttention, self: projections 4*L*E*E + scores and weighted sum 2*L*L*E.
    # FLOPs: biases 2*L*E + 2*S*E; per score: scale 1 + softmax 5
    ("MultiheadAttention", {"num_heads": 4}, [(2, 6, 16)], [(2, 6, 16)], mha_params(16),
     mha_macs(2, 6, 6, 16), 2 * (4 * 6 * 16) + 2 * 4 * 6 * 6 * 6),
    # cross-attention with kdim/vdim inferred from key and value, bias_kv adds a key
    ("MultiheadAttention", {"num_heads": 4, "add_bias_kv": True, "add_zero_attn": True},
     [(2, 6, 16), (2, 9, 12), (2, 9, 20)], [(2, 6, 16)],
     mha_params(16, 12, 20, bias_kv=True), mha_macs(2, 6, 9, 16, 12, 20, extra_kv=2),
     2 * (2 * 6 * 16 + 2 * 9 * 16) + 2 * 4 * 6 * 11 * 6),
    # two inputs: query, memory (key = value = memory)
    ("MultiheadAttention", {"num_heads": 2, "bias": False}, [(2, 6, 16), (2, 9, 16)],
     [(2, 6, 16)], mha_params(16, bias=False), mha_macs(2, 6, 9, 16), 2 * 2 * 6 * 9 * 6),
    # attn_mask (N*H, L, S), the last input: + 1 FLOP per score for its add
    ("MultiheadAttention", {"num_heads": 4, "attn_mask": True}, [(2, 6, 16), (2, 9, 16),
                                                                 (8, 6, 9)],
     [(2, 6, 16)], mha_params(16), mha_macs(2, 6, 9, 16),
     2 * (2 * 6 * 16 + 2 * 9 * 16) + 2 * 4 * 6 * 9 * 7),
    # SDPA: B*L*S*(E + Ev); per score: scale 1 (+ causal mask 1) + softmax 5
    ("ScaledDotProductAttention", {}, [(2, 3, 6, 8), (2, 3, 9, 8), (2, 3, 9, 5)],
     [(2, 3, 6, 5)], 0, 6 * 6 * 9 * (8 + 5), 6 * 6 * 9 * 6),
    ("ScaledDotProductAttention", {"is_causal": True}, [(2, 3, 6, 8)] * 3,
     [(2, 3, 6, 8)], 0, 6 * 6 * 6 * 16, 6 * 6 * 6 * 7),
    # an additive bias (T5's relative positions) broadcast over the batch: + 1 per score
    ("ScaledDotProductAttention", {"scale": 1.0},
     [(2, 3, 6, 8), (2, 3, 9, 8), (2, 3, 9, 5), (1, 3, 6, 9)], [(2, 3, 6, 5)], 0,
     6 * 6 * 9 * (8 + 5), 6 * 6 * 9 * 7),
    # a sliding window: the full L x L still (window_macs beside), + 1 per score for its mask
    ("ScaledDotProductAttention", {"is_causal": True, "window": 3}, [(2, 3, 6, 8)] * 3,
     [(2, 3, 6, 8)], 0, 6 * 6 * 6 * 16, 6 * 6 * 6 * 7),
    ("ScaledDotProductAttention", {"enable_gqa": True},
     [(2, 4, 6, 8), (2, 2, 6, 8), (2, 2, 6, 8)], [(2, 4, 6, 8)], 0, 8 * 6 * 6 * 16, 8 * 36 * 6),
    # transformer layers: the sum of their parts
    ("TransformerEncoderLayer", {"nhead": 4, "dim_feedforward": 32}, [(2, 6, 16)], [(2, 6, 16)],
     encoder_params(16, 32), encoder_macs(2, 6, 16, 32), None),
    ("TransformerEncoderLayer", {"nhead": 4, "dim_feedforward": 32, "bias": False,
                                 "activation": "gelu", "norm_first": True},
     [(2, 6, 16)], [(2, 6, 16)], encoder_params(16, 32, bias=False),
     encoder_macs(2, 6, 16, 32), None),
    ("TransformerDecoderLayer", {"nhead": 4, "dim_feedforward": 32},
     [(2, 6, 16), (2, 9, 16)], [(2, 6, 16)], decoder_params(16, 32),
     decoder_macs(2, 6, 9, 16, 32), None),
]


def _case_id(case):
    return f"{case[0]}-{'-'.join(f'{k}={v}' for k, v in case[1].items())}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_layer_counts(case):
    type_, args, inputs, outs, params, macs, ew = case
    layer = make(type_, args)
    assert run(layer, *inputs) == outs
    assert layer.params() == params
    assert layer.macs() == macs
    if ew is not None:
        assert layer.elementwise_flops() == ew
    assert layer.flops() == 2 * layer.macs() + layer.elementwise_flops()


def test_transformer_elementwise_is_the_sum_of_its_parts():
    n, length, d, ff = 2, 6, 16, 32
    layer = make("TransformerEncoderLayer", {"nhead": 4, "dim_feedforward": 32})
    run(layer, (n, length, d))
    attn = 2 * n * length * d * 2 + n * 4 * length * length * 6   # biases, scale + softmax
    ffn = n * length * ff + n * length * ff * 1 + n * length * d  # bias, ReLU, bias
    norms = 2 * n * length * d * 7                                # LayerNorm 5 + weight + bias
    residual = 2 * n * length * d
    assert layer.elementwise_flops() == attn + ffn + norms + residual


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_layer_against_torch(case):
    """Params on the meta device; shapes and MACs from a real run under FlopCounterMode."""
    torch = pytest.importorskip("torch")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    type_, args, inputs, outs, params, macs, _ = case
    layer = make(type_, args)
    run(layer, *inputs)
    with torch.device("meta"):
        meta = layer.torch_module()
    assert sum(p.numel() for p in meta.parameters()) == params
    module = layer.torch_module().eval()
    xs = []
    for i in inputs:
        if isinstance(i[0], tuple):
            xs.append(torch.randint(0, args["num_embeddings"], i[0]))
        else:
            xs.append(torch.randn(*i))
    # Grad enabled, math attention and no oneDNN RNN kernel: no fused path the counter
    # cannot see into.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False), sdpa_kernel(SDPBackend.MATH), \
                FlopCounterMode(display=False) as counter:
            out = module(*xs)
    got = out if isinstance(out, tuple) else (out,)
    assert [tuple(o.shape) for o in got] == outs
    if not type_.startswith("Embedding"):
        assert counter.get_total_flops() == 2 * macs


def test_lstm_128_to_256_two_layers_has_921600_params():
    layer = make("LSTM", {"hidden_size": 256, "num_layers": 2})
    run(layer, (1, 10, 128))
    # layer 0: 4*256*(128 + 256) + 2*4*256; layer 1: 4*256*(256 + 256) + 2*4*256
    assert layer.params() == 395_264 + 526_336 == 921_600
    torch = pytest.importorskip("torch")
    with torch.device("meta"):
        ref = torch.nn.LSTM(128, 256, num_layers=2)
    assert sum(p.numel() for p in ref.parameters()) == 921_600


def test_causal_macs_beside_the_full_count():
    r = analyze_text("""
inputs: {q: [4, 10, 8], k: [4, 6, 8], v: [4, 6, 8]}
layers:
  - {name: full, ScaledDotProductAttention: {is_causal: true}, from: [q, q, q]}
  - {name: rect, ScaledDotProductAttention: {is_causal: true}, from: [q, k, v]}
  - {name: plain, ScaledDotProductAttention: ~, from: [q, k, v]}
""", batch=2)
    full, rect, plain = r.layers
    b = 2 * 4
    assert full.macs == b * 10 * 10 * 16
    assert full.extra == {"causal_macs": b * (10 * 11 // 2) * 16}
    # torch's mask is tril(ones(L, S)): rows 0..5 keep 1..6, rows 6..9 keep all 6
    assert causal_kept(10, 6) == 21 + 4 * 6
    assert rect.extra == {"causal_macs": b * 45 * 16}
    assert plain.extra == {}


# ------------------------------------------------------------------ bad input
def test_embedding_rejects_float_input():
    layer = make("Embedding", {"num_embeddings": 10, "embedding_dim": 4})
    with fails("needs integer token ids, got a float input [2, 7]; declare token ids with "
               "a dtype: `inputs: {tokens: {shape: [L], dtype: int64}}`"):
        run(layer, (2, 7))


def test_token_input_without_dtype_is_located():
    text = """inputs:
  tokens: {shape: [16]}
layers:
  - Embedding: {num_embeddings: 100, embedding_dim: 8}
"""
    with pytest.raises(SpecError) as err:
        analyze_text(text)
    assert str(err.value).startswith("t.yaml:4:5: embedding_0: Embedding needs integer token "
                                     "ids, got a float input [1, 16]")
    assert "dtype: int64" in str(err.value)


def test_embedding_padding_idx_out_of_range():
    with fails("padding_idx=10 must be within num_embeddings=10"):
        make("Embedding", {"num_embeddings": 10, "embedding_dim": 4, "padding_idx": 10})


def test_mha_heads_must_divide_embed_dim():
    text = """inputs: {x: [5, 30]}
layers:
  - MultiheadAttention: 4
"""
    with pytest.raises(SpecError) as err:
        analyze_text(text)
    assert str(err.value) == ("t.yaml:3:5: multiheadattention_0: embed_dim=30 is not divisible "
                              "by num_heads=4 (each head gets embed_dim/num_heads features)")
    text = """inputs: {x: [5, 30]}
layers:
  - TransformerEncoderLayer: {nhead: 8}
"""
    with pytest.raises(SpecError, match=r"t.yaml:3:\d+: .*d_model=30 is not divisible by nhead=8"):
        analyze_text(text)


def test_sequence_length_mismatches_are_located():
    text = """inputs: {q: [5, 16], k: [7, 16], v: [6, 16]}
layers:
  - {MultiheadAttention: 4, from: [q, k, v]}
"""
    with pytest.raises(SpecError) as err:
        analyze_text(text)
    assert str(err.value).startswith("t.yaml:3:6: multiheadattention_0: ")
    assert "key and value sequence lengths differ: key [1, 7, 16] has 7, value [1, 6, 16] has 6" \
        in str(err.value)
    text = """inputs: {q: [2, 5, 16], k: [2, 7, 16], v: [2, 6, 16]}
layers:
  - {ScaledDotProductAttention: ~, from: [q, k, v]}
"""
    with pytest.raises(SpecError, match=r"^t.yaml:3:6: .*k and v sequence lengths differ"):
        analyze_text(text)
    text = """inputs: {a: [5, 16], b: [7, 16]}
layers:
  - {name: kt, Permute: [0, 2, 1], from: b}
  - {MatMul: ~, from: [kt, a]}
"""
    with pytest.raises(SpecError, match=r"^t.yaml:4:6: .*mismatch: \[1, 16, 7\] @ \[1, 5, 16\]"):
        analyze_text(text)


def test_attention_input_errors():
    with fails("the attn_mask is [2, 6, 6]; torch takes (L, S) = [6, 6] or (N*num_heads, L, "
               "S) = [4, 6, 6]"):
        run(make("MultiheadAttention", {"num_heads": 2, "attn_mask": True}), (2, 6, 8),
            (2, 6, 6))
    with fails("attn_mask: true takes the mask as the last input"):
        run(make("MultiheadAttention", {"num_heads": 2, "attn_mask": True}), (2, 6, 8))
    with fails("the bias [2, 6, 9] does not broadcast to the scores [2, 3, 6, 9]"):
        run(make("ScaledDotProductAttention"), (2, 3, 6, 8), (2, 3, 9, 8), (2, 3, 9, 8),
            (2, 6, 9))
    with fails("window is a causal sliding window: set is_causal: true too"):
        make("ScaledDotProductAttention", {"window": 4})
    with fails("q and k feature sizes differ"):
        run(make("ScaledDotProductAttention"), (1, 2, 5, 8), (1, 2, 5, 4), (1, 2, 5, 4))
    with fails("(with fewer k/v heads, set enable_gqa: true)"):
        run(make("ScaledDotProductAttention"), (1, 4, 5, 8), (1, 2, 5, 8), (1, 2, 5, 8))
    with fails("needs 3-d inputs (N, L, E), batch first"):
        run(make("MultiheadAttention", {"num_heads": 2}), (4, 8))
    with fails("memory has 12 features but d_model=16"):
        run(make("TransformerDecoderLayer", {"nhead": 2}), (1, 4, 16), (1, 4, 12))
    with fails("needs a 3-d input (N, L, features), batch first"):
        run(make("LSTM", {"hidden_size": 4}), (1, 8))
    with fails("proj_size=8 must be smaller than hidden_size=8"):
        make("LSTM", {"hidden_size": 8, "proj_size": 8})
    with fails("input_size=5 but the input gives 6"):
        run(make("GRU", {"hidden_size": 4, "input_size": 5}), (1, 3, 6))


def test_rnn_outputs_are_named():
    r = analyze_text("""
inputs: {x: [9, 4]}
layers:
  - {name: rnn, LSTM: {hidden_size: 8, num_layers: 3}}
  - {name: last, Linear: 2, from: rnn:h_n}
outputs: [rnn, rnn:c_n, last]
""", batch=2)
    assert r.outputs == {"rnn": (2, 9, 8), "rnn:c_n": (3, 2, 8), "last": (3, 2, 2)}


# ------------------------------------------------------------------ specs
def spec(name: str, **kw) -> netcalc.Report:
    return netcalc.analyze(SPECS / f"{name}.yaml", **kw)


def test_gpt2_small():
    r = spec("gpt2")
    v, n_pos, d, layers, length = 50257, 1024, 768, 12, 1024
    block = 2 * 2 * d + 4 * (d * d + d) + 2 * d * 4 * d + 4 * d + d
    assert block == 7_087_872
    assert r.totals.params == v * d + n_pos * d + layers * block + 2 * d == 124_439_808
    head = next(row for row in r.layers if row.name == "lm_head")
    assert head.tied_to == "wte" and head.params == 0 and head.macs == length * d * v
    macs = layers * (4 * length * d * d + 2 * length * length * d + 8 * length * d * d) \
        + length * d * v
    assert r.totals.macs == macs == 145_824_153_600
    assert r.outputs == {"lm_head": (1, 1024, 50257)}


def test_llama2_7b():
    r = spec("llama2_7b")
    v, d, ffn, layers, length = 32000, 4096, 11008, 32, 4096
    per_layer = 4 * d * d + 3 * d * ffn + 2 * d
    assert r.totals.params == v * d + layers * per_layer + d + v * d == 6_738_415_616
    macs = layers * (4 * length * d * d + 2 * length * length * d + 3 * length * d * ffn) \
        + length * d * v
    assert r.totals.macs == macs


def test_bert_base_against_torch():
    r = spec("bert_base")
    v, n_pos, d, ff, layers, length = 30522, 512, 768, 3072, 12, 512
    embeddings = (v + n_pos + 2) * d + 2 * d
    assert r.totals.params == embeddings + layers * encoder_params(d, ff) == 108_891_648
    assert r.totals.macs == layers * encoder_macs(1, length, d, ff)
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with torch.device("meta"):
        # BertModel(add_pooling_layer=False), layer for layer
        ref = nn.ModuleList([nn.Embedding(v, d, padding_idx=0), nn.Embedding(n_pos, d),
                             nn.Embedding(2, d), nn.LayerNorm(d, eps=1e-12)]
                            + [nn.TransformerEncoderLayer(d, 12, ff, activation="gelu",
                                                          layer_norm_eps=1e-12)
                               for _ in range(layers)])
        ours = sum(sum(p.numel() for p in node.layer.torch_module().parameters())
                   for node in r.graph.nodes)
    assert sum(p.numel() for p in ref.parameters()) == ours == 108_891_648


def test_lstm_lm_against_torch():
    r = spec("lstm_lm")
    assert r.totals.params == 10000 * 650 + rnn_params(4, 650, 650, 2) + 650 * 10000 + 10000 \
        == 19_780_400
    assert r.totals.macs == rnn_macs(1, 35, 4, 650, 650, 2) + 35 * 650 * 10000 == 464_100_000
    assert r.outputs == {"decoder": (1, 35, 10000), "rnn:h_n": (2, 1, 650),
                         "rnn:c_n": (2, 1, 650)}
    torch = pytest.importorskip("torch")
    nn = torch.nn
    with torch.device("meta"):  # examples/word_language_model RNNModel("LSTM", 10000, 650, 650, 2)
        ref = nn.ModuleList([nn.Embedding(10000, 650), nn.LSTM(650, 650, 2, dropout=0.5),
                             nn.Linear(650, 10000)])
    assert sum(p.numel() for p in ref.parameters()) == 19_780_400


@pytest.mark.parametrize("name", ["gpt2", "bert_base", "lstm_lm", "llama2_7b"])
def test_spec_header_and_expect(name):
    text = (SPECS / f"{name}.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=../netcalc.schema.json\n")
    r = spec(name)
    expect = netcalc.load(SPECS / f"{name}.yaml").expect
    assert expect["params"] == r.totals.params
    assert expect["macs"] == r.totals.macs


# ------------------------------------------------------------------ report section
def test_sequence_section_gpt2():
    r = spec("gpt2", batch=2)
    s = sequence_section(r)
    d, layers, length, v = 768, 12, 1024, 50257
    assert s["n_ctx"] == length and s["tokens"] == 2 * length
    assert s["macs_per_token"] == r.totals.macs // (2 * length)
    assert s["embedding_params"] == v * d + 1024 * d
    n = r.totals.params - s["embedding_params"]
    assert s["non_embedding_params"] == n
    # Kaplan et al. 2020: 2N + 2 n_layer n_ctx d_model
    assert s["kaplan_flops_per_token"] == 2 * n + 2 * layers * length * d
    assert s["d_model"] == d and s["attention_layers"] == layers
    assert s["kaplan_ratio"] == pytest.approx(s["kaplan_flops_per_token"]
                                              / (2 * s["macs_per_token"]))
    # KV cache: 12 layers * (k + v) * 768 * 4 bytes, per token of one sequence
    assert s["kv_cache_bytes_per_token"] == layers * 2 * d * 4 == kv_cache_bytes_per_token(r)
    assert s["kv_cache_bytes"] == s["kv_cache_bytes_per_token"] * 2 * length
    attn = 2 * 12 * 2 * 64  # batch x heads x (E + Ev)
    saved = layers * attn * (length * length - causal_kept(length, length))
    assert s["causal_macs"] == r.totals.macs - saved


def test_sequence_section_llama_kv_cache_fp16():
    r = spec("llama2_7b", dtype="float16")
    s = sequence_section(r)
    # 32 layers * 2 (k, v) * 32 heads * 128 * 2 bytes = 512 KiB per token
    assert s["kv_cache_bytes_per_token"] == 32 * 2 * 4096 * 2 == 524_288
    assert s["weight_bytes"] == 6_738_415_616 * 2


def test_sequence_section_only_for_token_models():
    assert sequence_section(analyze_text("input: [3, 8, 8]\nlayers: [ReLU]")) is None
    s = sequence_section(spec("bert_base"))
    assert "kv_cache_bytes_per_token" not in s  # an encoder: no causal attention
    assert s["kaplan_flops_per_token"] == 2 * s["non_embedding_params"] + 2 * 12 * 512 * 768
    s = sequence_section(spec("lstm_lm"))
    assert s["attention_layers"] == 0 and s["macs_per_token"] == 464_100_000 // 35


def test_gqa_kv_cache_counts_kv_heads():
    r = analyze_text("""
inputs: {tokens: {shape: [16], dtype: int64}}
layers:
  - {name: emb, Embedding: {num_embeddings: 100, embedding_dim: 64}}
  - {name: q, Linear: 64}
  - {name: qh, Unflatten: {dim: 2, unflattened_size: [8, 8]}}
  - {name: qt, Permute: [0, 2, 1, 3]}
  - {name: k, Linear: 16, from: emb}
  - {name: kh, Unflatten: {dim: 2, unflattened_size: [2, 8]}}
  - {name: kt, Permute: [0, 2, 1, 3]}
  - {name: attn, ScaledDotProductAttention: {is_causal: true, enable_gqa: true},
     from: [qt, kt, kt]}
""")
    assert kv_cache_bytes_per_token(r) == 2 * 2 * 8 * 4  # (k + v) * 2 kv heads * 8 * fp32
    assert kv_cache_bytes_per_token(r, "bfloat16") == 2 * 2 * 8 * 2


@pytest.mark.torch
@pytest.mark.parametrize("name, length", [("lstm_lm", 35), ("gpt2", 16), ("bert_base", 16)])
def test_spec_built_in_torch_matches(name, length):
    """The whole spec built by netcalc.torch: params, output shapes and MACs (torch's
    FLOP counter = 2 x MACs, math attention, no oneDNN RNN kernel) equal the report."""
    torch = pytest.importorskip("torch")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from netcalc.torch.build import build_module, example_inputs

    path = SPECS / f"{name}.yaml"
    shapes = {n: (length,) for n in netcalc.load(path).inputs}
    r = netcalc.analyze(path, batch=2, input_shapes=shapes)
    model = build_module(path, input_shapes=shapes).eval()
    xs = example_inputs(path, batch=2, input_shapes=shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.backends.mkldnn.flags(enabled=False), sdpa_kernel(SDPBackend.MATH), \
                FlopCounterMode(display=False) as counter:
            out = model(*xs)  # grad enabled: no fused fast path hidden from the counter
    outs = out if isinstance(out, tuple) else (out,)
    assert sum(p.numel() for p in model.parameters()) == r.totals.params
    assert [tuple(o.shape) for o in outs] == list(r.outputs.values())
    assert counter.get_total_flops() == 2 * r.totals.macs


@pytest.mark.torch
def test_llama2_7b_builds_on_meta():
    pytest.importorskip("torch")
    from netcalc.torch.build import build_module

    model = build_module(SPECS / "llama2_7b.yaml", device="meta")
    assert sum(p.numel() for p in model.parameters()) == 6_738_415_616


# Grouped-query attention is written from primitives, as Llama-style checkpoints hold it
# (q_proj/k_proj/v_proj/o_proj; nn.MultiheadAttention has no kv heads): narrower k and v
# projections and ScaledDotProductAttention with enable_gqa. Llama-3-8B (Meta's config:
# 32 layers, d 4096, 32 heads of 128, 8 kv heads, ffn 14336, vocab 128256, untied head).
LLAMA3_8B = """
name: Llama-3-8B
inputs: {tokens: {shape: [64], dtype: int64}}
blocks:
  Decoder:
    args: {d: 4096, heads: 32, kv_heads: 8, ffn: 14336}
    layers:
      - {name: input_layernorm, RMSNorm: {eps: 1.0e-5}}
      - {name: q_proj, Linear: {out_features: $d, bias: false}}
      - {name: q_heads, Unflatten: {dim: 2, unflattened_size: [$heads, -1]}}
      - {name: q_t, Permute: [0, 2, 1, 3]}
      - {name: k_proj, Linear: {out_features: '${kv_heads * 128}', bias: false},
         from: input_layernorm}
      - {name: k_heads, Unflatten: {dim: 2, unflattened_size: [$kv_heads, -1]}}
      - {name: k_t, Permute: [0, 2, 1, 3]}
      - {name: v_proj, Linear: {out_features: '${kv_heads * 128}', bias: false},
         from: input_layernorm}
      - {name: v_heads, Unflatten: {dim: 2, unflattened_size: [$kv_heads, -1]}}
      - {name: v_t, Permute: [0, 2, 1, 3]}
      - {name: attn, ScaledDotProductAttention: {is_causal: true, enable_gqa: true},
         from: [q_t, k_t, v_t]}
      - {name: attn_t, Permute: [0, 2, 1, 3]}
      - {name: merge_heads, Reshape: [-1, $d]}
      - {name: o_proj, Linear: {out_features: $d, bias: false}}
      - {name: add_1, Add: ~, from: [o_proj, input]}
      - {name: post_attention_layernorm, RMSNorm: {eps: 1.0e-5}}
      - {name: gate_proj, Linear: {out_features: $ffn, bias: false}}
      - {name: act, SiLU: ~}
      - {name: up_proj, Linear: {out_features: $ffn, bias: false},
         from: post_attention_layernorm}
      - {name: swiglu, Mul: ~, from: [act, up_proj]}
      - {name: down_proj, Linear: {out_features: $d, bias: false}}
      - {name: add_2, Add: ~, from: [down_proj, add_1]}
layers:
  - {name: embed_tokens, Embedding: {num_embeddings: 128256, embedding_dim: 4096}}
  - {name: blocks, Decoder: ~, repeat: 32}
  - {name: norm, RMSNorm: {eps: 1.0e-5}}
  - {name: lm_head, Linear: {out_features: 128256, bias: false}}
"""


def test_gqa_llama3_8b_from_primitives():
    r = analyze_text(LLAMA3_8B, dtype="bfloat16")
    assert r.totals.params == 8_030_261_248  # Meta's published count
    d, kv, ffn, vocab, length = 4096, 8 * 128, 14336, 128256, 64
    linears = 2 * d * d + 2 * d * kv + 3 * d * ffn  # q, o; k, v; gate, up, down
    attention = 32 * length * length * (128 + 128)  # all 32 query heads, full L x L
    assert r.totals.macs == 32 * (length * linears + attention) + length * d * vocab
    s = sequence_section(r)
    # 32 layers * (k + v) * 8 kv heads * 128 * 2 bytes: a quarter of 32 full heads
    assert s["kv_cache_bytes_per_token"] == 32 * 2 * 8 * 128 * 2 == 131_072
    assert s["kv_cache_bytes"] == 131_072 * length
    assert s["d_model"] == d  # Kaplan's d_attn: query heads x head dim


@pytest.mark.torch
def test_gqa_llama3_8b_builds_on_meta():
    pytest.importorskip("torch")
    from netcalc.torch.build import build_module

    model = build_module(netcalc.parse(LLAMA3_8B, "t.yaml"), device="meta")
    assert sum(p.numel() for p in model.parameters()) == 8_030_261_248
    assert tuple(model.get_submodule("blocks.0.k_proj").weight.shape) == (1024, 4096)


@pytest.mark.parametrize("length, keys, window", [(6, 6, 3), (10, 6, 4), (5, 9, 2), (4, 4, 9),
                                                  (7, 7, 1)])
def test_window_kept_counts_the_band(length, keys, window):
    """Query i sees keys i-window < j <= i (and j < S): counted one by one."""
    band = sum(1 for i in range(length) for j in range(keys) if i - window < j <= i)
    assert window_kept(length, keys, window) == band


def test_sliding_window_macs_and_kv_cache():
    text = """
inputs: {tokens: {shape: [16], dtype: int64}}
layers:
  - {name: emb, Embedding: {num_embeddings: 100, embedding_dim: 32}}
  - {name: q, Linear: 32}
  - {name: qh, Unflatten: {dim: 2, unflattened_size: [4, 8]}}
  - {name: qt, Permute: [0, 2, 1, 3]}
  - {name: k, Linear: 16, from: emb}
  - {name: kh, Unflatten: {dim: 2, unflattened_size: [2, 8]}}
  - {name: kt, Permute: [0, 2, 1, 3]}
  - {name: local, ScaledDotProductAttention: {is_causal: true, enable_gqa: true, window: 4},
     from: [qt, kt, kt]}
  - {name: full, ScaledDotProductAttention: {is_causal: true, enable_gqa: true},
     from: [qt, kt, kt]}
"""
    r = analyze_text(text, batch=2)
    local, full = (x for x in r.layers if x.name in ("local", "full"))
    b = 2 * 4  # batch x query heads
    assert local.macs == full.macs == b * 16 * 16 * 16  # the full L x L, as torch counts
    # rows 0..3 keep 1..4 keys, rows 4..15 keep 4: 10 + 48
    assert local.extra == {"causal_macs": b * 136 * 16, "window_macs": b * 58 * 16}
    s = sequence_section(r)
    assert s["window_macs"] == r.totals.macs - b * (256 - 58) * 16
    assert s["causal_macs"] == r.totals.macs - 2 * b * (256 - 136) * 16
    # per token: both layers' k and v (2 kv heads of 8), unchanged by the window
    per_layer = 2 * 2 * 8 * 4
    assert s["kv_cache_bytes_per_token"] == 2 * per_layer
    # for the sequence: the window layer holds 4 of the 16 tokens, per sample
    assert s["kv_cache_bytes"] == 2 * per_layer * (16 + 4)
