"""torchvision's ``torch.fx.wrap``-ped functions, written as netcalc layers.

``torch.fx`` records a wrapped function as one call, its body unseen. The Swin
Transformer's three (``torchvision.models.swin_transformer``) are written here as the
layers that compute the same thing, as ``specs/swin_t.yaml`` writes them by hand,
rather than traced through: ``shifted_window_attention`` folds the windows into the
batch dim (``reshape(B * num_windows, 49, C)``) and then moves it (qkv's
``permute(2, 0, 3, 1, 4)`` puts it at dim 1), which netcalc's layers, that keep the
batch at dim 0, cannot follow op by op. So the windows are a dim of their own,
``(N, windows, 49, C)``; every matmul and linear is the same product, so MACs are
equal (torchvision's ``_ops``), and the weights sit at the source's module paths
(``features.1.0.attn.qkv`` is the Linear whose weight the function receives), so
``state_dict`` keys are equal.

* ``_get_relative_position_bias(table, index, window_size)``: IndexSelect, Reshape
  (whole: the table has no batch dim), Permute, Reshape to ``(1, heads, N, N)``.
* ``shifted_window_attention(...)``: [Roll], window partition (Reshape, Permute,
  Reshape), qkv Linear, head split (Reshape, Permute, Select x3), ``q * d**-0.5 @ k^T``
  (Scale, Permute, MatMul), + bias, [+ shift mask: Constant], Softmax, [Dropout],
  ``@ v``, head merge, proj Linear, [Dropout], window reverse, [Roll back].
  Swin-V2's cosine attention (``logit_scale``): Normalize q and k instead of the
  Scale, and the scores times ``exp(clamp(logit_scale, max=log 100))`` (Clamp, Exp,
  Mul). Swin-V2 also zeroes the key third of qkv's bias (on a copy, in every forward);
  here qkv is the plain Linear: equal for every torchvision weight, where that third
  is zero (set at init, never trained: the forward's zeroing passes it no gradient).
* ``_patch_merging_pad(x)``: [ZeroPad3d to even sizes], four strided Slices, a Concat.

A map that is not a whole number of windows is padded (ZeroPad3d of the channel-last
``(N, H, W, C)``, as F.pad) and cut back after (Slices), as torchvision does.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .trace import Held, Op, Ref, Unsupported, leaf_args, leaf_type

PREFIX = "torchvision.models.swin_transformer."


def _linear(t, weight: Any, bias: Any, x: Ref, scope: str) -> Ref:
    """F.linear(x, module.weight, module.bias) of an nn.Linear: that Linear, at its path."""
    if not isinstance(weight, Held):
        raise Unsupported(f"{scope}: F.linear with a computed weight")
    owner = weight.target.rpartition(".")[0]
    module = t.root.get_submodule(owner)
    if leaf_type(module) != "Linear" or weight.target != f"{owner}.weight" or \
            (bias is not None and getattr(bias, "target", None) != f"{owner}.bias"):
        raise Unsupported(f"{scope}: F.linear with weights that are not one nn.Linear's")
    params = sum(p.numel() for p in module.parameters())
    t.taken.update(h for h in (weight, bias) if h is not None)
    return t.emit(Op(t.unique(owner), "Linear", leaf_args(module, "Linear"), [x], [], params,
                     module=True), scope)


def relative_position_bias(t, node, scope: str, args: list, kwargs: dict, result: Any) -> Ref:
    table, index, window = _bind(args, kwargs, ["relative_position_bias_table",
                                                "relative_position_index", "window_size"])
    n = window[0] * window[1]
    heads = result.shape[1]
    rows = t.emit(Op(t.unique(f"{scope}.getitem"), "IndexSelect", {"dim": 0},
                     [t.use(table), t.use(index)], []), scope)
    grid = t.emit(Op(t.unique(f"{scope}.view"), "Reshape", {"shape": [n, n, heads],
                                                             "batch": False}, [rows], []), scope)
    first = t.emit(Op(t.unique(f"{scope}.permute"), "Permute", {"dims": [2, 0, 1]}, [grid], []),
                   scope)
    return t.emit(Op(t.unique(f"{scope}.unsqueeze"), "Reshape",
                     {"shape": [1, heads, n, n], "batch": False}, [first],
                     [tuple(result.shape)]), scope)


def shifted_window_attention(t, node, scope: str, args: list, kwargs: dict, result: Any) -> Ref:
    names = ["input", "qkv_weight", "proj_weight", "relative_position_bias", "window_size",
             "num_heads", "shift_size", "attention_dropout", "dropout", "qkv_bias", "proj_bias",
             "logit_scale", "training"]
    b = dict(zip(names, _bind(args, kwargs, names, attention_dropout=0.0, dropout=0.0,
                              qkv_bias=None, proj_bias=None, logit_scale=None, training=True)))
    x = b["input"]
    _, height, width, dim = t.shapes[node.args[0]].shape
    ws, heads = list(b["window_size"]), b["num_heads"]
    pad_r, pad_b = (ws[1] - width % ws[1]) % ws[1], (ws[0] - height % ws[0]) % ws[0]
    padded_h, padded_w = height + pad_b, width + pad_r
    shift = list(b["shift_size"])
    shift = [0 if ws[0] >= padded_h else shift[0], 0 if ws[1] >= padded_w else shift[1]]
    gh, gw = padded_h // ws[0], padded_w // ws[1]
    windows, n, hd = gh * gw, ws[0] * ws[1], dim // heads

    def add(name: str, kind: str, layer_args: dict, inputs: list) -> Ref:
        return t.emit(Op(t.unique(f"{scope}.{name}"), kind, layer_args, inputs, []), scope)

    if pad_r or pad_b:  # F.pad of (N, H, W, C) to whole windows
        x = add("pad", "ZeroPad3d", {"padding": [0, 0, 0, pad_r, 0, pad_b]}, [x])
    if sum(shift) > 0:
        x = add("roll", "Roll", {"shifts": [-shift[0], -shift[1]], "dims": [1, 2]}, [x])
    x = add("view", "Reshape", {"shape": [gh, ws[0], gw, ws[1], dim]}, [x])
    x = add("permute", "Permute", {"dims": [0, 1, 3, 2, 4, 5]}, [x])
    x = add("reshape", "Reshape", {"shape": [windows, n, dim]}, [x])     # (N, windows, n, C)
    qkv = _linear(t, b["qkv_weight"], b["qkv_bias"], x, scope)
    qkv = add("reshape", "Reshape", {"shape": [windows, n, 3, heads, hd]}, [qkv])
    qkv = add("permute", "Permute", {"dims": [0, 3, 1, 4, 2, 5]}, [qkv])  # (N, 3, w, h, n, d)
    q, k, v = (add("getitem", "Select", {"dim": 1, "index": i}, [qkv]) for i in range(3))
    if b["logit_scale"] is None:
        q = add("mul", "Scale", {"factor": hd ** -0.5}, [q])
    else:  # Swin-V2's cosine attention
        q = add("normalize", "Normalize", {"dim": -1}, [q])
        k = add("normalize", "Normalize", {"dim": -1}, [k])
    k = add("transpose", "Permute", {"dims": [0, 1, 2, 4, 3]}, [k])
    attn = add("matmul", "MatMul", {}, [q, k])                            # (N, w, h, n, n)
    if b["logit_scale"] is not None:  # times exp(min(logit_scale, log 100)), per head
        scale = add("clamp", "Clamp", {"max": math.log(100.0)}, [t.use(b["logit_scale"])])
        scale = add("exp", "Exp", {}, [scale])
        attn = add("mul", "Mul", {}, [attn, scale])
    attn = add("add", "Add", {}, [attn, t.use(b["relative_position_bias"])])
    if sum(shift) > 0:  # the shift mask, made in every forward: a Constant
        mask = add("attn_mask", "Constant", {"shape": [windows, 1, n, n]}, [])
        attn = add("add", "Add", {}, [attn, mask])
    attn = add("softmax", "Softmax", {"dim": -1}, [attn])
    if b["attention_dropout"]:
        attn = add("dropout", "Dropout", {"p": b["attention_dropout"]}, [attn])
    x = add("matmul", "MatMul", {}, [attn, v])                            # (N, w, h, n, d)
    x = add("transpose", "Permute", {"dims": [0, 1, 3, 2, 4]}, [x])
    x = add("reshape", "Reshape", {"shape": [windows, n, dim]}, [x])
    x = _linear(t, b["proj_weight"], b["proj_bias"], x, scope)
    if b["dropout"]:
        x = add("dropout", "Dropout", {"p": b["dropout"]}, [x])
    x = add("view", "Reshape", {"shape": [gh, gw, ws[0], ws[1], dim]}, [x])
    x = add("permute", "Permute", {"dims": [0, 1, 3, 2, 4, 5]}, [x])
    x = add("reshape", "Reshape", {"shape": [padded_h, padded_w, dim]}, [x])
    if sum(shift) > 0:
        x = add("roll", "Roll", {"shifts": shift, "dims": [1, 2]}, [x])
    if pad_b:  # x[:, :H, :W, :]
        x = add("getitem", "Slice", {"dim": 1, "end": height}, [x])
    if pad_r:
        x = add("getitem", "Slice", {"dim": 2, "end": width}, [x])
    return x


def patch_merging_pad(t, node, scope: str, args: list, kwargs: dict, result: Any) -> Ref:
    (x,) = _bind(args, kwargs, ["x"])
    shape = tuple(t.shapes[node.args[0]].shape)
    if shape[-3] % 2 or shape[-2] % 2:  # F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        x = t.emit(Op(t.unique(f"{scope}.pad"), "ZeroPad3d",
                      {"padding": [0, 0, 0, shape[-2] % 2, 0, shape[-3] % 2]}, [x], []), scope)
    rank = len(shape)
    rows = [t.emit(Op(t.unique(f"{scope}.getitem"), "Slice",
                      {"dim": rank - 3, "start": start, "step": 2}, [x], []), scope)
            for start in (0, 1)]
    parts = [t.emit(Op(t.unique(f"{scope}.getitem"), "Slice",  # x0, x1, x2, x3
                       {"dim": rank - 2, "start": start_w, "step": 2}, [rows[start_h]], []),
                    scope)
             for start_h, start_w in ((0, 0), (1, 0), (0, 1), (1, 1))]
    return t.emit(Op(t.unique(f"{scope}.cat"), "Concat", {"dim": -1}, parts,
                     [tuple(result.shape)]), scope)


def _bind(args: list, kwargs: dict, names: list[str], **defaults: Any) -> list[Any]:
    bound = dict(defaults)
    bound.update(zip(names, args))
    bound.update(kwargs)
    missing = [n for n in names if n not in bound]
    if missing:
        raise Unsupported(f"a call without {missing[0]}")
    return [bound[n] for n in names]


WRAPPED: dict[str, Callable[..., Ref]] = {
    PREFIX + "_get_relative_position_bias": relative_position_bias,
    PREFIX + "shifted_window_attention": shifted_window_attention,
    PREFIX + "_patch_merging_pad": patch_merging_pad,
}
