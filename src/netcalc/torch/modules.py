"""Small generic nn.Modules for layers torch.nn does not have as modules.

Imported only from ``Layer.torch_module`` methods, so the analytic core never
imports torch. Every constructor argument is kept as the attribute of its name:
``netcalc export`` writes the constructor call back from them and inlines the class
(its source, read from this file) so that the exported file stands alone.
"""

from __future__ import annotations

from functools import reduce

import torch
from torch import nn


class Add(nn.Module):
    """Sum of all inputs, with broadcasting."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return reduce(torch.add, xs)


class Mul(nn.Module):
    """Product of all inputs, with broadcasting."""

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return reduce(torch.mul, xs)


class Concat(nn.Module):
    """torch.cat of all inputs along ``dim``."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Reshape(nn.Module):
    """Reshape each sample to ``shape``, keeping the batch dim; ``batch=False``: a
    tensor without a batch dim, to ``shape`` whole."""

    def __init__(self, shape: tuple[int, ...], batch: bool = True):
        super().__init__()
        self.shape = tuple(shape)
        self.batch = batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.batch:
            return x.reshape(self.shape)
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}" + ("" if self.batch else ", batch=False")


class Permute(nn.Module):
    """x.permute(*dims)."""

    def __init__(self, dims: tuple[int, ...]):
        super().__init__()
        self.dims = tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={list(self.dims)}"


class MatMul(nn.Module):
    """torch.matmul of two inputs."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


# ---------------------------------------------------------------- sequence layers
# (netcalc.layers.recurrent and netcalc.layers.attention build these)


class FlatRecurrent(nn.Module):
    """An RNN/LSTM/GRU whose forward returns a flat tuple: (output, h_n) or (output, h_n, c_n)."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        output, state = self.rnn(x)
        if isinstance(state, tuple):  # LSTM: (h_n, c_n)
            return (output, *state)
        return output, state


class AttentionOutput(nn.MultiheadAttention):
    """nn.MultiheadAttention returning only the attention output (need_weights=False).

    One input: self-attention; two: (query, key=value); three: (query, key, value);
    with ``masked`` one more, last: the additive ``attn_mask``. A subclass, not a
    wrapper, so the weights sit at the layer's path as torch names them
    (``self_attention.in_proj_weight``, as torchvision's ViT).
    """

    def __init__(self, *args, masked: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.masked = masked

    def forward(self, *xs):
        mask = xs[-1] if self.masked else None
        qkv = xs[:-1] if self.masked else xs
        query = qkv[0]
        key = qkv[1] if len(qkv) > 1 else query
        value = qkv[2] if len(qkv) > 2 else key
        return super().forward(query, key, value, need_weights=False, attn_mask=mask)[0]


class ScaledDotProductAttention(nn.Module):
    """torch.nn.functional.scaled_dot_product_attention(q, k, v[, attn_mask]) as a module."""

    def __init__(self, is_causal=False, dropout_p=0.0, scale=None, enable_gqa=False,
                 window=None):
        super().__init__()
        self.is_causal, self.dropout_p, self.scale = is_causal, dropout_p, scale
        self.enable_gqa, self.window = enable_gqa, window

    def forward(self, q, k, v, attn_mask=None):
        import torch.nn.functional as F

        kw = {"enable_gqa": True} if self.enable_gqa else {}
        is_causal = self.is_causal
        if self.window or (is_causal and attn_mask is not None):
            # torch has no window, nor a causal mask beside a bias: the band i-window < j
            # <= i (or j <= i) as a mask, folded into the bias as HF's T5 folds it
            i = torch.arange(q.shape[-2], device=q.device)[:, None]
            j = torch.arange(k.shape[-2], device=q.device)[None, :]
            keep = (j <= i) & (j > i - self.window) if self.window else j <= i
            if attn_mask is None:
                attn_mask = keep
            elif attn_mask.dtype == torch.bool:
                attn_mask = attn_mask & keep
            else:
                attn_mask = attn_mask.masked_fill(~keep, float("-inf"))
            is_causal = False
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=self.scale,
            dropout_p=self.dropout_p if self.training else 0.0, **kw)


# ---------------------------------------------------------------- tensors of the model
# (netcalc.layers.tensors builds these)


