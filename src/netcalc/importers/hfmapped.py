"""What a family mapping returns, and the pieces several families share.

A mapping turns an :class:`~netcalc.importers.hfconfig.HFConfig` into the parts of a
spec: its inputs, block definitions (one per Hugging Face module class, named after it:
``LlamaAttention``, ``LlamaDecoderLayer``), top-level layers and outputs. Entries carry
the attribute names of the transformers modules, so that the built model's state_dict
keys are the transformers model's (``model.layers.0.self_attn.q_proj.weight``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .hfconfig import HFConfig
from .yamltext import entry

#: Hugging Face activation names (transformers.activations.ACT2FN) -> (type, argument)
ACTIVATIONS = {
    "silu": ("SiLU", None), "swish": ("SiLU", None),
    "gelu": ("GELU", None),
    "gelu_new": ("GELU", "tanh"), "gelu_pytorch_tanh": ("GELU", "tanh"),
    "relu": ("ReLU", None), "tanh": ("Tanh", None),
}


@dataclass
class Mapped:
    head: str  # the transformers class the spec is, e.g. LlamaForCausalLM
    inputs: dict[str, tuple[list[int], str]]  # name -> (per-sample shape, dtype)
    blocks: list[str]  # lines under `blocks:`
    layers: list[str]  # lines under `layers:` (each an entry, without the "- ")
    outputs: list[str] | None = None
    notes: list[str] = field(default_factory=list)  # comment lines about the mapping
    tokens: str | None = None  # the spec's `tokens:` (encoder-decoder models)
    lengths: str = ""  # how the sequence lengths were chosen (the header says it)


def activation(cfg: HFConfig, key: str, default: str, name: str = "act_fn") -> str:
    type_, arg = cfg.choice(key, default, ACTIVATIONS)
    return entry(name, type_, arg)


def heads(prefix: str, count: int, head_dim: int, src: str | None = None) -> list[str]:
    """A projection's ``(N, L, H*D)`` output as ``(N, H, L, D)``, the layout of
    ``scaled_dot_product_attention``."""
    return [entry(f"{prefix}_heads", "Unflatten", {"dim": 2, "unflattened_size": [count, head_dim]},
                  src=src),
            entry(f"{prefix}_t", "Permute", [0, 2, 1, 3])]


def merge_heads(width: int) -> list[str]:
    """The attention's ``(N, H, L, D)`` back to ``(N, L, H*D)``."""
    return [entry("attn_t", "Permute", [0, 2, 1, 3]), entry("merge_heads", "Reshape", [-1, width])]


def check_heads(cfg: HFConfig, hidden: int, count: int, key: str = "num_attention_heads") -> int:
    """``hidden / count``, the head size, when the config gives no ``head_dim``."""
    if hidden % count:
        raise cfg.fail(key, f"{count} heads do not divide the hidden size {hidden}")
    return hidden // count


def kv_heads(cfg: HFConfig, n_heads: int) -> int:
    """``num_key_value_heads`` (grouped-query attention; default: one per head), which
    must divide the heads."""
    kv = cfg.int("num_key_value_heads", n_heads)
    if n_heads % kv:
        raise cfg.fail("num_key_value_heads", f"{kv} kv heads do not divide {n_heads} heads")
    return kv
