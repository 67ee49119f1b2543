"""Decoder-only families: GPT-2, Llama, Mistral, Mixtral, Qwen2, Gemma, Phi, OPT.

Each writes the ``*ForCausalLM`` (GPT-2: ``GPT2LMHeadModel``) as transformers builds
it: one block definition per module class (attention, MLP, decoder layer, model), the
decoder layer used once with ``repeat: num_hidden_layers``, and the head tied to the
token embedding when ``tie_word_embeddings`` says so. Rotary embeddings are
``RotaryEmbedding`` layers on q and k (partial for Phi), grouped-query attention is
``ScaledDotProductAttention: {enable_gqa: true}`` over narrower k and v projections,
Mistral's sliding window is its ``window:``. Dropouts are written where the config
gives them a probability above 0 (they matter to ``--train``'s memory, not to counts).
"""

from __future__ import annotations

from .hfconfig import HFConfig
from .hfmapped import Mapped, activation, check_heads, heads, kv_heads, merge_heads
from .yamltext import block, entry

TOKENS = "input_ids"


def _dropout(name: str, p: float, src: str | None = None) -> list[str]:
    return [entry(name, "Dropout", p, src=src)] if p > 0 else []


def rope_theta(cfg: HFConfig, default: float) -> float:
    """``rope_theta``, top-level (published configs) or in ``rope_parameters``."""
    params = cfg.raw("rope_parameters") or cfg.raw("rope_scaling")
    if cfg.has("rope_theta") or not isinstance(params, dict) or "rope_theta" not in params:
        return cfg.float("rope_theta", default)
    theta = params["rope_theta"]
    if isinstance(theta, bool) or not isinstance(theta, (int, float)) or not theta > 0:
        raise cfg.fail("rope_parameters", "rope_theta: expected a positive number")
    return float(theta)


def _attention_core(cfg: HFConfig, *, n_heads: int, kv: int, hd: int, theta: float,
                    rotary_dim: int | None = None, window: int | None = None,
                    dropout: float = 0.0, qk_norm_eps: float | None = None) -> list[str]:
    """q/k/v (already projected as q_proj, k_proj, v_proj) through RoPE and SDPA."""
    rope = {"dim": rotary_dim, "base": theta} if rotary_dim is not None else {"base": theta}
    lines = []
    for p, count in (("q", n_heads), ("k", kv), ("v", kv)):
        lines.append(None)  # placeholder for the projection, filled by the caller
        lines += heads(p, count, hd)
        if qk_norm_eps is not None and p != "v":
            lines.append(entry(f"{p}_layernorm", "LayerNorm", {"eps": qk_norm_eps}))
        if p != "v":
            lines.append(entry(f"{p}_rot", "RotaryEmbedding", rope))
    sdpa: dict = {"is_causal": True}
    if kv != n_heads:
        sdpa["enable_gqa"] = True
    if window is not None:
        sdpa["window"] = window
    if dropout > 0:
        sdpa["dropout_p"] = dropout
    lines.append(entry("attn", "ScaledDotProductAttention", sdpa,
                       src=["q_rot", "k_rot", "v_t"]))
    lines += merge_heads(n_heads * hd)
    return lines


def _fill(lines: list, projections: list[str]) -> list[str]:
    it = iter(projections)
    return [next(it) if line is None else line for line in lines]


# ---------------------------------------------------------------------------- Llama family
LLAMA_LIKE = {
    # model_type: (class prefix, tie_word_embeddings default of its config class)
    "llama": ("Llama", False), "mistral": ("Mistral", False), "mixtral": ("Mixtral", False),
    "qwen2": ("Qwen2", False), "gemma": ("Gemma", True),
}