class LayerNorm2d(nn.LayerNorm):
    """torchvision.models.convnext.LayerNorm2d: layer_norm over the channels of
    (N, C, H, W), channel-last in between (torchvision's forward)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class HeldTensor(nn.Module):
    """A Parameter or buffer stored at the layer's own path (``encoder.pos_embedding``).

    The builder registers ``value`` on the enclosing container under the layer's last
    name and :meth:`bind` s this module to it; the module itself stays outside the
    module tree (a child would add a ``.value`` level to every key). Calling it returns
    the tensor, and its parameters or buffers are that one tensor, so per-layer counts,
    hooks and freezing work as for any layer.
    """

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.__dict__["value"] = value  # until bound: not registered here

    def bind(self, owner: nn.Module, name: str) -> None:
        if isinstance(self.value, nn.Parameter):
            owner.register_parameter(name, self.value)
        else:
            owner.register_buffer(name, self.value)
        # plain attributes: the owner is not a child, the tensor is read afresh (.to()
        # replaces buffers)
        self.__dict__.update(owner=owner, name=name)
        del self.__dict__["value"]

    def forward(self) -> torch.Tensor:
        t = getattr(self.owner, self.name)
        # without autograd, detached: a view of a leaf made under no_grad still says it
        # requires grad but has no gradient function, which FlopCounterMode's module
        # tracker refuses
        return t if torch.is_grad_enabled() else t.detach()

    def named_parameters(self, prefix: str = "", recurse: bool = True,
                         remove_duplicate: bool = True):
        t = getattr(self.owner, self.name)
        return iter([(prefix + self.name, t)] if isinstance(t, nn.Parameter) else [])

    def named_buffers(self, prefix: str = "", recurse: bool = True,
                      remove_duplicate: bool = True):
        t = getattr(self.owner, self.name)
        return iter([] if isinstance(t, nn.Parameter) else [(prefix + self.name, t)])

    def extra_repr(self) -> str:
        return f"{self.name}: {list(self().shape)}"


class ConstantTensor(nn.Module):
    """Ones of a fixed shape made in every forward, on the model's device and float
    dtype (read from an empty, non-persistent buffer, so nothing is counted or saved)."""

    def __init__(self, shape: tuple[int, ...], int64: bool = False):
        super().__init__()
        self.shape, self.int64 = tuple(shape), int64
        self.register_buffer("anchor", torch.empty(0), persistent=False)

    def forward(self) -> torch.Tensor:
        dtype = torch.int64 if self.int64 else self.anchor.dtype
        return torch.ones(self.shape, dtype=dtype, device=self.anchor.device)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


# ---------------------------------------------------------------- parts of a tensor
# (netcalc.layers.select builds these)


class Chunk(nn.Module):
    """torch.chunk(x, chunks, dim): a tuple of views."""

    def __init__(self, chunks: int, dim: int):
        super().__init__()
        self.chunks, self.dim = chunks, dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.chunk(x, self.chunks, self.dim)

    def extra_repr(self) -> str:
        return f"chunks={self.chunks}, dim={self.dim}"


class Split(nn.Module):
    """torch.split(x, split_size_or_sections, dim): a tuple of views."""

    def __init__(self, split_size_or_sections: int | list[int], dim: int):
        super().__init__()
        self.split_size_or_sections, self.dim = split_size_or_sections, dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.split(x, self.split_size_or_sections, self.dim)

    def extra_repr(self) -> str:
        return f"{self.split_size_or_sections}, dim={self.dim}"


class Slice(nn.Module):
    """x[..., start:end:step] along ``dim`` (a non-negative dim)."""

    def __init__(self, dim: int, start: int, end: int | None, step: int):
        super().__init__()
        self.dim, self.start, self.end, self.step = dim, start, end, step
        self.index = (slice(None),) * dim + (slice(start, end, step),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[self.index]

    def extra_repr(self) -> str:
        return str(self.index[-1])


class Select(nn.Module):
    """x.select(dim, index)."""

    def __init__(self, dim: int, index: int):
        super().__init__()
        self.dim, self.index = dim, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.select(self.dim, self.index)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, index={self.index}"


class Gather(nn.Module):
    """torch.gather(x, dim, index)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.gather(x, self.dim, index)


class IndexSelect(nn.Module):
    """torch.index_select(table, dim, index)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return torch.index_select(table, self.dim, index)


class Roll(nn.Module):
    """torch.roll(x, shifts, dims)."""

    def __init__(self, shifts: tuple[int, ...], dims: tuple[int, ...]):
        super().__init__()
        self.shifts, self.dims = tuple(shifts), tuple(dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.roll(x, self.shifts, self.dims)

    def extra_repr(self) -> str:
        return f"shifts={list(self.shifts)}, dims={list(self.dims)}"


class Expand(nn.Module):
    """x.expand(n, *size) with n the batch of ``ref`` (default: of x)."""

    def __init__(self, size: tuple[int, ...]):
        super().__init__()
        self.size = tuple(size)

    def forward(self, x: torch.Tensor, ref: torch.Tensor | None = None) -> torch.Tensor:
        return x.expand((x if ref is None else ref).shape[0], *self.size)

    def extra_repr(self) -> str:
        return f"size=[n, {', '.join(map(str, self.size))}]"


# ---------------------------------------------------------------- reductions, point-wise
# (netcalc.layers.reduce and netcalc.layers.pointwise build these)


class Reduce(nn.Module):
    """torch.sum / torch.mean / torch.amax over ``dim``."""

    def __init__(self, op: str, dim: tuple[int, ...], keepdim: bool):
        super().__init__()
        self.op, self.dim, self.keepdim = op, tuple(dim), keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(torch, self.op)(x, dim=self.dim, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"{self.op}, dim={list(self.dim)}, keepdim={self.keepdim}"


class Exp(nn.Module):
    """torch.exp(x)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class Clamp(nn.Module):
    """torch.clamp(x, min, max)."""

    def __init__(self, min: float | None = None, max: float | None = None):
        super().__init__()
        self.min, self.max = min, max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, min=self.min, max=self.max)

    def extra_repr(self) -> str:
        return f"min={self.min}, max={self.max}"


