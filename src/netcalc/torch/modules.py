"""Small generic nn.Modules for layers torch.nn does not have as modules.

Imported only from ``Layer.torch_module`` methods, so the analytic core never
imports torch.
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
    """Reshape each sample to ``shape``, keeping the batch dim."""

    def __init__(self, shape: tuple[int, ...]):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.shape)

    def extra_repr(self) -> str:
        return f"shape={list(self.shape)}"


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


class AttentionOutput(nn.Module):
    """nn.MultiheadAttention returning only the attention output (need_weights=False).

    One input: self-attention; two: (query, key=value); three: (query, key, value).
    """

    def __init__(self, mha: nn.Module):
        super().__init__()
        self.attn = mha

    def forward(self, query, key=None, value=None):
        key = query if key is None else key
        value = key if value is None else value
        return self.attn(query, key, value, need_weights=False)[0]


class ScaledDotProductAttention(nn.Module):
    """torch.nn.functional.scaled_dot_product_attention(q, k, v) as a module."""

    def __init__(self, is_causal=False, dropout_p=0.0, scale=None, enable_gqa=False):
        super().__init__()
        self.is_causal, self.dropout_p, self.scale = is_causal, dropout_p, scale
        self.enable_gqa = enable_gqa

    def forward(self, q, k, v):
        import torch.nn.functional as F

        kw = {"enable_gqa": True} if self.enable_gqa else {}
        return F.scaled_dot_product_attention(
            q, k, v, is_causal=self.is_causal, scale=self.scale,
            dropout_p=self.dropout_p if self.training else 0.0, **kw)