def llama_like(cfg: HFConfig, model_type: str, seq_len: int) -> Mapped:
    """Llama and the families that share its layout (``model.layers.N.self_attn.q_proj``,
    ``mlp.gate_proj``/``up_proj``/``down_proj``, RMSNorm, RoPE, untied or tied head)."""
    prefix, tie_default = LLAMA_LIKE[model_type]
    d = cfg.int("hidden_size")
    n_layers = cfg.int("num_hidden_layers")
    n_heads = cfg.int("num_attention_heads")
    kv = kv_heads(cfg, n_heads)
    hd = cfg.int("head_dim") if cfg.has("head_dim") else check_heads(cfg, d, n_heads)
    ffn = cfg.int("intermediate_size")
    vocab = cfg.int("vocab_size")
    eps = cfg.float("rms_norm_eps", 1e-6)
    theta = rope_theta(cfg, 10000.0)
    tie = cfg.bool("tie_word_embeddings", tie_default)
    qkv_bias = o_bias = mlp_bias = False
    if model_type == "llama":
        qkv_bias = o_bias = cfg.bool("attention_bias", False)
        mlp_bias = cfg.bool("mlp_bias", False)
    elif model_type == "qwen2":
        qkv_bias = True
    window = None
    if model_type in ("mistral", "mixtral") and cfg.has("sliding_window"):
        window = cfg.int("sliding_window")
    elif model_type == "qwen2" and cfg.bool("use_sliding_window", False):
        raise cfg.fail("use_sliding_window", "Qwen2 with sliding-window layers is not "
                                             "supported by the importer (its layers differ)")
    act_default = "gelu_pytorch_tanh" if model_type == "gemma" else "silu"
    if model_type == "gemma" and cfg.raw("hidden_act") == "gelu":
        cfg.data["hidden_act"] = "gelu_pytorch_tanh"  # transformers' GemmaConfig does the same
    attn_dropout = cfg.prob("attention_dropout", 0.0)

    def linear(name: str, width: int, bias: bool, src: str | None = None) -> str:
        return entry(name, "Linear", {"out_features": width, "bias": bias}, src=src)

    attention = _fill(
        _attention_core(cfg, n_heads=n_heads, kv=kv, hd=hd, theta=theta, window=window,
                        dropout=attn_dropout),
        [linear("q_proj", n_heads * hd, qkv_bias), linear("k_proj", kv * hd, qkv_bias, "input"),
         linear("v_proj", kv * hd, qkv_bias, "input")])
    attention.append(linear("o_proj", d, o_bias))
    mlp = [linear("gate_proj", ffn, mlp_bias), activation(cfg, "hidden_act", act_default),
           linear("up_proj", ffn, mlp_bias, "input"),
           entry("gated", "Mul", None, src=["act_fn", "up_proj"]),
           linear("down_proj", d, mlp_bias)]
    mlp_name, mlp_block = "mlp", f"{prefix}MLP"
    mlp_entry = entry("mlp", mlp_block, None)
    if model_type == "mixtral":  # the checkpoint's names: see moe_mlp
        mlp_name, mlp_block, mlp, mlp_entry = moe_mlp(cfg, d, ffn, act_default)
    blocks = block(f"{prefix}Attention", attention) + block(mlp_block, mlp)
    layer = [entry("input_layernorm", "RMSNorm", {"eps": eps}),
             entry("self_attn", f"{prefix}Attention", None),
             entry("attn_residual", "Add", None, src=["self_attn", "input"]),
             entry("post_attention_layernorm", "RMSNorm", {"eps": eps}),
             mlp_entry,
             entry("mlp_residual", "Add", None, src=[mlp_name, "attn_residual"])]
    blocks += block(f"{prefix}DecoderLayer", layer)
    model = [entry("embed_tokens", "Embedding", {"num_embeddings": vocab, "embedding_dim": d})]
    notes = []
    if model_type == "gemma":  # GemmaModel: hidden_states * sqrt(hidden_size)
        model.append(entry("normalizer", "Scale", d ** 0.5, note="Gemma: embeddings × √hidden_size"))
        notes.append(f"Gemma scales the embeddings by √{d} (a Scale layer) and its RMSNorm "
                     "multiplies by (1 + weight): the same parameters as RMSNorm.")
    model += [entry("layers", f"{prefix}DecoderLayer", None, repeat=n_layers),
              entry("norm", "RMSNorm", {"eps": eps})]
    blocks += block(f"{prefix}Model", model)
    layers = [entry("model", f"{prefix}Model", None),
              entry("lm_head", "Linear", {"out_features": vocab, "bias": False},
                    tie="model.embed_tokens" if tie else None)]
    if window is not None:
        notes.append(f"sliding_window {window}: ScaledDotProductAttention window: {window}.")
    return Mapped(f"{prefix}ForCausalLM", {TOKENS: ([seq_len], "int64")}, blocks, layers,
                  notes=notes)


