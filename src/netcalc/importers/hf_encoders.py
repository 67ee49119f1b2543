"""Encoder and encoder–decoder families: BERT (``BertModel`` with its pooler).

BERT's layer is post-norm: ``LayerNorm(x + dropout(dense(attention)))`` after the
self-attention and after the MLP, as ``BertSelfOutput`` and ``BertOutput`` compute.
"""

from __future__ import annotations

from ..errors import SpecError
from .hf_decoders import SeqTooLong, _dropout, learned_positions
from .hfconfig import HFConfig
from .hfmapped import ACTIVATIONS, Mapped, activation, check_heads, heads, merge_heads
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
    positions = learned_positions(cfg, "max_position_embeddings", 512, seq_len)
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


# ---------------------------------------------------------------------------- Whisper
def whisper(cfg: HFConfig, model_type: str, seq_len: int | None, decoder_len: int | None) -> Mapped:
    """WhisperForConditionalGeneration, as specs/whisper_tiny.yaml writes it: a conv stem
    (``model.encoder.conv1``/``conv2``, GELU) halving the mel frames, the encoder's whole
    position table added, pre-norm layers (q and v projections with biases, k without),
    the decoder's causal self-attention and cross-attention over the encoder output,
    ``proj_out`` tied to ``model.decoder.embed_tokens``. The encoder reads
    ``2 * max_source_positions`` mel frames, as transformers requires (so ``seq_len`` must
    be None); ``decoder_len`` defaults to ``max_target_positions``."""
    d = cfg.int("d_model")
    enc_layers, dec_layers = cfg.int("encoder_layers"), cfg.int("decoder_layers")
    enc_heads = cfg.int("encoder_attention_heads")
    dec_heads = cfg.int("decoder_attention_heads")
    enc_hd = check_heads(cfg, d, enc_heads, "encoder_attention_heads")
    dec_hd = check_heads(cfg, d, dec_heads, "decoder_attention_heads")
    enc_ffn, dec_ffn = cfg.int("encoder_ffn_dim"), cfg.int("decoder_ffn_dim")
    mels = cfg.int("num_mel_bins", 80)
    source = cfg.int("max_source_positions", 1500)
    target = cfg.int("max_target_positions", 448)
    if seq_len is not None:
        raise SpecError(f"Whisper's encoder reads 2 x max_source_positions = {2 * source} "
                        "mel frames; give the decoder's length with --decoder-seq-len",
                        file="--seq-len")
    seq_len = target if decoder_len is None else decoder_len
    if seq_len > target:
        raise SeqTooLong(target, "--decoder-seq-len")
    vocab = cfg.int("vocab_size")
    tie = cfg.bool("tie_word_embeddings", True)
    p, attn_p, act_p = (cfg.prob(k, 0.0) for k in ("dropout", "attention_dropout",
                                                   "activation_dropout"))
    act = activation(cfg, "activation_function", "gelu", "activation_fn")

    def attention(count: int, hd: int, causal: bool) -> list[str]:
        sdpa: dict = {"is_causal": True} if causal else {}
        if attn_p > 0:
            sdpa["dropout_p"] = attn_p
        return [entry("q_proj", "Linear", d), *heads("q", count, hd),
                entry("k_proj", "Linear", {"out_features": d, "bias": False}, src="kv"),
                *heads("k", count, hd),
                entry("v_proj", "Linear", d, src="kv"), *heads("v", count, hd),
                entry("attn", "ScaledDotProductAttention", sdpa or None,
                      src=["q_t", "k_t", "v_t"]),
                *merge_heads(d), entry("out_proj", "Linear", d), *_dropout("dropout", p)]

    def mlp(ffn: int, after: str, n: int) -> list[str]:
        return [entry("final_layer_norm", "LayerNorm", None), entry("fc1", "Linear", ffn), act,
                *_dropout("activation_dropout", act_p), entry("fc2", "Linear", d),
                *_dropout("mlp_dropout", p),
                entry(f"residual_{n}", "Add", None, src=["mlp_dropout" if p > 0 else "fc2", after])]

    encoder_layer = [entry("self_attn_layer_norm", "LayerNorm", None),
                     entry("self_attn", "WhisperEncoderAttention", None,
                           src=["self_attn_layer_norm", "self_attn_layer_norm"]),
                     entry("residual_1", "Add", None, src=["self_attn", "input"]),
                     *mlp(enc_ffn, "residual_1", 2)]
    decoder_layer = [entry("self_attn_layer_norm", "LayerNorm", None),
                     entry("self_attn", "WhisperDecoderSelfAttention", None,
                           src=["self_attn_layer_norm", "self_attn_layer_norm"]),
                     entry("residual_1", "Add", None, src=["self_attn", "input"]),
                     entry("encoder_attn_layer_norm", "LayerNorm", None),
                     entry("encoder_attn", "WhisperDecoderCrossAttention", None,
                           src=["encoder_attn_layer_norm", "encoder_hidden_states"]),
                     entry("residual_2", "Add", None, src=["encoder_attn", "residual_1"]),
                     *mlp(dec_ffn, "residual_2", 3)]
    encoder = [entry("conv1", "Conv1d", {"out_channels": d, "kernel_size": 3, "padding": 1}),
               entry("gelu_1", "GELU", None),
               entry("conv2", "Conv1d", {"out_channels": d, "kernel_size": 3, "stride": 2,
                                         "padding": 1}),
               entry("gelu_2", "GELU", None),
               entry("frames", "Permute", [0, 2, 1]),
               entry("positions", "Constant", {"shape": [source], "dtype": "int64"}),
               entry("embed_positions", "Embedding", {"num_embeddings": source, "embedding_dim": d}),
               entry("embed", "Add", None, src=["frames", "embed_positions"]),
               *_dropout("dropout", p),
               entry("layers", "WhisperEncoderLayer", None, repeat=enc_layers),
               entry("layer_norm", "LayerNorm", None)]
    decoder = [entry("embed_tokens", "Embedding", {"num_embeddings": vocab, "embedding_dim": d}),
               entry("positions", "Constant", {"shape": [seq_len], "dtype": "int64"}),
               entry("embed_positions", "Embedding", {"num_embeddings": target, "embedding_dim": d}),
               entry("embed", "Add", None, src=["embed_tokens", "embed_positions"]),
               *_dropout("dropout", p),
               entry("layers", "WhisperDecoderLayer", None, repeat=dec_layers,
                     src=["dropout" if p > 0 else "embed", "encoder_hidden_states"]),
               entry("layer_norm", "LayerNorm", None)]
    inputs = ["input_features", "decoder_input_ids"]
    blocks = (block("WhisperEncoderAttention", attention(enc_heads, enc_hd, False),
                    inputs=["input", "kv"])
              + block("WhisperDecoderSelfAttention", attention(dec_heads, dec_hd, True),
                      inputs=["input", "kv"])
              + block("WhisperDecoderCrossAttention", attention(dec_heads, dec_hd, False),
                      inputs=["input", "kv"])
              + block("WhisperEncoderLayer", encoder_layer)
              + block("WhisperDecoderLayer", decoder_layer, inputs=["input", "encoder_hidden_states"])
              + block("WhisperEncoder", encoder)
              + block("WhisperDecoder", decoder, inputs=["input", "encoder_hidden_states"])
              + block("WhisperModel", [entry("encoder", "WhisperEncoder", None, src="input_features"),
                                       entry("decoder", "WhisperDecoder", None,
                                             src=["decoder_input_ids", "encoder"])],
                      inputs=inputs))
    layers = [entry("model", "WhisperModel", None, src=inputs),
              entry("proj_out", "Linear", {"out_features": vocab, "bias": False},
                    tie="model.decoder.embed_tokens" if tie else None)]
    notes = [f"input_features: {mels} log-mel bins x {2 * source} frames (the conv stem halves "
             f"them to the encoder's {source} positions); --seq-len is the decoder's length.",
             "Position ids are computed in forward (Constant layers, counted nowhere), so the "
             "tables are Embeddings with transformers' keys."]
    return Mapped("WhisperForConditionalGeneration",
                  {"input_features": ([mels, 2 * source], "float32"),
                   "decoder_input_ids": ([seq_len], "int64")},
                  blocks, layers, notes=notes, tokens="decoder_input_ids",
                  lengths=f"--decoder-seq-len {seq_len}" + (
                      " (by default max_target_positions)" if decoder_len is None else ""))



