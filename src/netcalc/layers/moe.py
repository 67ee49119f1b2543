"""Mixture of experts: a router picks ``top_k`` of ``num_experts`` expert blocks per token.

``MixtureOfExperts: {num_experts, top_k, expert: BLOCK, router_bias: false}`` acts on
the last dim of ``(N, *, d)`` and returns the same shape. ``expert`` names a block of
the spec's ``blocks:`` that takes one input ``(tokens, d)`` and returns that shape (a
SwiGLU MLP: Mixtral's ``w1``, ``w3``, ``w2``), by name (its arguments at their defaults)
or as ``{name: {argument: value}}``. As
Hugging Face's Mixtral checkpoints name them (``block_sparse_moe.gate.weight``,
``block_sparse_moe.experts.0.w1.weight``), the router is a Linear ``gate`` (d ->
num_experts) and the experts are ``experts.0`` ... ``experts.{num_experts-1}``.

Routing (Mixtral's, Jiang et al. 2024, "Mixtral of Experts", eq. 1-2): with
``T = prod(*)`` tokens (batch included), logits ``= gate(x)`` ``(T, E)``; each token
goes to the ``top_k`` experts of largest logit, ties broken towards the lower expert
index (a stable descending sort), with the weights ``softmax(logits)`` renormalised over
the chosen ``top_k`` (= softmax over the chosen logits); ``y = sum_k w_k expert_k(x)``.
Every token makes exactly ``top_k`` expert calls, so the counts below do not depend on
which experts the router picks (the experts are token-wise):

    params        = d*E (+ E if router_bias) + E * params(expert)
    active_params = d*E (+ E if router_bias) + top_k * params(expert)   (what one token uses)
    MACs          = T*d*E + MACs(expert on top_k*T tokens)
    element-wise  = (T*E if router_bias) + 5*T*E (softmax) + 2*top_k*T (renormalise:
                    sum, divide) + 2*top_k*T*d (scale by w, add into y)
                    + element-wise FLOPs(expert on top_k*T tokens)

The expert's counts are its block's, analysed on ``(top_k*T, d)``: as if all routed
tokens went through one expert, which for token-wise experts is the sum over the
experts of what each one computes on the tokens routed to it. The report shows one row
per MixtureOfExperts with ``num_experts``, ``top_k``, ``router_params``,
``params_per_expert`` and the row's ``active_params`` (the table's summary says them in a
line); its activations are its output (like torch's transformer layers).

Training (what :class:`netcalc.torch.modules.MixtureOfExperts`' step keeps, measured on
CPU): the router's input (the layer's own, for the weight gradient), the softmax
(float32, float64 for float64), the chosen expert indices, the chosen weights and
their sum (float32), the routed copy of the tokens (top_k*T*d), the token and slot
indices of the routed copies (int64), what the expert's layers keep on top_k*T tokens,
the experts' concatenated outputs, the weight per routed copy and their product (which
``index_add_`` keeps). Backward MACs: the
router's Linear and the expert's layers, each by its own rule.
"""

from __future__ import annotations

import re
from math import prod
from typing import Any

from ..args import Arg, ArgType, Bool, PosInt
from .activation import Softmax
from .base import (ACC, ACT, EXTRA, INPUT, MAX_NUMEL, WEIGHT, Ctx, Grads, Layer, Saved,
                   Shape, TensorInfo, register, saved_extra, saved_input)
from .select import mixed

MAX_EXPERTS = 20_000  # one module each in torch: as many as a spec may have layers


_BLOCK = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class BlockRef(ArgType):
    """A block of the spec's ``blocks:``: its name (arguments at their defaults) or
    ``{name: {argument: value}}``; the graph builder checks the block and its arguments."""

    name = "block"

    def check(self, value: Any, nd: int) -> Any:
        name = value if isinstance(value, str) else \
            next(iter(value)) if isinstance(value, dict) and len(value) == 1 else None
        args = None if isinstance(value, str) or name is None else value[name]
        if not isinstance(name, str) or not _BLOCK.fullmatch(name) or \
                not (args is None or isinstance(args, dict)):
            shown = repr(value) if len(repr(value)) <= 80 else f"{repr(value)[:77]}..."
            raise ValueError("expected a block of `blocks:`, by name or as {name: {argument: "
                             "value}}, got " + shown)
        return value

    def schema(self) -> dict:
        return {"anyOf": [{"type": "string"},
                          {"type": "object",  # one key: the block's name
                           "additionalProperties": {"anyOf": [{"type": "object"},
                                                              {"type": "null"}]}}]}