def moe_mlp(cfg: HFConfig, d: int, ffn: int, act_default: str) -> tuple[str, str, list[str], str]:
    """Mixtral's sparse MLP as the checkpoints hold it: ``block_sparse_moe.gate`` (the
    router) and ``block_sparse_moe.experts.N.w1/w2/w3``. transformers 5 renames
    ``block_sparse_moe`` to ``mlp`` and fuses each layer's experts into
    ``experts.gate_up_proj``/``down_proj`` when it loads them (its conversion mapping);
    :mod:`netcalc.importers.hfverify` compares through that mapping."""
    n = cfg.int("num_local_experts", 8)
    k = cfg.int("num_experts_per_tok", 2)
    if k > n:
        raise cfg.fail("num_experts_per_tok", f"{k} is more than the {n} experts")
    expert = [entry("w1", "Linear", {"out_features": ffn, "bias": False}),
              activation(cfg, "hidden_act", act_default),
              entry("w3", "Linear", {"out_features": ffn, "bias": False}, src="input"),
              entry("gated", "Mul", None, src=["act_fn", "w3"]),
              entry("w2", "Linear", {"out_features": d, "bias": False})]
    moe = entry("block_sparse_moe", "MixtureOfExperts",
                {"num_experts": n, "top_k": k, "expert": "MixtralBlockSparseTop2MLP"})
    return "block_sparse_moe", "MixtralBlockSparseTop2MLP", expert, moe


# ---------------------------------------------------------------------------- Phi
def phi(cfg: HFConfig, model_type: str, seq_len: int) -> Mapped:
    """PhiForCausalLM (Phi-1, Phi-1.5, Phi-2): LayerNorm, attention and MLP in parallel
    from one norm (``x + attn(ln(x)) + mlp(ln(x))``), partial rotary, biases, untied head
    with a bias."""
    d = cfg.int("hidden_size")
    n_layers = cfg.int("num_hidden_layers")
    n_heads = cfg.int("num_attention_heads")
    kv = kv_heads(cfg, n_heads)
    hd = check_heads(cfg, d, n_heads)
    ffn = cfg.int("intermediate_size")
    vocab = cfg.int("vocab_size")
    eps = cfg.float("layer_norm_eps", 1e-5)
    theta = rope_theta(cfg, 10000.0)
    params = cfg.raw("rope_parameters")
    factor = cfg.float("partial_rotary_factor",
                       params.get("partial_rotary_factor", 0.5) if isinstance(params, dict)
                       else 0.5)
    rotary = int(hd * factor)
    if rotary < 2 or rotary % 2:
        raise cfg.fail("partial_rotary_factor", f"gives {rotary} rotated features of {hd}; "
                                                "RoPE needs an even number, at least 2")
    tie = cfg.bool("tie_word_embeddings", False)
    qk_norm = cfg.bool("qk_layernorm", False)

    def linear(name: str, width: int, src: str | None = None) -> str:
        return entry(name, "Linear", width, src=src)

    attention = _fill(
        _attention_core(cfg, n_heads=n_heads, kv=kv, hd=hd, theta=theta, rotary_dim=rotary,
                        dropout=cfg.prob("attention_dropout", 0.0),
                        qk_norm_eps=eps if qk_norm else None),
        [linear("q_proj", n_heads * hd), linear("k_proj", kv * hd, "input"),
         linear("v_proj", kv * hd, "input")])
    attention.append(linear("dense", d))
    mlp = [linear("fc1", ffn), activation(cfg, "hidden_act", "gelu_new", "activation_fn"),
           linear("fc2", d)]
    resid = cfg.prob("resid_pdrop", 0.0)
    layer = [entry("input_layernorm", "LayerNorm", {"eps": eps}),
             entry("self_attn", "PhiAttention", None),
             *_dropout("attn_dropout", resid),
             entry("mlp", "PhiMLP", None, src="input_layernorm"),
             *_dropout("resid_dropout", resid),
             entry("residual", "Add", None,
                   src=["attn_dropout" if resid > 0 else "self_attn",
                        "resid_dropout" if resid > 0 else "mlp", "input"])]
    model = [entry("embed_tokens", "Embedding", {"num_embeddings": vocab, "embedding_dim": d}),
             *_dropout("embed_dropout", cfg.prob("embd_pdrop", 0.0)),
             entry("layers", "PhiDecoderLayer", None, repeat=n_layers),
             entry("final_layernorm", "LayerNorm", {"eps": eps})]
    blocks = (block("PhiAttention", attention) + block("PhiMLP", mlp)
              + block("PhiDecoderLayer", layer) + block("PhiModel", model))
    layers = [entry("model", "PhiModel", None),
              entry("lm_head", "Linear", vocab, tie="model.embed_tokens" if tie else None)]
    notes = [f"partial rotary: {rotary} of the {hd} features of each head "
             f"(partial_rotary_factor {factor:g})."]
    return Mapped("PhiForCausalLM", {TOKENS: ([seq_len], "int64")}, blocks, layers, notes=notes)