# ---------------------------------------------------------------------------- T5
#: feed_forward_proj -> (gated, activation as transformers' ACT2FN names it)
T5_FF = {"relu": (False, "relu"), "gelu": (False, "gelu"), "gated-gelu": (True, "gelu_new"),
         "gated-relu": (True, "relu"), "gated-silu": (True, "silu")}


def t5(cfg: HFConfig, model_type: str, seq_len: int | None, decoder_len: int | None) -> Mapped:
    """T5ForConditionalGeneration, as specs/t5_small.yaml writes it: ``encoder``/``decoder``
    stacks whose ``block.0`` holds the relative position bias table (its bucket indices a
    Constant made in forward) and whose later blocks reuse block 0's bias; ``layer.0``
    self-attention, (decoder) ``layer.1`` cross-attention, then the feed-forward
    (``DenseReluDense.wi``/``wo``, or ``wi_0``/``wi_1`` when gated); RMSNorm, no 1/sqrt(d)
    scale. ``encoder.embed_tokens`` holds the token table that ``decoder.embed_tokens``
    and ``lm_head`` share (transformers 5 ties the head even when the config says
    ``tie_word_embeddings: false``, which it reads as "no output scale", T5 v1.1); transformers' alias ``shared.weight`` is the one key
    the spec does not repeat. Lengths: ``seq_len`` (default 512) and ``decoder_len``
    (default 128) tokens."""
    d = cfg.int("d_model")
    d_kv, d_ff = cfg.int("d_kv"), cfg.int("d_ff")
    n_enc = cfg.int("num_layers")
    n_dec = cfg.int("num_decoder_layers", n_enc)
    n_heads = cfg.int("num_heads")
    buckets = cfg.int("relative_attention_num_buckets", 32)
    vocab = cfg.int("vocab_size")
    eps = cfg.float("layer_norm_epsilon", 1e-6)
    p = cfg.prob("dropout_rate", 0.1)
    gated, act_name = cfg.choice("feed_forward_proj", "relu", T5_FF)
    # transformers 5 ties lm_head always and reads tie_word_embeddings: false (T5 v1.1)
    # as "do not scale the decoder output" (T5Config.scale_decoder_outputs)
    scale = cfg.bool("tie_word_embeddings", True)
    length = 512 if seq_len is None else seq_len
    target = 128 if decoder_len is None else decoder_len
    inner = n_heads * d_kv
    norm = entry("layer_norm", "RMSNorm", {"eps": eps})
    sdpa = {"scale": 1.0, "is_causal": "$causal", **({"dropout_p": p} if p > 0 else {})}
    core = [entry("q", "Linear", {"out_features": inner, "bias": False}, src="input"),
            *heads("q", n_heads, d_kv),
            entry("k", "Linear", {"out_features": inner, "bias": False}, src="kv"),
            *heads("k", n_heads, d_kv),
            entry("v", "Linear", {"out_features": inner, "bias": False}, src="kv"),
            *heads("v", n_heads, d_kv),
            entry("attention", "ScaledDotProductAttention", sdpa,
                  src=["q_t", "k_t", "v_t", "position_bias"]),
            *merge_heads(inner), entry("o", "Linear", {"out_features": d, "bias": False})]
    biased = [entry("relative_attention_bias", "Embedding",
                    {"num_embeddings": buckets, "embedding_dim": n_heads}, src="buckets"),
              # (L, S, H) -> (1, H, L, S): a 4-d bias keeps torch's fused CPU kernel (a
              # 3-d one takes the math path), as specs/t5_small.yaml writes it
              entry("bias_heads", "Unflatten", {"dim": 2, "unflattened_size": [1, n_heads]}),
              entry("position_bias", "Permute", [2, 3, 0, 1]), *core]

    def residual(name: str, type_: str, args: dict | None, src: list[str] | None = None) -> list[str]:
        """T5Layer*: x + dropout(module(layer_norm(x)))."""
        return [norm, entry(name, type_, args, src=src), *_dropout("dropout", p),
                entry("residual", "Add", None, src=["dropout" if p > 0 else name, "input"])]

    act = entry("act", *ACTIVATIONS[act_name])
    if gated:
        dense = [entry("wi_0", "Linear", {"out_features": d_ff, "bias": False}), act,
                 entry("wi_1", "Linear", {"out_features": d_ff, "bias": False}, src="input"),
                 entry("gated", "Mul", None, src=["act", "wi_1"])]
    else:
        dense = [entry("wi", "Linear", {"out_features": d_ff, "bias": False}), act]
    dense += [*_dropout("dropout", p), entry("wo", "Linear", {"out_features": d, "bias": False})]
    blocks = (
        block("T5Attention", core, inputs=["input", "kv", "position_bias"], args={"causal": False})
        + block("T5BiasedAttention", biased, inputs=["input", "kv", "buckets"],
                args={"causal": False}, note="block 0's T5Attention: has_relative_attention_bias")
        + block("T5LayerSelfAttention",
                residual("SelfAttention", "$attention", {"causal": "$causal"},
                         ["layer_norm", "layer_norm", "position_bias"]),
                inputs=["input", "position_bias"], args={"attention": "T5Attention",
                                                         "causal": False})
        + block("T5LayerCrossAttention",
                residual("EncDecAttention", "T5Attention", None,
                         ["layer_norm", "encoder_hidden_states", "position_bias"]),
                inputs=["input", "encoder_hidden_states", "position_bias"])
        + block("T5LayerFF", residual("DenseReluDense", "T5DenseActDense", None))
        + block("T5DenseActDense", dense)
        + block("T5EncoderLayers", [
            entry(None, "T5LayerSelfAttention", {"attention": "$attention"},
                  src=["input", "position_bias"]), "T5LayerFF"],
            inputs=["input", "position_bias"], args={"attention": "T5Attention"}, numbered=True)
        + block("T5DecoderLayers", [
            entry(None, "T5LayerSelfAttention", {"attention": "$attention", "causal": True},
                  src=["input", "position_bias"]),
            entry(None, "T5LayerCrossAttention", None,
                  src=["0", "encoder_hidden_states", "cross_bias"]), "T5LayerFF"],
            inputs=["input", "position_bias", "encoder_hidden_states", "cross_bias"],
            args={"attention": "T5Attention"}, numbered=True)
        + block("T5EncoderBlock", [entry("layer", "T5EncoderLayers", {"attention": "$attention"},
                                         src=["input", "position_bias"])],
                inputs=["input", "position_bias"], args={"attention": "T5Attention"})
        + block("T5DecoderBlock", [entry("layer", "T5DecoderLayers", {"attention": "$attention"},
                                         src=["input", "position_bias", "encoder_hidden_states",
                                              "cross_bias"])],
                inputs=["input", "position_bias", "encoder_hidden_states", "cross_bias"],
                args={"attention": "T5Attention"})
        + block("T5EncoderBlocks", [
            entry(None, "T5EncoderBlock", {"attention": "T5BiasedAttention"},
                  src=["input", "buckets"]),
            *([entry(None, "T5EncoderBlock", None, repeat=n_enc - 1,
                     src=["0", "0.layer.0.SelfAttention.position_bias"])] if n_enc > 1 else [])],
            inputs=["input", "buckets"], numbered=True)
        + block("T5DecoderBlocks", [
            entry(None, "T5DecoderBlock", {"attention": "T5BiasedAttention"},
                  src=["input", "buckets", "encoder_hidden_states", "cross_bias"]),
            *([entry(None, "T5DecoderBlock", None, repeat=n_dec - 1,
                     src=["0", "0.layer.0.SelfAttention.position_bias", "encoder_hidden_states",
                          "cross_bias"])] if n_dec > 1 else [])],
            inputs=["input", "buckets", "encoder_hidden_states", "cross_bias"], numbered=True)
        + block("T5Encoder", [
            entry("embed_tokens", "Embedding", {"num_embeddings": vocab, "embedding_dim": d}),
            *_dropout("dropout", p),
            entry("relative_position_bucket", "Constant", {"shape": [length, length],
                                                           "dtype": "int64"}),
            entry("block", "T5EncoderBlocks", None,
                  src=["dropout" if p > 0 else "embed_tokens", "relative_position_bucket"]),
            entry("final_layer_norm", "RMSNorm", {"eps": eps}), *_dropout("final_dropout", p)])
        + block("T5Decoder", [
            entry("embed_tokens", "Embedding", {"num_embeddings": vocab, "embedding_dim": d},
                  tie="encoder.embed_tokens"),
            *_dropout("dropout", p),
            entry("relative_position_bucket", "Constant", {"shape": [target, target],
                                                           "dtype": "int64"}),
            entry("encoder_decoder_position_bias", "Constant",
                  {"shape": [1, n_heads, target, length]}, note="transformers' zeros"),
            entry("block", "T5DecoderBlocks", None,
                  src=["dropout" if p > 0 else "embed_tokens", "relative_position_bucket",
                       "encoder_hidden_states", "encoder_decoder_position_bias"]),
            entry("final_layer_norm", "RMSNorm", {"eps": eps}), *_dropout("final_dropout", p)],
            inputs=["input", "encoder_hidden_states"]))
    layers = [entry("encoder", "T5Encoder", None, src="input_ids"),
              entry("decoder", "T5Decoder", None, src=["decoder_input_ids", "encoder"])]
    if scale:  # T5 (not v1.1) scales the decoder output by d_model^-0.5 before the head
        layers.append(entry("scale_decoder_outputs", "Scale", d ** -0.5))
    layers.append(entry("lm_head", "Linear", {"out_features": vocab, "bias": False},
                        tie="encoder.embed_tokens"))
    notes = ["The bucket indices and the cross-attention's zero bias are Constants (made in "
             "forward, counted nowhere); their values are not transformers' buckets, which "
             "changes no count. transformers' alias shared.weight is the one state_dict key "
             "not repeated here (encoder.embed_tokens holds the table)."]
    return Mapped("T5ForConditionalGeneration",
                  {"input_ids": ([length], "int64"), "decoder_input_ids": ([target], "int64")},
                  blocks, layers, notes=notes, tokens="decoder_input_ids",
                  lengths=f"--seq-len {length}, --decoder-seq-len {target}"
                          + (" (defaults 512 and 128)" if seq_len is None or decoder_len is None
                             else ""))

