"""Attention: MultiheadAttention, ScaledDotProductAttention and torch's transformer layers.

Batch first, always (the torch builder sets ``batch_first=True``).

``MultiheadAttention`` (torch.nn.MultiheadAttention): self-attention on one input
``(N, L, E)``; cross-attention with ``from: [query, key, value]`` (or ``[query,
memory]``: key = value = memory). ``embed_dim`` is inferred from the query, ``kdim``
and ``vdim`` from the key and value; the output is the attention output ``(N, L, E)``
only (torch's ``need_weights=False``). ``E`` must be divisible by ``num_heads``.
With ``attn_mask: true`` the last input is torch's additive ``attn_mask``.

    params = E*E + E*kdim + E*vdim (Q, K, V projections) + (3E if bias)
             + E*E + (E if bias) (out_proj) + (2E if add_bias_kv)
    MACs   = N * (L*E*E + S*E*kdim + S*E*vdim       Q, K, V projections
                  + L*S'*E + L*S'*E                 Q K^T and softmax(.) V, all heads
                  + L*E*E)                          out_proj

with ``S`` the key length and ``S' = S + add_bias_kv + add_zero_attn``.

``ScaledDotProductAttention`` (torch.nn.functional.scaled_dot_product_attention) is a
merge layer for blocks written from primitives: inputs ``q (..., L, E)``, ``k (...,
S, E)``, ``v (..., S, Ev)``, output ``(..., L, Ev)``; ``MACs = B*L*S*E + B*L*S*Ev``
with ``B`` the product of the leading dims of q (batch, heads). With ``is_causal``
the MACs still count the full L x S products, as torch.utils.flop_counter does (a
dense kernel computes them all and masks); the causal-only figure
(the products of the kept lower triangle, torch's top-left aligned mask: about half)
is reported beside it as ``extra["causal_macs"]``. A fourth input is an additive bias
or mask broadcast to the scores (T5's relative positions; torch's ``attn_mask``);
``window: N`` is a causal sliding window (Mistral), built in torch as a band mask, its
kept products beside the full count as ``extra["window_macs"]``. ``is_causal`` (or
``window``) with a bias: torch's function takes one or the other, so the builder folds
the causal mask into the bias (``bias.masked_fill(~causal, -inf)``, as Hugging Face's T5
adds its causal mask to the position bias); still one add per score.

Grouped-query attention is written from primitives (separate k/v projections with
fewer heads, then SDPA with ``enable_gqa``), as Llama-style checkpoints hold it;
``nn.MultiheadAttention`` has no kv heads, so neither has netcalc's.

``TransformerEncoderLayer`` / ``TransformerDecoderLayer`` (torch.nn's, arguments and
defaults included) are counted as the sum of their parts, each one netcalc's own
layer: self-attention (and, in the decoder, cross-attention over ``memory``), the
feed-forward ``Linear(d_model -> dim_feedforward) -> activation -> Linear(->
d_model)``, two (three) LayerNorms and two (three) residual adds. Dropout is
inference-free. ``norm_first`` changes the order, not the counts.

Element-wise FLOPs of attention (per score element ``B*H*L*S'``): 1 for the scale,
1 for the causal mask, window or bias add (when there is one), and Softmax's 5 (netcalc's Softmax layer);
plus the projection bias adds (one per output element).
"""

from __future__ import annotations

from math import prod
from typing import Any

from ..args import Arg, Bool, Choice, Float, PosInt, Probability
from .activation import Softmax
from .base import (ACC, FULL, LOW, LOWER, MIXED, UPCAST, AttentionCache, Ctx, Grads, Layer,
                   Parameterless, Saved, Shape, TensorInfo, register, saved_extra, saved_input,
                   saved_output, saved_weight)
from .norm import LayerNorm
from .recurrent import check_sequence, sequence_field


def causal_kept(length_q: int, length_k: int) -> int:
    """Scores kept by torch's causal mask ``ones(L, S).tril()`` (top-left aligned)."""
    m = min(length_q, length_k)
    return m * (m + 1) // 2 + (length_q - m) * length_k


def window_kept(length_q: int, length_k: int, window: int) -> int:
    """Scores kept by a causal sliding window of ``window`` keys (query i sees keys
    i-window < j <= i, Mistral's): the causal count less, for each row i >= window, the
    min(i-window+1, S) keys it no longer sees, which is a causal count again."""
    return causal_kept(length_q, length_k) - causal_kept(max(length_q - window, 0), length_k)