# ---------------------------------------------------------------------------- GPT-2
def gpt2(cfg: HFConfig, model_type: str, seq_len: int) -> Mapped:
    """GPT2LMHeadModel: ``transformer.wte``/``wpe``, ``h.N`` with ``attn.c_attn`` (q, k
    and v in one projection, split in three), ``mlp.c_fc``/``c_proj``, ``ln_f``; the
    head tied to ``wte``. HF's Conv1D holds its weight transposed, (in, out): the
    spec's Linear has the same parameters as (out, in)."""
    d = cfg.int("n_embd")
    n_layers = cfg.int("n_layer")
    n_heads = cfg.int("n_head")
    hd = check_heads(cfg, d, n_heads, "n_head")
    inner = cfg.int("n_inner") if cfg.has("n_inner") else 4 * d
    vocab = cfg.int("vocab_size")
    positions = learned_positions(cfg, "n_positions", 1024, seq_len)
    eps = cfg.float("layer_norm_epsilon", 1e-5)
    tie = cfg.bool("tie_word_embeddings", True)
    attn_p, resid_p, embd_p = (cfg.prob(k, 0.1) for k in ("attn_pdrop", "resid_pdrop", "embd_pdrop"))
    attention = [entry("c_attn", "Linear", 3 * d),
                 entry("qkv", "Split", {"split_size_or_sections": d, "dim": 2})]
    for i, p in enumerate("qkv"):
        attention += heads(p, n_heads, hd, src=f"qkv:{i}")
    sdpa: dict = {"is_causal": True}
    if attn_p > 0:
        sdpa["dropout_p"] = attn_p
    attention.append(entry("attn", "ScaledDotProductAttention", sdpa, src=["q_t", "k_t", "v_t"]))
    attention += merge_heads(d)
    attention += [entry("c_proj", "Linear", d), *_dropout("resid_dropout", resid_p)]
    mlp = [entry("c_fc", "Linear", inner),
           activation(cfg, "activation_function", "gelu_new", "act"),
           entry("c_proj", "Linear", d), *_dropout("dropout", resid_p)]
    layer = [entry("ln_1", "LayerNorm", {"eps": eps}), entry("attn", "GPT2Attention", None),
             entry("attn_residual", "Add", None, src=["attn", "input"]),
             entry("ln_2", "LayerNorm", {"eps": eps}), entry("mlp", "GPT2MLP", None),
             entry("mlp_residual", "Add", None, src=["mlp", "attn_residual"])]
    model = [entry("wte", "Embedding", {"num_embeddings": vocab, "embedding_dim": d},
                   src=TOKENS),
             entry("wpe", "Embedding", {"num_embeddings": positions, "embedding_dim": d},
                   src="position_ids"),
             entry("embed", "Add", None, src=["wte", "wpe"]), *_dropout("drop", embd_p),
             entry("h", "GPT2Block", None, repeat=n_layers),
             entry("ln_f", "LayerNorm", {"eps": eps})]
    blocks = (block("GPT2Attention", attention) + block("GPT2MLP", mlp)
              + block("GPT2Block", layer)
              + block("GPT2Model", model, inputs=[TOKENS, "position_ids"]))
    layers = [entry("transformer", "GPT2Model", None, src=[TOKENS, "position_ids"]),
              entry("lm_head", "Linear", {"out_features": vocab, "bias": False},
                    tie="transformer.wte" if tie else None)]
    notes = ["position_ids holds 0, 1, ..., L-1 (transformers makes them inside forward).",
             "c_attn, c_proj, c_fc are HF Conv1D modules, weight stored (in, out): a Linear "
             "here, weight (out, in), the same parameters and MACs."]
    return Mapped("GPT2LMHeadModel", {TOKENS: ([seq_len], "int64"),
                                      "position_ids": ([seq_len], "int64")},
                  blocks, layers, notes=notes)


