"""Encoder and encoder–decoder families: BERT (``BertModel`` with its pooler).

BERT's layer is post-norm: ``LayerNorm(x + dropout(dense(attention)))`` after the
self-attention and after the MLP, as ``BertSelfOutput`` and ``BertOutput`` compute.
"""

from __future__ import annotations

from .hf_decoders import SeqTooLong, _dropout
from .hfconfig import HFConfig
from .hfmapped import Mapped, activation, check_heads, heads, merge_heads
from .yamltext import block, entry

BERT_INPUTS = ["input_ids", "token_type_ids", "position_ids"]


def bert(cfg: HFConfig, model_type: str, seq_len: int) -> Mapped:
    """BertModel: ``embeddings`` (word, position, token type, LayerNorm), ``encoder.layer.N``
    (``attention.self.query``/``key``/``value``, ``attention.output.dense``/``LayerNorm``,
    ``intermediate.dense``, ``output.dense``/``LayerNorm``), ``pooler.dense`` + tanh on
    the first token. Outputs: the last hidden state and the pooled output."""
    d = cfg.int("hidden_size")
    n_layers = cfg.int("num_hidden_layers")
    n_heads = cfg.int("num_attention_heads")
    hd = check_heads(cfg, d, n_heads)
    ffn = cfg.int("intermediate_size")
    vocab = cfg.int("vocab_size")
    positions = cfg.int("max_position_embeddings", 512)
    if seq_len > positions:
        raise SeqTooLong(positions)
    types = cfg.int("type_vocab_size", 2)
    eps = cfg.float("layer_norm_eps", 1e-12)
    pad = cfg.int("pad_token_id", 0, low=0) if cfg.has("pad_token_id") else 0
    if pad >= vocab:
        raise cfg.fail("pad_token_id", f"{pad} is not below vocab_size {vocab}")
    p = cfg.prob("hidden_dropout_prob", 0.1)
    attn_p = cfg.prob("attention_probs_dropout_prob", 0.1)
    if cfg.str("position_embedding_type", "absolute") != "absolute":
        raise cfg.fail("position_embedding_type", "only absolute positions are supported")
    ln = entry("LayerNorm", "LayerNorm", {"eps": eps})
    embeddings = [
        entry("word_embeddings", "Embedding",
              {"num_embeddings": vocab, "embedding_dim": d, "padding_idx": pad}, src="input_ids"),
        entry("position_embeddings", "Embedding", {"num_embeddings": positions, "embedding_dim": d},
              src="position_ids"),
        entry("token_type_embeddings", "Embedding", {"num_embeddings": types, "embedding_dim": d},
              src="token_type_ids"),
        entry("embeddings", "Add", None,
              src=["word_embeddings", "token_type_embeddings", "position_embeddings"]),
        ln, *_dropout("dropout", p)]
    self_attention = [entry("query", "Linear", d), *heads("q", n_heads, hd),
                      entry("key", "Linear", d, src="input"), *heads("k", n_heads, hd),
                      entry("value", "Linear", d, src="input"), *heads("v", n_heads, hd),
                      entry("attn", "ScaledDotProductAttention",
                            {"dropout_p": attn_p} if attn_p > 0 else None,
                            src=["q_t", "k_t", "v_t"]),
                      *merge_heads(d)]
    last = "dropout" if p > 0 else "dense"
    output = [entry("dense", "Linear", d), *_dropout("dropout", p),
              entry("residual", "Add", None, src=[last, "input_tensor"]), ln]
    attention = [entry("self", "BertSelfAttention", None),
                 entry("output", "BertSelfOutput", None, src=["self", "input"])]
    layer = [entry("attention", "BertAttention", None),
             entry("intermediate", "BertIntermediate", None),
             entry("output", "BertOutput", None, src=["intermediate", "attention"])]
    blocks = (block("BertEmbeddings", embeddings, inputs=BERT_INPUTS)
              + block("BertSelfAttention", self_attention)
              + block("BertSelfOutput", output, inputs=["hidden_states", "input_tensor"])
              + block("BertAttention", attention)
              + block("BertIntermediate", [entry("dense", "Linear", ffn),
                                           activation(cfg, "hidden_act", "gelu",
                                                      "intermediate_act_fn")])
              + block("BertOutput", output, inputs=["hidden_states", "input_tensor"])
              + block("BertLayer", layer)
              + block("BertEncoder", [entry("layer", "BertLayer", None, repeat=n_layers)])
              + block("BertPooler", [entry("first_token", "Select", {"dim": 1, "index": 0}),
                                     entry("dense", "Linear", d),
                                     entry("activation", "Tanh", None)]))
    layers = [entry("embeddings", "BertEmbeddings", None, src=BERT_INPUTS),
              entry("encoder", "BertEncoder", None),
              entry("pooler", "BertPooler", None)]
    notes = ["position_ids holds 0, 1, ..., L-1; token_type_ids the segment ids (0 or 1).",
             "outputs: last_hidden_state (encoder) and pooler_output (pooler)."]
    return Mapped("BertModel", {n: ([seq_len], "int64") for n in BERT_INPUTS}, blocks, layers,
                  outputs=["encoder", "pooler"], notes=notes)
