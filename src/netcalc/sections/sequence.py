"""The sequence-model section of a report: per-token costs, Kaplan's estimate, KV cache.

A report gets this section when one of its inputs holds integer token ids. The token
sequence is the input the spec names with ``tokens: NAME`` (an int64 input), else the
only int64 input, else the first of several (``tokens_chosen_by``: ``"tokens"``,
``"only"`` or ``"first"``; the table says so in the last case). ``n_ctx`` is its
per-sample length (its numel without the batch) and ``tokens = batch * n_ctx``.

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
  decoder models (causal self-attention on the token stream) the KV cache:
  ``kv_cache_bytes_per_token`` (one generated token of one sequence),
  ``self_attention_cache_bytes`` (batch * n_ctx tokens; a layer with a sliding window
  holds at most ``window`` of them), for encoder-decoder models
  ``cross_attention_cache_bytes`` (over the encoder's length ``cross_attention_length``,
  in ``cross_attention_layers`` attentions), and ``kv_cache_bytes``, their sum.
* ``window_macs``: total MACs with each sliding-window attention counted at the
  products its window keeps (present when the model has one).

Self- and cross-attention are told apart by the graph, not by names: each attention
(``Layer.attention_caches``) says which of its inputs give the query and which the keys
and values; an input is "on the token stream" when it descends from the token input.

* self-attention on the stream: query and keys/values on it, causal (a causal mask or a
  sliding window): its keys and values grow by one position per generated token;
* cross-attention: query on the stream, keys/values not (they come from an encoder's
  output, e.g. Whisper's audio or T5's source text): computed once per sequence for
  the encoder's length S and kept while decoding;
* anything else (an encoder's own attention, a non-causal attention on the stream) is
  not cached.

KV cache, at the kv dtype (``E_l``: key + value elements per key position of attention
``l``, ``H_kv*E + H_kv*Ev``, all kv heads, so grouped-query attention is counted right;
``2 * d_model`` for a TransformerDecoderLayer's attentions)::

    kv_cache_bytes_per_token    = bytes(sum_{causal self l} E_l)
    self_attention_cache_bytes  = bytes(batch * sum_{causal self l} E_l * min(n_ctx, window_l))
    cross_attention_cache_bytes = bytes(batch * sum_{cross l} E_l * S_l)
    kv_cache_bytes              = bytes(self + cross elements)   (one tensor: a sub-byte
                                                                 dtype rounds once)

The cross-attention cache is counted only for a model with a causal self-attention on
the stream (a decoder: without one nothing is generated token by token, and
:func:`kv_cache_absence` says why).
"""

from __future__ import annotations

from fractions import Fraction
from math import prod
from typing import TYPE_CHECKING, Any, NamedTuple

from ..dtypes import nbytes
from ..layers.base import INT, Layer
from ..rf import fraction_json
from . import register_section

if TYPE_CHECKING:
    from ..analysis import Report
    from ..graph import Graph


def _exact(x: Fraction) -> int | float:
    return x.numerator if x.denominator == 1 else float(x)


def _layers(report: "Report") -> list[Layer]:
    return [node.layer for node in report.graph.nodes] if report.graph is not None else []


#: the fields ``shapes`` shows only with ``--kv-cache``
KV_CACHE_FIELDS = ("kv_cache_bytes_per_token", "kv_cache_bytes", "self_attention_cache_bytes",
                   "cross_attention_cache_bytes", "cross_attention_layers",
                   "cross_attention_length")


def token_input(graph: "Graph") -> tuple[str, str] | None:
    """(name, chosen_by) of the token input: the spec's ``tokens:`` ("tokens"), the only
    int64 input ("only") or the first of several ("first"); None without one."""
    if graph.spec.tokens is not None:
        return graph.spec.tokens, "tokens"
    ints = [name for name, t in graph.inputs.items() if t.dtype == INT]
    if not ints:
        return None
    return ints[0], "only" if len(ints) == 1 else "first"