class Normalize(nn.Module):
    """torch.nn.functional.normalize(x, p, dim, eps)."""

    def __init__(self, p: float = 2.0, dim: int = 1, eps: float = 1e-12):
        super().__init__()
        self.p, self.dim, self.eps = p, dim, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, p=self.p, dim=self.dim, eps=self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p}, dim={self.dim}, eps={self.eps}"


class Scale(nn.Module):
    """x * factor."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth (torchvision.ops.stochastic_depth's body)."""

    def __init__(self, p: float, mode: str):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class Einsum(nn.Module):
    """torch.einsum(equation, *inputs)."""

    def __init__(self, equation: str):
        super().__init__()
        self.equation = equation

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.einsum(self.equation, *xs)

    def extra_repr(self) -> str:
        return repr(self.equation)


class RotaryEmbedding(nn.Module):
    """Hugging Face's rotary embedding (LlamaRotaryEmbedding + apply_rotary_pos_emb) of
    one tensor (N, *, L, D), positions 0..L-1; the first ``dim`` features rotated."""

    def __init__(self, dim: int, base: float):
        super().__init__()
        self.dim, self.base = dim, base
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.arange(x.shape[-2], device=x.device, dtype=torch.float32)
        freqs = t[:, None] * self.inv_freq.float()[None, :]  # an outer product, not a matmul
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
        rot, rest = x[..., :self.dim], x[..., self.dim:]
        x1, x2 = rot[..., :self.dim // 2], rot[..., self.dim // 2:]
        rotated = rot * cos + torch.cat((-x2, x1), dim=-1) * sin
        return torch.cat((rotated, rest), dim=-1) if rest.shape[-1] else rotated

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


# ---------------------------------------------------------------- mixture of experts
class MixtureOfExperts(nn.Module):
    """Mixtral's sparse MoE block (netcalc.layers.moe): router ``gate``, ``experts.i``.

    Deterministic routing: each token's ``top_k`` experts are those of largest router
    logit, ties going to the lower expert index (a stable descending sort), weighted by
    the softmax renormalised over them. The routed copies are grouped by expert (a
    stable sort: token order within an expert), each expert runs once on its tokens
    (experts without tokens are not called), and the weighted results are added back
    per token: exactly ``top_k`` expert calls per token. ``tokens_per_expert`` holds
    the counts of the last forward (for hooks and tests). On the meta device, which
    holds no values, the ``top_k * T`` routed copies are dealt out to the experts in
    turn: the same counts in total.
    """

    def __init__(self, d: int, top_k: int, experts: list[nn.Module], router_bias: bool):
        super().__init__()
        self.top_k = top_k
        self.gate = nn.Linear(d, len(experts), bias=router_bias)
        self.experts = nn.ModuleList(experts)
        self.tokens_per_expert: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, e = self.top_k, len(self.experts)
        h = x.reshape(-1, x.shape[-1])
        logits = self.gate(h)
        # float32 routing weights for 16-bit models, as Mixtral's (float64 stays float64)
        probs = torch.softmax(logits, -1, dtype=torch.promote_types(logits.dtype, torch.float32))
        chosen = torch.sort(logits.detach(), dim=-1, descending=True, stable=True)[1][:, :k]
        top = probs.gather(-1, chosen.contiguous())
        weights = top / top.sum(-1, keepdim=True)
        flat = chosen.reshape(-1)
        order = torch.sort(flat, stable=True)[1]  # routed copies grouped by expert
        token = order // k
        if flat.is_meta:  # no values to route by: the copies dealt out in turn
            counts = [len(range(i, flat.numel(), e)) for i in range(e)]
        else:
            counts = torch.bincount(flat, minlength=e).tolist()
        self.tokens_per_expert = counts
        routed = h[token]
        outs = [expert(part) for expert, part, n in zip(self.experts, routed.split(counts), counts)
                if n]
        ys = torch.cat(outs) * weights.reshape(-1)[order].to(h.dtype)[:, None]
        return torch.zeros_like(h).index_add_(0, token, ys).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}"


class OpaqueModule(nn.Module):
    """An Opaque layer (netcalc.layers.opaque): holds ``n_params`` parameters and
    ``n_buffers`` buffer elements and returns zeros of ``(N, *shape)``; it stands in for
    an op netcalc could not express, so its values mean nothing, only its sizes do."""

    def __init__(self, shape: tuple[int, ...], n_params: int = 0, n_buffers: int = 0):
        super().__init__()
        self.shape, self.n_params, self.n_buffers = tuple(shape), n_params, n_buffers
        self.weight = nn.Parameter(torch.zeros(n_params)) if n_params else None
        self.register_buffer("buffer", torch.zeros(n_buffers) if n_buffers else None)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        x = xs[0]
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return torch.zeros((x.shape[0], *self.shape), dtype=dtype, device=x.device)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"