def attention_core_flops(scores: int, masked: bool = False) -> int:
    """Element-wise FLOPs of scale (+ a causal mask or a bias add) + softmax over
    ``scores`` elements."""
    return scores * (1 + (1 if masked else 0) + Softmax.FLOPS)


# ---------------------------------------------------------------------- MHA
@register
class MultiheadAttention(Layer):
    """Multi-head attention (N, L, E) -> (N, L, E); cross-attention with from: [q, k, v]."""

    PRIMARY = "num_heads"
    ARITY = (1, 4)
    AUTOCAST = LOWER
    MODULES = 2  # and its out_proj
    PARAMS_FORMULA = ("E*E + E*kdim + E*vdim + (3E if bias) + E*E + (E if bias) "
                      "+ (2E if add_bias_kv)")
    MACS_FORMULA = "N*(L*E*E + S*E*kdim + S*E*vdim + 2*L*S'*E + L*E*E)"

    embed_dim = Arg(PosInt, inferred=True, doc="model width E (last dim of the query)")
    num_heads = Arg(PosInt, doc="heads; embed_dim must be divisible by it")
    dropout = Arg(Probability, 0.0, doc="dropout on attention weights (training only)")
    bias = Arg(Bool(), True, doc="biases of the input and output projections")
    add_bias_kv = Arg(Bool(), False, doc="learned bias appended to key and value sequences")
    add_zero_attn = Arg(Bool(), False, doc="a zero key/value appended to the sequences")
    kdim = Arg(PosInt, None, doc="key features; default: inferred from the key input")
    vdim = Arg(PosInt, None, doc="value features; default: inferred from the value input")
    attn_mask = Arg(Bool(), False, doc="the last input is an additive float mask (L, S) or "
                    "(N*num_heads, L, S), torch's attn_mask")

    def validate(self) -> None:
        if self.embed_dim is not None:
            self._check_heads(self.embed_dim)

    def _check_heads(self, e: int) -> None:
        if e % self.num_heads:
            raise self.fail(f"embed_dim={e} is not divisible by num_heads={self.num_heads} "
                            f"(each head gets embed_dim/num_heads features)", "num_heads")

    def shape(self, *inputs: Shape) -> Shape:
        if self.attn_mask:
            if len(inputs) < 2:
                raise self.fail("attn_mask: true takes the mask as the last input, after the "
                                "query (from: [query, mask])", "from")
            inputs, mask = inputs[:-1], inputs[-1]
        for name, s in zip(("query", "key", "value"), inputs):
            check_sequence(self, s, "E", name)
        q = inputs[0]
        k = inputs[1] if len(inputs) > 1 else q
        v = inputs[2] if len(inputs) > 2 else k
        e = self.check_inferred("embed_dim", q[2])
        self._check_heads(e)
        self.check_inferred("kdim", k[2])
        self.check_inferred("vdim", v[2])
        if not q[0] == k[0] == v[0]:
            raise self.fail(f"query, key and value batch sizes differ: {q[0]}, {k[0]}, {v[0]}")
        if k[1] != v[1]:
            raise self.fail(f"key and value sequence lengths differ: key {list(k)} has "
                            f"{k[1]}, value {list(v)} has {v[1]}")
        if self.attn_mask and mask not in ((q[1], k[1]), (q[0] * self.num_heads, q[1], k[1])):
            raise self.fail(f"the attn_mask is {list(mask)}; torch takes (L, S) = "
                            f"{[q[1], k[1]]} or (N*num_heads, L, S) = "
                            f"{[q[0] * self.num_heads, q[1], k[1]]}", "attn_mask")
        return q

    @property
    def _qkv(self) -> list[TensorInfo]:
        """The query, key and value inputs as given (without the mask)."""
        return self.inputs[:-1] if self.attn_mask else self.inputs

    @property
    def _lengths(self) -> tuple[int, int, int, int]:
        q = self.inputs[0].shape
        k = self._qkv[1].shape if len(self._qkv) > 1 else q
        s_attn = k[1] + int(self.add_bias_kv) + int(self.add_zero_attn)
        return q[0], q[1], k[1], s_attn

    def params(self) -> int:
        e = self.embed_dim
        kd = self.kdim or e
        vd = self.vdim or e
        total = e * e + e * kd + e * vd + e * e
        if self.bias:
            total += 4 * e
        if self.add_bias_kv:
            total += 2 * e
        return total

    def macs(self) -> int:
        n, length, s, s_attn = self._lengths
        e = self.embed_dim
        proj = length * e * e + s * e * self.kdim + s * e * self.vdim + length * e * e
        return n * (proj + 2 * length * s_attn * e)

    def elementwise_flops(self) -> int:
        n, length, s, s_attn = self._lengths
        e = self.embed_dim
        flops = attention_core_flops(n * self.num_heads * length * s_attn, self.attn_mask)
        if self.bias:
            flops += n * (2 * length * e + 2 * s * e)  # q, k, v and out_proj biases
        return flops

    def receptive_field(self, fields):
        return sequence_field(fields)

    def param_tensors(self) -> int:
        """in_proj_weight (or q/k/v_proj_weight when kdim or vdim differ from E),
        out_proj.weight, and with bias in_proj_bias and out_proj.bias; bias_k, bias_v."""
        e = self.embed_dim
        weights = 2 if self.kdim == e and self.vdim == e else 4
        return weights + (2 if self.bias else 0) + (2 if self.add_bias_kv else 0)

    def largest_param_tensor(self) -> int:
        """in_proj_weight (3E x E), or the largest of q/k/v_proj_weight."""
        e = self.embed_dim
        if self.kdim == e and self.vdim == e:
            return 3 * e * e
        return max(e * e, e * self.kdim, e * self.vdim)

    def _projection_inputs(self) -> tuple[int, int, int]:
        """Which input feeds the q, k and v projections."""
        return {1: (0, 0, 0), 2: (0, 1, 1), 3: (0, 1, 2)}[len(self._qkv)]

    def projection_backward_macs(self, grads: Grads) -> int:
        """The projections' share of the backward: out_proj's input gradient, each
        q/k/v projection's input gradient when its input needs one, and with trainable
        weights every weight gradient."""
        n, length, s, _ = self._lengths
        e = self.embed_dim
        out_proj = length * e * e
        proj = (length * e * e, s * e * self.kdim, s * e * self.vdim)
        total = out_proj
        total += sum(p for p, i in zip(proj, self._projection_inputs()) if grads.inputs[i])
        if grads.weight:
            total += out_proj + sum(proj)
        return n * total

    def backward_macs(self, grads: Grads) -> int:
        """The projections' share, plus the attention core's four products (``dP = dO
        V^T``, ``dV = P^T dO``, ``dQ = dS K``, ``dK = dS^T Q``): the projected q, k, v
        always descend from the projection weights, so the core always has them."""
        n, length, _, s_attn = self._lengths
        return self.projection_backward_macs(grads) + n * 4 * length * s_attn * self.embed_dim

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """Measured on CPU (batch_first): the packed input projection runs on the input
        made sequence-first, which ``linear`` copies (one copy per distinct input tensor,
        kept for the weight gradient); the projections (one packed q, k, v tensor for
        self-attention, q and a packed k, v when key is value, else three) are kept by the
        attention kernel, except k and v when ``add_bias_kv``/``add_zero_attn`` append
        rows (new k and v tensors are kept instead); the kernel also keeps its output (also
        out_proj's input) and the float32 log-sum-exp of each query row and head. The CPU
        flash kernel (MultiheadAttention always takes it on CPU); on CUDA the
        memory-efficient or flash kernel keeps the same, the log-sum-exp padded to 32 rows
        (from the kernels, not measured here)."""
        if device == "cpu" and not self.fused_on_cpu(grads):
            return self.math_saved(grads)
        n, length, s, s_attn = self._lengths
        e, heads = self.embed_dim, self.num_heads
        distinct = sorted(set(self._projection_inputs()))
        kept = [saved_extra(self.inputs[i].numel, LOW) for i in distinct] if grads.weight else []
        appended = self.add_bias_kv or self.add_zero_attn
        if len(distinct) == 1:
            kept.append(saved_extra(3 * n * length * e, LOW))
        else:
            kept.append(saved_extra(n * length * e, LOW))
            if not appended:
                kept += [saved_extra(n * s * e, LOW)] * (4 - len(distinct))
        if appended:
            kept += [saved_extra(n * s_attn * e, LOW)] * 2
        rows = length if device == "cpu" else -(-length // 32) * 32
        mask = [saved_input(len(self.inputs) - 1)] if self.attn_mask else []
        if mask and appended:  # torch pads the mask by the appended keys: a new tensor
            mask = [saved_extra(self.inputs[-1].numel // s * s_attn)]
        return kept + [saved_extra(n * length * e, LOW), saved_extra(n * heads * rows, ACC),
                       *mask,
                       *self.weights_saved(grads)]

    def weights_saved(self, grads: Grads) -> list[Saved]:
        """The projection weights ``linear`` keeps for the input gradients (their 16-bit
        casts under autocast; measured): the q, k, v weights (the packed one, or its
        chunks) of each input that needs a gradient, and out_proj's, whose input always
        does."""
        e = self.embed_dim
        proj = (e * e, e * self.kdim, e * self.vdim)
        feeds = self._projection_inputs()
        kept = [saved_weight(sum(p for p, j in zip(proj, feeds) if j == i))
                for i in sorted(set(feeds)) if grads.inputs[i]]
        return kept + [saved_weight(e * e)]

    def fused_on_cpu(self, grads: Grads) -> bool:
        """torch's CPU flash kernel runs the attention products in training, unless
        there is dropout or the attn_mask needs a gradient (measured: the math path)."""
        return not self.dropout and not (self.attn_mask and grads.inputs[-1])

    def math_saved(self, grads: Grads) -> list[Saved]:
        """CPU's math path (``_scaled_dot_product_attention_math``; measured, with dropout
        in training or an attn_mask that needs a gradient): the input copies and the
        projections as the flash path keeps them (v a view of the packed projection), q
        and k scaled by sqrt(scale), the softmax weights (with dropout also its float mask
        and the dropped weights), and the heads merged (a copy, out_proj's input). The
        kernel computes 16-bit q, k, v in float32 (opmath; measured under autocast and
        in bf16): then q and k scaled, the weights, mask and dropped weights are float32,
        and it keeps a float32 copy of v instead of the packed projection."""
        n, length, s, _ = self._lengths
        e, scores = self.embed_dim, n * self.num_heads * length * s
        weight = grads.weight
        cross = len(set(self._projection_inputs())) > 1
        kept = [saved_extra(n * length * e, LOW)] + \
            ([saved_extra(n * s * e, LOW)] if cross else []) if weight else []
        kept.append(saved_extra(2 * n * s * e if cross else 3 * n * length * e, FULL))
        kept += [saved_extra(n * s * e, UPCAST)]
        kept += [saved_extra(n * length * e, ACC), saved_extra(n * s * e, ACC)]
        kept += [saved_extra(scores, ACC)] * (3 if self.dropout else 1)
        return kept + ([saved_extra(n * length * e, LOW)] if weight else []) + \
            self.weights_saved(grads)

    def attention_terms(self) -> list[tuple[int, int]]:
        _, _, s, _ = self._lengths
        return [(s, self.embed_dim)]

    def attention_caches(self) -> list[AttentionCache]:
        """Keys and values projected to E each, from the key and value inputs; no causal
        mask of its own (an attn_mask's values are not known)."""
        _, _, s, _ = self._lengths
        kv = tuple(sorted(set(self._projection_inputs()[1:])))
        return [AttentionCache(0, kv, 2 * self.embed_dim, s, False)]

    def torch_module(self) -> Any:
        from ..torch.modules import AttentionOutput

        args = self.arg_values()
        masked = args.pop("attn_mask")  # a forward input in torch, not an argument
        return AttentionOutput(**args, batch_first=True, masked=masked)

    @classmethod
    def args_from_torch(cls, module: Any) -> dict[str, Any]:
        """The arguments of a torch.nn.MultiheadAttention (``netcalc import``): torch
        keeps ``bias`` and ``add_bias_kv`` as tensors, ``kdim``/``vdim`` filled in."""
        if not module.batch_first:
            raise ValueError("batch_first=False (netcalc's attention is batch-first)")
        args: dict[str, Any] = {"num_heads": module.num_heads}
        if module.dropout:
            args["dropout"] = module.dropout
        if module.in_proj_bias is None:
            args["bias"] = False
        if module.bias_k is not None:
            args["add_bias_kv"] = True
        if module.add_zero_attn:
            args["add_zero_attn"] = True
        for key in ("kdim", "vdim"):
            if getattr(module, key) != module.embed_dim:
                args[key] = getattr(module, key)
        return args


# ---------------------------------------------------------------------- SDPA
def broadcasts_to(mask: Shape, target: Shape) -> bool:
    """torch's broadcasting of ``mask`` to ``target`` without growing ``target``."""
    return len(mask) <= len(target) and all(
        m in (1, t) for m, t in zip(reversed(mask), reversed(target)))


@register
class ScaledDotProductAttention(Parameterless):
    """softmax(q k^T * scale + bias) v over (..., L, E) q, k, v and an optional bias."""

    PRIMARY = None
    ARITY = (3, 4)
    AUTOCAST = LOWER
    MACS_FORMULA = "B*L*S*E + B*L*S*Ev (full L x S even when causal or windowed)"

    is_causal = Arg(Bool(), False, doc="causal mask (top-left aligned, as torch)")
    dropout_p = Arg(Probability, 0.0, doc="dropout on attention weights (training only)")
    scale = Arg(Float(0.0), None, doc="score scale; default 1/sqrt(E) (T5: 1.0)")
    enable_gqa = Arg(Bool(), False,
                     doc="grouped-query attention: k/v may have fewer heads (dim -3)")
    window = Arg(PosInt, None, doc="causal sliding window: query i sees keys i-window < j "
                 "<= i (Mistral); needs is_causal")

    def validate(self) -> None:
        if self.window is not None and not self.is_causal:
            raise self.fail("window is a causal sliding window: set is_causal: true too",
                            "window")

    def shape(self, q: Shape, k: Shape, v: Shape, mask: Shape | None = None) -> Shape:
        for name, s in (("q", q), ("k", k), ("v", v)):
            if len(s) < 3:
                raise self.fail(f"ScaledDotProductAttention needs inputs (N, ..., L, E); "
                                f"{name} is {list(s)}")
        if not len(q) == len(k) == len(v):
            raise self.fail(f"q, k and v have different ranks: {list(q)}, {list(k)}, {list(v)}")
        if q[-1] != k[-1]:
            raise self.fail(f"q and k feature sizes differ: q {list(q)} has {q[-1]}, "
                            f"k {list(k)} has {k[-1]}")
        if k[-2] != v[-2]:
            raise self.fail(f"k and v sequence lengths differ: k {list(k)} has {k[-2]}, "
                            f"v {list(v)} has {v[-2]}")
        if k[:-2] != v[:-2]:
            raise self.fail(f"k and v leading dims differ: {list(k)}, {list(v)}")
        lead_q, lead_k = q[:-2], k[:-2]
        if lead_q != lead_k:
            gqa = (self.enable_gqa and len(q) >= 4 and lead_q[:-1] == lead_k[:-1]
                   and lead_q[-1] % lead_k[-1] == 0)
            if not gqa:
                hint = (" (with fewer k/v heads, set enable_gqa: true)"
                        if len(q) >= 4 and lead_q[:-1] == lead_k[:-1] else "")
                raise self.fail(f"q and k leading dims differ: q {list(q)}, k {list(k)}{hint}")
        if mask is not None:
            scores = (*lead_q, q[-2], k[-2])
            if not broadcasts_to(mask, scores):
                raise self.fail(f"the bias {list(mask)} does not broadcast to the scores "
                                f"{list(scores)} (..., L, S)")
        return (*q[:-1], v[-1])

    @property
    def has_mask(self) -> bool:
        return len(self.inputs) == 4

    def _dims(self) -> tuple[int, int, int, int, int]:
        q, k, v = (t.shape for t in self.inputs[:3])
        return prod(q[:-2]), q[-2], k[-2], q[-1], v[-1]

    def macs(self) -> int:
        b, length, s, e, ev = self._dims()
        return b * length * s * (e + ev)

    def causal_macs(self) -> int | None:
        if not self.is_causal:
            return None
        b, length, s, e, ev = self._dims()
        return b * causal_kept(length, s) * (e + ev)

    def elementwise_flops(self) -> int:
        """Per score: the scale, the causal mask or the bias add, and softmax."""
        b, length, s, _, _ = self._dims()
        return attention_core_flops(b * length * s, self.is_causal or self.has_mask)

    def window_macs(self) -> int | None:
        """MACs counting only the products a sliding window keeps; None without one."""
        if self.window is None:
            return None
        b, length, s, e, ev = self._dims()
        return b * window_kept(length, s, self.window) * (e + ev)

    def extras(self) -> dict[str, Any]:
        extra = {"causal_macs": self.causal_macs()} if self.is_causal else {}
        return extra | ({"window_macs": self.window_macs()} if self.window else {})

    def backward_macs(self, grads: Grads) -> int:
        """``dV = P^T dO`` (v), ``dP = dO V^T`` (q or k), ``dQ = dS K`` (q), ``dK = dS^T Q``
        (k): each as large as its forward product."""
        b, length, s, e, ev = self._dims()
        gq, gk, gv = grads.inputs[:3]  # the bias's gradient is dS itself: no product
        return b * length * s * (ev * gv + ev * (gq or gk) + e * gq + e * gk)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """The fused kernels (CPU flash attention for 4-d q, k, v of equal head dims;
        flash or memory-efficient attention on CUDA) keep q, k, v, the output, the float32
        log-sum-exp of each score row (padded to 32 rows on CUDA) and the bias. CPU's math
        path (other ranks, a value head dim unlike the query's, dropout in training, or a
        bias that needs a gradient; measured) keeps q and k each scaled by sqrt(scale)
        (new tensors), the softmax weights, with dropout its float mask and the dropped
        weights, and v (the bias's add keeps nothing). A window is the builder's boolean
        band, which torch turns into a float mask the fused kernel keeps. On CUDA the bias
        and the band are assumed kept as on CPU (from the kernels; not measured here: the
        memory-efficient kernel may pad them to an aligned width)."""
        b, length, s, e, ev = self._dims()
        if device == "cpu" and not self.fused_on_cpu(grads=grads):
            scores = [saved_extra(b * length * s)] * (3 if self.dropout_p else 1)
            # folding the causal mask into a bias that needs a gradient: masked_fill keeps
            # its boolean mask
            fold = ([saved_extra(length * s, "bool")]
                    if self.is_causal and self.has_mask and grads.inputs[3] else [])
            return [saved_extra(b * length * e), saved_extra(b * s * e), *scores,
                    saved_input(2), *fold]
        rows = length if device == "cpu" else -(-length // 32) * 32
        mask = [saved_input(3)] if self.has_mask else []
        if self.is_causal and self.has_mask:  # the bias with the mask folded in: a new tensor
            mask = [saved_extra(self._folded_numel())]
        elif self.window:  # the builder's band mask, made float for the kernel
            mask = [saved_extra(length * s)]
        return [saved_input(0), saved_input(1), saved_input(2), saved_output(),
                saved_extra(b * rows, ACC), *mask]

    def _folded_numel(self) -> int:
        """Elements of the bias with the causal mask folded in: broadcast to (..., L, S)."""
        _, length, s, _, _ = self._dims()
        return prod(self.inputs[3].shape[:-2]) * length * s

    def output_order(self, device: str) -> tuple[int, ...] | None:
        """The fused kernels write the output (B, H, L, Ev) as (B, L, H, Ev) in memory
        (measured on CPU: ``transpose(1, 2).reshape`` of it is a view)."""
        fused = device == "cuda" or self.fused_on_cpu()
        return (0, 2, 1, 3) if fused and len(self.y) == 4 else None

    def fused_on_cpu(self, training: bool = True, grads: Grads | None = None) -> bool:
        """torch's CPU flash kernel takes 4-d q, k, v of equal head dims, no dropout
        (measured: with dropout in training the math path runs), no bias that needs a
        gradient (``grads``; forward counts run under no_grad, where none does) and no
        3-d bias (measured: a (H, L, S) bias takes the math path, (L, S) and (1, H, L, S)
        the kernel)."""
        q, k, v = (t.shape for t in self.inputs[:3])
        bias_grad = self.has_mask and grads is not None and grads.inputs[3]
        bias_3d = self.has_mask and len(self.inputs[3].shape) == 3
        return (len(q) == 4 and q[-1] == k[-1] == v[-1] and not (training and self.dropout_p)
                and not bias_grad and not bias_3d)

    def receptive_field(self, fields):
        return sequence_field(fields)

    def attention_terms(self) -> list[tuple[int, int]]:
        """d_attn = heads x head dim: the dims of q between batch and length, times E."""
        q, k = (t.shape for t in self.inputs[:2])
        return [(k[-2], prod(q[1:-2]) * q[-1])]

    def attention_caches(self) -> list[AttentionCache]:
        """q is input 0, k and v inputs 1 and 2: per key position, k and v features of
        all kv heads (the dims between batch and length), so grouped-query attention is
        counted right."""
        k, v = (t.shape for t in self.inputs[1:3])
        return [AttentionCache(0, (1, 2), prod(k[1:-2]) * k[-1] + prod(v[1:-2]) * v[-1],
                               k[-2], self.is_causal, self.window)]

    def torch_module(self) -> Any:
        from ..torch.modules import ScaledDotProductAttention as Module

        return Module(**self.arg_values())


# ---------------------------------------------------------------------- blocks
class _TransformerLayer(Layer):
    """A torch transformer layer, counted as the sum of netcalc layers for its parts."""

    PRIMARY = "nhead"

    d_model = Arg(PosInt, inferred=True, doc="model width (last dim of the input)")
    nhead = Arg(PosInt, doc="attention heads")
    dim_feedforward = Arg(PosInt, 2048, doc="hidden width of the feed-forward network")
    dropout = Arg(Probability, 0.1, doc="dropout (training only)")
    activation = Arg(Choice(("relu", "gelu")), "relu", doc="feed-forward activation")
    layer_norm_eps = Arg(Float(0.0), 1e-5)
    norm_first = Arg(Bool(), False, doc="pre-norm (true) or post-norm (false) residuals")
    bias = Arg(Bool(), True, doc="biases of the linear layers and LayerNorms")

    def validate(self) -> None:
        if self.d_model is not None and self.d_model % self.nhead:
            raise self.fail(f"d_model={self.d_model} is not divisible by nhead={self.nhead}",
                            "nhead")

    def _part(self, type_name: str, name: str, args: dict[str, Any],
              inputs: list[TensorInfo]) -> Layer:
        from . import REGISTRY

        layer = REGISTRY[type_name](args, Ctx(f"{self.ctx.name}.{name}", self.ctx.mark))
        layer.infer(inputs)
        return layer

    def _feed_forward(self, x: TensorInfo) -> list[Layer]:
        act = {"relu": "ReLU", "gelu": "GELU"}[self.activation]
        lin1 = self._part("Linear", "linear1", {"out_features": self.dim_feedforward,
                                                "bias": self.bias}, [x])
        a = self._part(act, "activation", {}, lin1.outputs)
        lin2 = self._part("Linear", "linear2", {"out_features": self.d_model,
                                                "bias": self.bias}, a.outputs)
        return [lin1, a, lin2]

    def _norm(self, name: str, x: TensorInfo) -> Layer:
        return self._part("LayerNorm", name, {"eps": self.layer_norm_eps, "bias": self.bias}, [x])

    def _mha(self, name: str, inputs: list[TensorInfo]) -> Layer:
        return self._part("MultiheadAttention", name, {"num_heads": self.nhead,
                          "bias": self.bias, "dropout": self.dropout}, inputs)

    AUTOCAST = MIXED

    def params(self) -> int:
        return sum(p.params() for p in self.parts)

    def macs(self) -> int:
        return sum(p.macs() for p in self.parts)

    def param_tensors(self) -> int:
        return sum(p.param_tensors() for p in self.parts)

    def largest_param_tensor(self) -> int:
        """The largest parameter tensor of its parts (Adam's CPU temporaries)."""
        return max(prod(w) if (w := p.weight_shape()) else p.largest_param_tensor() or p.params()
                   for p in self.parts)

    def part_grads(self, part: Layer, grads: Grads) -> Grads:
        """Which gradients a part computes. Only two parts read the layer's own inputs
        in torch's forward: the first block's attention (with ``norm_first`` its
        LayerNorm) reads ``src``/``tgt``, and the cross-attention reads ``memory`` as its
        keys and values; their gradients follow the layer's inputs. Every other input
        of a part (linear1's input is norm1's output, the cross-attention's query the
        first block's result) is computed inside the layer from its weights or from a
        graded input: it needs a gradient whenever the layer computes any."""
        own = {id(t): g for t, g in zip(self.inputs, grads.inputs)}
        first = next(p for p in self.parts if isinstance(p, LayerNorm)) if self.norm_first \
            else self.parts[0]
        return Grads(tuple(own[id(t)] if id(t) in own and (part is first or k > 0)
                           else grads.any for k, t in enumerate(part.inputs)), grads.weight)

    def backward_macs(self, grads: Grads) -> int:
        return sum(p.backward_macs(self.part_grads(p, grads)) for p in self.parts)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """torch's layer, block by block (attention, [cross-attention,] feed-forward; each
        ``x + dropout(block(x))`` with a LayerNorm after it, or before the block with
        ``norm_first``); measured on CPU. Each LayerNorm keeps its input (with
        ``norm_first`` the block's input, which for the first block is the layer's own)
        and two float32 statistics per row; each dropout its mask (float on CPU, bool on
        CUDA); the attentions what MultiheadAttention keeps (with dropout in training
        CPU's math path); the feed-forward what its Linears (their inputs for the weight
        gradients, their weights for the input gradients) and its activation keep.
        Under autocast (``AUTOCAST = MIXED``) the blocks' ops run in 16 bits (LOW) and
        the residual stream, the LayerNorms' inputs, keeps the layer input's dtype."""
        n, length, e = self.x
        w, drop = grads.weight, self.dropout > 0
        mask = "bool" if device == "cuda" else LOW
        row, hidden = n * length * e, n * length * self.dim_feedforward
        norm = [saved_extra(n * length, ACC)] * 2  # mean, rstd
        kept: list[Saved] = []
        for b, attn in enumerate(p for p in self.parts if isinstance(p, MultiheadAttention)):
            first_pre = self.norm_first and b == 0
            kept += [saved_input() if first_pre else saved_extra(row)] + norm
            kept += attn.saved(self.part_grads(attn, grads), device)
            kept += [saved_extra(row, mask)] if drop else []
        kept += [saved_extra(row)] + norm  # the feed-forward's LayerNorm input
        kept += [saved_extra(row, LOW)] if w else []  # linear1's input, a LayerNorm's output
        kept += [saved_weight(e * self.dim_feedforward)] * 2  # linear1's, linear2's
        kept.append(saved_extra(hidden, LOW))  # ReLU's result, or GELU's input
        if drop:
            kept += [saved_extra(hidden, mask)] + ([saved_extra(hidden, LOW)] if w else [])
            kept.append(saved_extra(row, mask))
        elif self.activation == "gelu" and w:
            kept.append(saved_extra(hidden, LOW))  # linear2's input, GELU's result
        return kept

    def elementwise_flops(self) -> int:
        residual_adds = self.n_residuals * prod(self.y)
        return sum(p.elementwise_flops() for p in self.parts) + residual_adds

    def receptive_field(self, fields):
        return sequence_field(fields)

    def torch_module(self) -> Any:
        return self.torch_namesake(batch_first=True)


@register
class TransformerEncoderLayer(_TransformerLayer):
    """torch.nn.TransformerEncoderLayer (N, L, d_model) -> same: self-attention + MLP."""

    PARAMS_FORMULA = "4*d*d + 2*d*ff + (bias: 4d + ff + d) + 2 LayerNorms"
    MACS_FORMULA = "N*(4*L*d*d + 2*L*L*d + 2*L*d*ff)"
    MODULES = 10  # self_attn (+ out_proj), linear1, linear2, norm1, norm2, 3 Dropouts
    n_residuals = 2

    def shape(self, x: Shape) -> Shape:
        check_sequence(self, x, "d_model", "input")
        self.check_inferred("d_model", x[2])
        self.validate()
        src = self.inputs[0]
        attn = self._mha("self_attn", [src])
        self.parts = [attn, *self._feed_forward(src), self._norm("norm1", src),
                      self._norm("norm2", src)]
        return x

    def attention_terms(self) -> list[tuple[int, int]]:
        return [(self.x[1], self.d_model)]

    def attention_caches(self) -> list[AttentionCache]:
        """Self-attention without a causal mask: what a KV cache would hold, never cached."""
        return [AttentionCache(0, (0,), 2 * self.d_model, self.x[1], False)]


@register
class TransformerDecoderLayer(_TransformerLayer):
    """torch.nn.TransformerDecoderLayer: inputs (tgt, memory) -> (N, T, d_model)."""

    ARITY = (2, 2)
    MODULES = 14  # two attentions (+ out_proj each), 2 Linear, 3 LayerNorm, 4 Dropout
    PARAMS_FORMULA = "8*d*d + 2*d*ff + (bias: 8d + ff + d) + 3 LayerNorms"
    MACS_FORMULA = "N*(4*T*d*d + 2*T*T*d + 2*T*d*d + 2*S*d*d + 2*T*S*d + 2*T*d*ff)"
    n_residuals = 3

    def shape(self, tgt: Shape, memory: Shape) -> Shape:
        check_sequence(self, tgt, "d_model", "tgt")
        check_sequence(self, memory, "d_model", "memory")
        d = self.check_inferred("d_model", tgt[2])
        self.validate()
        if memory[2] != d:
            raise self.fail(f"memory has {memory[2]} features but d_model={d} "
                            f"(torch's cross-attention takes d_model-wide memory)")
        if memory[0] != tgt[0]:
            raise self.fail(f"tgt and memory batch sizes differ: {tgt[0]}, {memory[0]}")
        t, m = self.inputs
        self.parts = [self._mha("self_attn", [t]), self._mha("multihead_attn", [t, m]),
                      *self._feed_forward(t), self._norm("norm1", t), self._norm("norm2", t),
                      self._norm("norm3", t)]
        return tgt

    def attention_terms(self) -> list[tuple[int, int]]:
        tgt, memory = (t.shape for t in self.inputs)
        return [(tgt[1], self.d_model), (memory[1], self.d_model)]

    def attention_caches(self) -> list[AttentionCache]:
        """The causal self-attention over tgt (input 0) and the cross-attention over
        memory (input 1): each caches its projected keys and values, ``2 * d_model`` per
        key position."""
        tgt, memory = (t.shape for t in self.inputs)
        return [AttentionCache(0, (0,), 2 * self.d_model, tgt[1], True),
                AttentionCache(0, (1,), 2 * self.d_model, memory[1], False)]