class Caches(NamedTuple):
    """The attentions of a model as a KV cache holds them (elements per sample)."""

    per_token: int  # causal self-attention: key + value elements per generated token
    self_total: int  # ... for n_ctx tokens, each layer bounded by its window
    cross: int  # cross-attention: keys and values over the encoder's length
    cross_lengths: frozenset[int]  # the key lengths S of the cross-attentions
    cross_layers: int
    on_stream: int  # attentions whose query is on the token stream
    self_noncausal: int  # ... of them, self-attentions without a causal mask


def attention_caches(graph: "Graph", tokens: str, n_ctx: int) -> Caches:
    """Sort each attention of ``graph`` by whether its query and its keys/values descend
    from the input ``tokens`` (see the module docstring)."""
    stream = {tokens}
    per_token = self_total = cross = cross_layers = on_stream = noncausal = 0
    lengths: set[int] = set()
    for node in graph.nodes:
        reached = [ref.node in stream for ref in node.sources]
        if any(reached):
            stream.add(node.name)
        for c in node.layer.attention_caches():
            if not reached[c.query]:
                continue
            on_stream += 1
            if not any(reached[i] for i in c.kv):
                cross += c.elements * c.length
                cross_layers += 1
                lengths.add(c.length)
            elif c.causal:
                per_token += c.elements
                self_total += c.elements * min(n_ctx, c.window or n_ctx)
            else:
                noncausal += 1
    return Caches(per_token, self_total, cross, frozenset(lengths), cross_layers, on_stream,
                  noncausal)


def kv_cache_bytes_per_token(report: "Report", dtype: str | None = None) -> int | None:
    """KV-cache bytes one generated token of one sequence adds (its causal
    self-attentions), at the report's kv dtype; None without one."""
    graph = report.graph
    found = token_input(graph) if graph is not None else None
    if found is None:
        return None
    n_ctx = prod(graph.inputs[found[0]].shape[1:])
    elements = attention_caches(graph, found[0], n_ctx).per_token
    return nbytes(elements, dtype or report.dtypes.kv) if elements else None


def kv_cache_absence(report: "Report") -> str | None:
    """Why the report has no KV cache (for ``--kv-cache``); None when it has one."""
    graph = report.graph
    found = token_input(graph) if graph is not None else None
    if found is None:
        return "it has no token input (an int64 input; name it with `tokens:`)"
    name, chosen_by = found
    caches = attention_caches(graph, name, prod(graph.inputs[name].shape[1:]))
    if caches.per_token:
        return None
    if not caches.on_stream:
        why = f"no attention reads the token input {name!r}"
    elif caches.self_noncausal:
        why = (f"its self-attention over {name!r} is not causal (an encoder: nothing is "
               "cached token by token; a decoder sets is_causal, beside a bias input too)")
    else:
        why = f"no self-attention over {name!r}, only cross-attention"
    if chosen_by == "first":
        why += " (the first of several int64 inputs: name another with `tokens:`)"
    return why


def sequence_section(report: "Report") -> dict[str, Any] | None:
    """The section for reports with a token-id input; None for other models."""
    graph = report.graph
    if graph is None:
        return None
    found = token_input(graph)
    if found is None:
        return None
    name, chosen_by = found
    t = graph.inputs[name]
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
        "tokens_chosen_by": chosen_by,
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
    caches = attention_caches(graph, name, n_ctx)
    if caches.per_token:
        kv, batch = report.dtypes.kv, t.shape[0]
        section["kv_cache_bytes_per_token"] = nbytes(caches.per_token, kv)
        # the whole cache is one tensor: a sub-byte dtype rounds once, not per token
        section["kv_cache_bytes"] = nbytes(batch * (caches.self_total + caches.cross), kv)
        section["self_attention_cache_bytes"] = nbytes(batch * caches.self_total, kv)
        if caches.cross_layers:
            section["cross_attention_cache_bytes"] = nbytes(batch * caches.cross, kv)
            section["cross_attention_layers"] = caches.cross_layers
            if len(caches.cross_lengths) == 1:
                section["cross_attention_length"] = next(iter(caches.cross_lengths))
    return section


@register_section
class _Sequence:
    name = "sequence"

    def rows(self, report: "Report") -> None:
        pass

    def section(self, report: "Report") -> dict[str, Any] | None:
        return sequence_section(report)