# ---------------------------------------------------------------------------- OPT
def opt(cfg: HFConfig, model_type: str, seq_len: int) -> Mapped:
    """OPTForCausalLM: ``model.decoder`` with learned positions offset by 2 (the table has
    ``max_position_embeddings + 2`` rows), optional ``project_in``/``project_out`` when
    ``word_embed_proj_dim`` differs from the hidden size, pre- or post-norm layers."""
    d = cfg.int("hidden_size")
    n_layers = cfg.int("num_hidden_layers")
    n_heads = cfg.int("num_attention_heads")
    hd = check_heads(cfg, d, n_heads)
    ffn = cfg.int("ffn_dim")
    vocab = cfg.int("vocab_size")
    positions = learned_positions(cfg, "max_position_embeddings", 2048, seq_len)
    proj = cfg.int("word_embed_proj_dim", d)
    pre = cfg.bool("do_layer_norm_before", True)
    final_norm = pre and not cfg.bool("_remove_final_layer_norm", False)
    bias = cfg.bool("enable_bias", True)
    affine = cfg.bool("layer_norm_elementwise_affine", True)
    tie = cfg.bool("tie_word_embeddings", True)
    p = cfg.prob("dropout", 0.1)

    def linear(name: str, width: int, src: str | None = None) -> str:
        return entry(name, "Linear", {"out_features": width, "bias": bias}, src=src)

    def norm(name: str) -> str:
        return entry(name, "LayerNorm", None if affine else {"elementwise_affine": False})

    attention = [linear("q_proj", d), *heads("q", n_heads, hd),
                 linear("k_proj", d, "input"), *heads("k", n_heads, hd),
                 linear("v_proj", d, "input"), *heads("v", n_heads, hd)]
    sdpa: dict = {"is_causal": True}
    if cfg.prob("attention_dropout", 0.0) > 0:
        sdpa["dropout_p"] = cfg.prob("attention_dropout", 0.0)
    attention += [entry("attn", "ScaledDotProductAttention", sdpa, src=["q_t", "k_t", "v_t"]),
                  *merge_heads(d), linear("out_proj", d)]
    first = [norm("self_attn_layer_norm")] if pre else []
    layer = [*first, entry("self_attn", "OPTAttention", None), *_dropout("attn_dropout", p),
             entry("attn_residual", "Add", None,
                   src=["attn_dropout" if p > 0 else "self_attn", "input"])]
    if not pre:
        layer.append(norm("self_attn_layer_norm"))
    after_attn = "attn_residual" if pre else "self_attn_layer_norm"
    if pre:
        layer.append(norm("final_layer_norm"))
    layer += [linear("fc1", ffn), activation(cfg, "activation_function", "relu", "activation_fn"),
              linear("fc2", d), *_dropout("dropout", p),
              entry("mlp_residual", "Add", None, src=["dropout" if p > 0 else "fc2", after_attn])]
    if not pre:
        layer.append(norm("final_layer_norm"))
    model = [entry("embed_tokens", "Embedding", {"num_embeddings": vocab, "embedding_dim": proj},
                   src=TOKENS)]
    if proj != d:
        model.append(entry("project_in", "Linear", {"out_features": d, "bias": False}))
    tokens = "project_in" if proj != d else "embed_tokens"
    model += [entry("embed_positions", "Embedding",
                    {"num_embeddings": positions + 2, "embedding_dim": d}, src="position_ids"),
              entry("embed", "Add", None, src=[tokens, "embed_positions"]),
              *_dropout("dropout", p),
              entry("layers", "OPTDecoderLayer", None, repeat=n_layers)]
    if final_norm:
        model.append(norm("final_layer_norm"))
    if proj != d:
        model.append(entry("project_out", "Linear", {"out_features": proj, "bias": False}))
    blocks = (block("OPTAttention", attention) + block("OPTDecoderLayer", layer)
              + block("OPTDecoder", model, inputs=[TOKENS, "position_ids"]))
    blocks += block("OPTModel", [entry("decoder", "OPTDecoder", None, src=[TOKENS, "position_ids"])],
                    inputs=[TOKENS, "position_ids"])
    layers = [entry("model", "OPTModel", None, src=[TOKENS, "position_ids"]),
              entry("lm_head", "Linear", {"out_features": vocab, "bias": False},
                    tie="model.decoder.embed_tokens" if tie else None)]
    notes = ["position_ids holds 2, 3, ..., L+1: OPT's learned positions are offset by 2."]
    return Mapped("OPTForCausalLM", {TOKENS: ([seq_len], "int64"),
                                     "position_ids": ([seq_len], "int64")},
                  blocks, layers, notes=notes)


def learned_positions(cfg: HFConfig, key: str, default: int, seq_len: int) -> int:
    """Rows of a learned position table (config ``key``), which ``--seq-len`` may not
    pass."""
    positions = cfg.int(key, default)
    if seq_len > positions:
        raise SeqTooLong(positions)
    return positions


class SeqTooLong(Exception):
    """``--seq-len`` beyond a learned position table (raised as a SpecError by the caller)."""

    def __init__(self, limit: int, option: str = "--seq-len"):
        super().__init__(limit)
        self.limit = limit
        self.option = option
