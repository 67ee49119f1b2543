"""Published Hugging Face config.json values (no download in the tests: each is written
to a temporary file) and the parameter counts published for them.

Each dict copies the checkpoint's config.json from the Hugging Face Hub (the keys that
shape the model; ids of special tokens, dtypes and versions left out). Counts: the
model card or paper cited beside it; all are what transformers' ``num_parameters()``
gives for the config (tied weights once).
"""

LLAMA3_8B = {  # meta-llama/Meta-Llama-3-8B; model card: 8B, 8,030,261,248 (issue 12)
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 14336,
    "max_position_embeddings": 8192, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 500000.0,
    "tie_word_embeddings": False, "vocab_size": 128256,
}
MISTRAL_7B = {  # mistralai/Mistral-7B-v0.1; 7,241,732,096 (issue 12)
    "architectures": ["MistralForCausalLM"], "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "tie_word_embeddings": False, "vocab_size": 32000,
}
MIXTRAL_8X7B = {  # mistralai/Mixtral-8x7B-v0.1; 46,702,792,704 total (issue 12)
    "architectures": ["MixtralForCausalLM"], "attention_dropout": 0.0, "hidden_act": "silu",
    "hidden_size": 4096, "intermediate_size": 14336, "max_position_embeddings": 32768,
    "model_type": "mixtral", "num_attention_heads": 32, "num_experts_per_tok": 2,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "num_local_experts": 8,
    "output_router_logits": False, "rms_norm_eps": 1e-05, "rope_theta": 1e6,
    "router_aux_loss_coef": 0.02, "sliding_window": None, "tie_word_embeddings": False,
    "vocab_size": 32000,
}
QWEN2_0_5B = {  # Qwen/Qwen2-0.5B; 494,032,768 (issue 12)
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "hidden_act": "silu",
    "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 131072,
    "max_window_layers": 24, "model_type": "qwen2", "num_attention_heads": 14,
    "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": True,
    "use_sliding_window": False, "vocab_size": 151936,
}
GEMMA_2B = {  # google/gemma-2b; 2,506,172,416 (issue 12); Gemma report Table 2:
    # 1,981,884,416 non-embedding parameters
    "architectures": ["GemmaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "head_dim": 256, "hidden_act": "gelu", "hidden_size": 2048, "intermediate_size": 16384,
    "max_position_embeddings": 8192, "model_type": "gemma", "num_attention_heads": 8,
    "num_hidden_layers": 18, "num_key_value_heads": 1, "pad_token_id": 0,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 10000.0, "vocab_size": 256000,
}
PHI_2 = {  # microsoft/phi-2; 2,779,683,840 (issue 12)
    "architectures": ["PhiForCausalLM"], "attention_dropout": 0.0, "embd_pdrop": 0.0,
    "hidden_act": "gelu_new", "hidden_size": 2560, "intermediate_size": 10240,
    "layer_norm_eps": 1e-05, "max_position_embeddings": 2048, "model_type": "phi",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "partial_rotary_factor": 0.4, "qk_layernorm": False, "resid_pdrop": 0.1,
    "rope_scaling": None, "rope_theta": 10000.0, "tie_word_embeddings": False,
    "vocab_size": 51200,
}
GPT2 = {  # openai-community/gpt2; 124,439,808 (specs/gpt2.yaml)
    "activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
    "embd_pdrop": 0.1, "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": 1024,
    "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "resid_pdrop": 0.1,
    "vocab_size": 50257,
}
BERT_BASE = {  # google-bert/bert-base-uncased; BertModel 109,482,240 (specs/bert_base.yaml)
    "architectures": ["BertForMaskedLM"], "attention_probs_dropout_prob": 0.1,
    "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
    "intermediate_size": 3072, "layer_norm_eps": 1e-12, "max_position_embeddings": 512,
    "model_type": "bert", "num_attention_heads": 12, "num_hidden_layers": 12,
    "pad_token_id": 0, "position_embedding_type": "absolute", "type_vocab_size": 2,
    "vocab_size": 30522,
}
OPT_125M = {  # facebook/opt-125m
    "activation_dropout": 0.0, "activation_function": "relu", "architectures": ["OPTForCausalLM"],
    "attention_dropout": 0.0, "do_layer_norm_before": True, "dropout": 0.1, "ffn_dim": 3072,
    "hidden_size": 768, "max_position_embeddings": 2048, "model_type": "opt",
    "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1,
    "vocab_size": 50272, "word_embed_proj_dim": 768,
}
OPT_350M = {  # facebook/opt-350m: post-norm layers, project_in/project_out
    "activation_dropout": 0.0, "activation_function": "relu", "architectures": ["OPTForCausalLM"],
    "attention_dropout": 0.0, "do_layer_norm_before": False, "dropout": 0.1, "ffn_dim": 4096,
    "hidden_size": 1024, "max_position_embeddings": 2048, "model_type": "opt",
    "num_attention_heads": 16, "num_hidden_layers": 24, "pad_token_id": 1,
    "vocab_size": 50272, "word_embed_proj_dim": 512,
}
T5_SMALL = {  # google-t5/t5-small; 60,506,624 (issue 12)
    "architectures": ["T5ForConditionalGeneration"], "d_ff": 2048, "d_kv": 64, "d_model": 512,
    "decoder_start_token_id": 0, "dropout_rate": 0.1, "feed_forward_proj": "relu",
    "is_encoder_decoder": True, "layer_norm_epsilon": 1e-06, "model_type": "t5",
    "n_positions": 512, "num_heads": 8, "num_layers": 6, "pad_token_id": 0,
    "relative_attention_num_buckets": 32, "vocab_size": 32128,
}
WHISPER_TINY = {  # openai/whisper-tiny; 37,760,640 (issue 12)
    "activation_function": "gelu", "architectures": ["WhisperForConditionalGeneration"],
    "d_model": 384, "decoder_attention_heads": 6, "decoder_ffn_dim": 1536,
    "decoder_layers": 4, "decoder_start_token_id": 50258, "encoder_attention_heads": 6,
    "encoder_ffn_dim": 1536, "encoder_layers": 4, "max_source_positions": 1500,
    "max_target_positions": 448, "model_type": "whisper", "num_hidden_layers": 4,
    "num_mel_bins": 80, "pad_token_id": 50257, "scale_embedding": False,
    "vocab_size": 51865,
}

#: name -> (config, published parameter count or None)
PUBLISHED = {
    "gpt2": (GPT2, 124_439_808), "bert-base-uncased": (BERT_BASE, 109_482_240),
    "llama-3-8b": (LLAMA3_8B, 8_030_261_248), "mistral-7b": (MISTRAL_7B, 7_241_732_096),
    "qwen2-0.5b": (QWEN2_0_5B, 494_032_768), "gemma-2b": (GEMMA_2B, 2_506_172_416),
    "phi-2": (PHI_2, 2_779_683_840), "mixtral-8x7b": (MIXTRAL_8X7B, 46_702_792_704),
    "opt-125m": (OPT_125M, None), "opt-350m": (OPT_350M, None),
    "t5-small": (T5_SMALL, 60_506_624), "whisper-tiny": (WHISPER_TINY, 37_760_640),
}