@register
class MixtureOfExperts(Layer):
    """Top-k routed experts (N, *, d) -> (N, *, d): a router `gate` and `experts.0` ..."""

    PRIMARY = None
    BLOCK_ARGS = ("expert",)
    # itself, gate and the experts' ModuleList; the expert block's layers count once more
    # against graph.MAX_NODES (the analysis builds one graph for all experts), and the
    # torch builder refuses more than MAX_NODES expert layers in all (torch_module)
    MODULES = 3
    PARAMS_FORMULA = "d*E (+E if router_bias) + E * params(expert)"
    MACS_FORMULA = "T*d*E + MACs(expert on top_k*T tokens), T = tokens"

    num_experts = Arg(PosInt, doc=f"experts E (at most {MAX_EXPERTS:,})")
    top_k = Arg(PosInt, doc="experts each token is routed to (1 to num_experts)")
    expert = Arg(BlockRef(), doc="a block of `blocks:` taking and returning (tokens, d): "
                 "its name, or {name: {argument: value}}")
    router_bias = Arg(Bool(), False, doc="bias of the router Linear `gate`")

    def validate(self) -> None:
        if self.num_experts > MAX_EXPERTS:
            raise self.fail(f"num_experts={self.num_experts:,}: at most {MAX_EXPERTS:,}",
                            "num_experts")
        if self.top_k > self.num_experts:
            raise self.fail(f"top_k={self.top_k} is more than num_experts={self.num_experts}",
                            "top_k")

    def bind_block(self, arg: str, graph: Any) -> None:
        self.expert_graph = graph
        self.expert_name = graph.spec.name

    # ------------------------------------------------------------------ shapes
    def shape(self, x: Shape) -> Shape:
        from ..analysis import analyze_graph
        from . import REGISTRY

        if len(x) < 2:
            raise self.fail(f"MixtureOfExperts needs an (N, *, d) input, got {list(x)}")
        d, tokens = x[-1], prod(x[:-1])
        routed = (self.top_k * tokens, d)
        if prod(routed) > MAX_NUMEL:
            raise self.fail(f"{self.top_k} x {tokens:,} routed tokens of {d:,} features: "
                            "more than 2**60 elements")
        graph = self.expert_graph
        graph.inputs[next(iter(graph.inputs))] = TensorInfo(routed)
        self.expert_report = analyze_graph(graph)
        out = self.expert_report.outputs["output"]
        if out != routed:
            raise self.fail(f"expert block {self.expert_name} returns {list(out)} for an input "
                            f"{list(routed)}: an expert must keep its input's shape", "expert")
        self.router = REGISTRY["Linear"]({"out_features": self.num_experts,
                                          "bias": self.router_bias},
                                         Ctx(f"{self.ctx.name}.gate", self.ctx.mark))
        self.router.infer([TensorInfo((tokens, d))])
        self.parts: list[Layer] = [self.router, *(n.layer for n in graph.nodes)]
        return x

    @property
    def tokens(self) -> int:
        return prod(self.x[:-1])

    # ------------------------------------------------------------------ counts
    def params(self) -> int:
        return self.router.params() + self.num_experts * self.expert_report.totals.params

    def active_params(self) -> int:
        return self.router.params() + self.top_k * self.expert_report.totals.params

    def buffers(self) -> int:
        return self.num_experts * self.expert_report.totals.buffers

    def int_buffers(self) -> int:
        return self.num_experts * sum(p.int_buffers() for p in self.parts[1:])

    def param_tensors(self) -> int:
        return self.router.param_tensors() + self.num_experts * sum(
            p.param_tensors() for p in self.parts[1:])

    def largest_param_tensor(self) -> int:
        """The router's weight or the largest tensor of one expert."""
        return max(prod(w) if (w := p.weight_shape()) else p.largest_param_tensor() or p.params()
                   for p in self.parts)

    def macs(self) -> int:
        return self.router.macs() + self.expert_report.totals.macs

    def elementwise_flops(self) -> int:
        t, k, e = self.tokens, self.top_k, self.num_experts
        expert = self.expert_report.totals
        return (self.router.elementwise_flops() + Softmax.FLOPS * t * e + 2 * k * t
                + 2 * k * t * self.x[-1] + expert.flops - 2 * expert.macs)

    def extras(self) -> dict[str, Any]:
        return {"num_experts": self.num_experts, "top_k": self.top_k,
                "router_params": self.router.params(),
                "params_per_expert": self.expert_report.totals.params}

    def receptive_field(self, fields):
        """Token-wise: like a Linear over the last dim (see linear.py)."""
        return mixed(fields[0], self.x, {len(self.x) - 1})

    # ------------------------------------------------------------------ training
    def part_grads(self, part: Layer, grads: Grads) -> Grads:
        """The router and the expert layers reading the routed tokens need an input
        gradient as the layer's input does; the expert's later layers read values that
        descend from its weights (or from that input)."""
        inp = next(iter(self.expert_graph.inputs))
        if part is self.router:
            return Grads((grads.inputs[0],), grads.weight)
        node = next(n for n in self.expert_graph.nodes if n.layer is part)
        return Grads(tuple(grads.inputs[0] if s.node == inp else grads.any
                           for s in node.sources), grads.weight)

    def backward_macs(self, grads: Grads) -> int:
        return sum(p.backward_macs(self.part_grads(p, grads)) for p in self.parts)

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        t, k, d = self.tokens, self.top_k, self.x[-1]
        kept = [saved_input()] if grads.weight else []  # the router's input, a view
        kept += [saved_extra(t * self.num_experts, ACC),  # softmax
                 saved_extra(t * k, "int64"),  # the chosen experts (gather's index)
                 saved_extra(t * k, ACC), saved_extra(t, ACC),  # chosen weights / their sum
                 saved_extra(k * t, "int64"),  # the token of each routed copy
                 saved_extra(k * t, "int64")]  # the (token, slot) order of the weights
        kept += self._expert_saved(grads, device)
        # the experts' outputs and the weight per routed copy (the product's operands),
        # and the product, which index_add keeps (derivatives.yaml: expand_as(source))
        return kept + [saved_extra(k * t * d), saved_extra(k * t), saved_extra(k * t * d)]

    def _expert_saved(self, grads: Grads, device: str) -> list[Saved]:
        """What the expert's layers keep, one entry per storage: the routed tokens
        (its input), each layer output once (a view is its input's storage)."""
        inp = next(iter(self.expert_graph.inputs))
        storage: dict[tuple, tuple] = {(inp, 0): (inp, 0)}
        sizes = {(inp, 0): self.expert_graph.inputs[inp].numel}
        kept: dict[tuple, Saved] = {}
        for n in self.expert_graph.nodes:
            layer = n.layer
            for i, t in enumerate(layer.outputs):
                key = (n.name, i)
                storage[key] = storage[tuple(n.sources[0])] \
                    if layer.VIEW and i == 0 and n.sources else key
                sizes[key] = t.numel
            g = self.part_grads(layer, grads)
            if not g.any:
                continue
            for s in layer.saved(g, device):
                if s.kind == WEIGHT:  # the expert's own parameter: not an activation (its
                    continue  # 16-bit cast under autocast is not counted for experts yet)
                if s.kind == EXTRA:
                    kept[(n.name, "extra", len(kept))] = s
                    continue
                ref = tuple(n.sources[s.index]) if s.kind == INPUT else (n.name, s.index)
                key = storage[ref]
                kept.setdefault(key, saved_extra(sizes[key], ACT))
        return list(kept.values())

    # ------------------------------------------------------------------ torch
    def torch_module(self) -> Any:
        from ..graph import MAX_NODES
        from ..torch.build import NetcalcModule
        from ..torch.modules import MixtureOfExperts as Module

        built = self.num_experts * len(self.expert_graph.nodes)
        if built > MAX_NODES:
            raise self.fail(f"{self.num_experts:,} experts of {len(self.expert_graph.nodes):,} "
                            f"layers: torch would build {built:,} layers (at most "
                            f"{MAX_NODES:,})", "num_experts")

        experts = [NetcalcModule(self.expert_graph) for _ in range(self.num_experts)]
        return Module(self.x[-1], self.top_k, experts, self.router_bias)
