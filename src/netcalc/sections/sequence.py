"""The sequence-model section of a report: per-token costs, Kaplan's estimate, KV cache.

A report gets this section when one of its inputs holds integer token ids. The
first such input is the token sequence: ``n_ctx`` is its per-sample length (its
numel without the batch) and ``tokens = batch * n_ctx``.

Figures (all exact integers, or exact fractions shown as floats when a division
leaves a remainder):

* ``params``, ``macs`` (per forward of the given batch and length), ``flops``;
* ``macs_per_token = macs / tokens`` and ``flops_per_token`` (2*MACs + element-wise);
* ``kaplan_flops_per_token``: Kaplan et al. (2020), "Scaling Laws for Neural
  Language Models", Table 1: ``C_forward = 2N + 2 n_layer n_ctx d_attn`` FLOPs per
  token, with ``N`` the NON-embedding parameters (all parameters less those of
  embedding layers, ``Layer.EMBEDDING``: Embedding/EmbeddingBag; a head tied to an
  embedding adds none, an untied head counts) and the attention term summed over the
  attentions (``Layer.attention_terms``) ``sum_i 2 * S_i * d_attn_i`` (``S_i`` the key
  length, ``d_attn_i`` heads x head dim); with ``n_layer`` identical layers this is
  exactly ``2 n_layer n_ctx d_model``. With a mixture of experts ``N`` is what one
  token uses: ``active_non_embedding_params`` (``active_params`` less the embeddings:
  the router and ``top_k`` experts of each MixtureOfExperts), as ``macs_per_token``
  counts ``top_k`` experts per token.
  ``kaplan_ratio`` = Kaplan / (2 * macs_per_token) shows where the rule of thumb
  drifts (it ignores element-wise work, embeddings and an output head it assumes
  tied, and counts causal attention at half the full L x L products).
* ``causal_macs``: total MACs with each causal attention counted at its causal-only
  figure (``Layer.causal_macs``; present when the model has causal attention).
* Memory: ``weight_bytes`` at the report's weight dtype, ``activation_bytes`` (all layer
  outputs) and ``peak_activation_bytes`` for the given batch and length, and for
  decoder models (causal attention) the KV cache: ``kv_cache_bytes_per_token``
  (one token of one sequence) and ``kv_cache_bytes`` (batch * n_ctx tokens; a layer
  with a sliding window, ``Layer.kv_cache_window``, holds at most ``window`` of them).
* ``window_macs``: total MACs with each sliding-window attention counted at the
  products its window keeps (present when the model has one).

KV cache per token = sum over causal self-attention layers of (key + value
elements per token: ``Layer.kv_cache_elements``) * bytes of the dtype: ``2 * d_model``
for a TransformerDecoderLayer (the cross-attention's memory keys are per sequence, not
per token); for blocks written from primitives, from the k and v inputs of each causal
ScaledDotProductAttention: ``H_kv*E + H_kv*Ev`` (the dims between batch and
length, times the feature dim), so grouped-query attention is counted right.
"""

from __future__ import annotations

from fractions import Fraction
from math import prod
from typing import TYPE_CHECKING, Any

from ..dtypes import nbytes
from ..layers.base import INT, Layer
from ..rf import fraction_json
from . import register_section

if TYPE_CHECKING:
    from ..analysis import Report


def _exact(x: Fraction) -> int | float:
    return x.numerator if x.denominator == 1 else float(x)


def _layers(report: "Report") -> list[Layer]:
    return [node.layer for node in report.graph.nodes] if report.graph is not None else []


def kv_cache_elements(report: "Report") -> int:
    """KV-cache elements one token of one sequence adds; 0 without causal attention."""
    return sum(lay.kv_cache_elements() for lay in _layers(report))


def kv_cache_bytes_per_token(report: "Report", dtype: str | None = None) -> int | None:
    """KV-cache bytes one token of one sequence adds, at the report's kv dtype; None
    without causal attention."""
    elements = kv_cache_elements(report)
    return nbytes(elements, dtype or report.dtypes.kv) if elements else None


def sequence_section(report: "Report") -> dict[str, Any] | None:
    """The section for reports with a token-id input; None for other models."""
    graph = report.graph
    if graph is None:
        return None
    tokens_in = [(name, t) for name, t in graph.inputs.items() if t.dtype == INT]
    if not tokens_in:
        return None
    name, t = tokens_in[0]
    n_ctx = prod(t.shape[1:])
    tokens = t.shape[0] * n_ctx
    totals = report.totals
    layers = _layers(report)

    # rows follow graph.nodes; a row's params already leave out tied weights
    embedding = sum(r.params for r, lay in zip(report.layers, layers) if lay.EMBEDDING)
    non_embedding = totals.params - embedding
    active_non_embedding = totals.active_params - embedding  # a token's share of N
    terms = [term for lay in layers for term in lay.attention_terms()]
    attention_flops = sum(2 * s * d for s, d in terms)
    kaplan = 2 * active_non_embedding + attention_flops
    macs_per_token = Fraction(totals.macs, tokens)

    section: dict[str, Any] = {
        "tokens_input": name,
        "n_ctx": n_ctx,
        "tokens": tokens,
        "params": totals.params,
        "embedding_params": embedding,
        "non_embedding_params": non_embedding,
        "active_params": totals.active_params,
        "active_non_embedding_params": active_non_embedding,
        "macs": totals.macs,
        "flops": totals.flops,
        "macs_per_token": _exact(macs_per_token),
        "flops_per_token": _exact(Fraction(totals.flops, tokens)),
        # exact companions: an int, or "p/q" where the float above rounds
        "macs_per_token_exact": fraction_json(macs_per_token),
        "flops_per_token_exact": fraction_json(Fraction(totals.flops, tokens)),
        "attention_layers": len(terms),
        "kaplan_flops_per_token": kaplan,
        "kaplan_ratio": float(Fraction(kaplan) / (2 * macs_per_token)) if totals.macs else None,
        "weight_bytes": totals.weight_bytes,
        "activation_bytes": totals.activation_bytes,
        "peak_activation_bytes": totals.peak_activation_bytes,
        "dtype": report.dtype,
        **report.dtypes.json(),
    }
    widths = {d for _, d in terms}
    if len(widths) == 1:
        section["d_model"] = widths.pop()
    saved = [lay.macs() - c for lay in layers if (c := lay.causal_macs()) is not None]
    if saved:
        section["causal_macs"] = totals.macs - sum(saved)
    windowed = [lay.macs() - w for lay in layers if (w := lay.window_macs()) is not None]
    if windowed:
        section["window_macs"] = totals.macs - sum(windowed)
    kv = kv_cache_bytes_per_token(report)
    if kv is not None:
        section["kv_cache_bytes_per_token"] = kv
        # each layer caches its own tokens: all n_ctx, or its window's last ones; the
        # whole cache is one tensor: a sub-byte dtype rounds once, not per token
        elements = sum(lay.kv_cache_elements() * min(n_ctx, lay.kv_cache_window() or n_ctx)
                       for lay in layers)
        section["kv_cache_bytes"] = nbytes(t.shape[0] * elements, report.dtypes.kv)
    return section


@register_section
class _Sequence:
    name = "sequence"

    def rows(self, report: "Report") -> None:
        pass

    def section(self, report: "Report") -> dict[str, Any] | None:
        return sequence_section(report)
