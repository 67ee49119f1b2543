"""Einsum (torch.einsum) over any number of inputs: ``{Einsum: "bhid,bhjd->bhij", from: [q, k]}``.

The equation is parsed as torch parses it: spaces are ignored, labels are letters
(upper and lower case are different labels), ``...`` stands for the dims no label
names (aligned on the right and broadcast across operands), and without ``->`` the
output is ``...`` followed by the labels that occur once, in alphabetical order
(upper case first). Dims with the same label must have equal sizes or size 1
(broadcast). The shape rule follows: each output label gets its size.

Counts follow what torch runs, so they are what torch's counters see. torch contracts
the operands left to right, one pair at a time; before each pair it sums away the
labels only one of the two holds that nothing later needs (the output or a later
operand). A pair that then shares a summed label is one batched matrix product
(``bmm``), of ``prod(sizes of every label the pair holds)`` MACs: for two operands with
a contraction, the product of all index sizes, e.g. ``bhid,bhjd->bhij`` is
``b*h*i*j*d``. A pair without a shared summed label is an element-wise product (outer
products, ``ij,ij->ij``): ``numel`` of its result in element-wise FLOPs and no MAC, as
FlopCounterMode counts nothing for it. The sums are element-wise FLOPs (``numel(in) -
numel(out)`` adds). Size-1 dims count as absent, as in torch (they broadcast).

Backward: each bmm costs its MACs again for each of its two operands that needs a
gradient; it keeps each operand whose partner needs one (the inputs themselves, or
the intermediate results and summed operands it made).

Receptive field: an einsum mixes whole rows and columns like MatMul: GLOBAL when an
input has a field, else None.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

from ..args import Arg, ArgType
from ..rf import GLOBAL
from .base import (LOWER, Grads, Parameterless, Saved, Shape, register, saved_extra,
                   saved_input)

ELLIPSIS = "..."


@dataclass(frozen=True)
class Equation(ArgType):
    """An einsum equation: letters, at most one ``...`` per term, commas, an optional ``->``."""

    name = "einsum equation"

    def check(self, value: Any, nd: int) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected an einsum equation such as 'ij,jk->ik', got {value!r}")
        text = value.replace(" ", "")
        lhs, arrow, rhs = text.partition("->")
        for term in [*lhs.split(","), *([rhs] if arrow else [])]:
            rest = term.replace(ELLIPSIS, "", 1)
            if not all(c.isascii() and c.isalpha() for c in rest):
                raise ValueError(f"{value!r}: a term is letters with at most one '...', got "
                                 f"{term!r}")
        if arrow and len(set(rhs.replace(ELLIPSIS, ""))) != len(rhs.replace(ELLIPSIS, "")):
            raise ValueError(f"{value!r}: an output label occurs twice")
        return text

    def schema(self) -> dict:
        return {"type": "string", "pattern": r"^[A-Za-z., ]*(->[A-Za-z. ]*)?$"}


def _terms(term: str, rank: int) -> list[str]:
    """The label of each dim of an operand of ``rank`` dims: ``...`` dims are named
    ``.k`` counting from the end (broadcast dims align on the right)."""
    head, dots, tail = term.partition(ELLIPSIS)
    n = rank - len(head) - len(tail)
    if (n < 0) or (n > 0 and not dots):
        return []
    return [*head, *(f".{n - j}" for j in range(n)), *tail]


@dataclass(frozen=True)
class Step:
    """One pair torch multiplies: labels of each side after its sums, the summed-away
    labels' cost, the MACs of the pair (0 for an element-wise product) and its FLOPs."""

    left: frozenset[str]
    right: frozenset[str]
    result: frozenset[str]
    macs: int
    flops: int  # element-wise: the sums before the pair, or the product without MACs
    left_summed: bool
    right_summed: bool


@register
class Einsum(Parameterless):
    """torch.einsum(equation, *inputs): products and sums over labelled dims."""

    PRIMARY = "equation"
    ARITY = (1, None)
    MACS_FORMULA = ("sum over torch's left-to-right pairs that contract a label: "
                    "prod(sizes of the pair's labels)")
    equation = Arg(Equation(), doc="as torch.einsum: 'bhid,bhjd->bhij', '...ij,...jk', ...")

    AUTOCAST = LOWER  # autocast lists einsum with the 16-bit ops

    def shape(self, *xs: Shape) -> Shape:
        lhs, arrow, rhs = self.equation.partition("->")
        terms = lhs.split(",")
        if len(terms) != len(xs):
            raise self.fail(f"the equation has {len(terms)} operand(s), {len(xs)} input(s) "
                            "are given", "equation")
        sizes: dict[str, int] = {}
        self.operands: list[frozenset[str]] = []
        for i, (term, x) in enumerate(zip(terms, xs), start=1):
            labels = _terms(term, len(x))
            if not labels and x:
                raise self.fail(f"operand {i} {term!r} does not fit input {i} {list(x)}",
                                "equation")
            for label, n in zip(labels, x):
                m = sizes.get(label, 1)
                if n != m and 1 not in (n, m):
                    what = "..." if label.startswith(".") else repr(label)
                    raise self.fail(f"label {what} has size {m} and {n} (input {i} {list(x)}): "
                                    "sizes of a label must match or be 1", "equation")
                sizes[label] = max(n, m)
            self.operands.append(frozenset(k for k, n in zip(labels, x) if n > 1))
        dots = sorted((k for k in sizes if k.startswith(".")), key=lambda k: -int(k[1:]))
        if arrow:
            head, has_dots, tail = rhs.partition(ELLIPSIS)
            out = [*head, *(dots if has_dots else []), *tail]
            unknown = [c for c in out if c not in sizes]
            if unknown:
                raise self.fail(f"output label {unknown[0]!r} is in no operand", "equation")
        else:
            counts = {c: lhs.count(c) for c in sizes if not c.startswith(".")}
            out = [*dots, *sorted(c for c, n in counts.items() if n == 1)]
        self.sizes, self.out_labels = sizes, out
        if not out:
            raise self.fail("the output is a scalar, without a batch dim: keep a label "
                            "of the batch in the output", "equation")
        self.steps = self._plan(frozenset(out))
        return tuple(sizes[c] for c in out)

    def _size(self, labels: frozenset[str]) -> int:
        return prod(self.sizes[c] for c in labels)

    def _plan(self, out: frozenset[str]) -> list[Step]:
        """torch's pairs, left to right (see the module docstring)."""
        ops = self.operands
        steps = []
        left = ops[0]
        for i in range(1, len(ops) + (len(ops) == 1)):
            right = ops[i] if i < len(ops) else frozenset()
            needed = out.union(*ops[i + 1:])
            summed = (left | right) - needed
            shared = summed & left & right
            l_alone, r_alone = (left - right) & summed, (right - left) & summed
            flops = (self._size(left) - self._size(left - l_alone)
                     + self._size(right) - self._size(right - r_alone)) if right else \
                self._size(left) - self._size(left - summed)
            pair = (left | right) - l_alone - r_alone
            macs = self._size(pair) if shared else 0
            if right and not shared:
                flops += self._size(pair)
            steps.append(Step(left - l_alone, right - r_alone, pair - summed, macs, flops,
                              bool(l_alone), bool(r_alone)))
            left = pair - summed
        return steps

    def macs(self) -> int:
        return sum(s.macs for s in self.steps)

    def elementwise_flops(self) -> int:
        return sum(s.flops for s in self.steps)

    def backward_macs(self, grads: Grads) -> int:
        total = 0
        for i, s in enumerate(self.steps, start=1):
            total += s.macs * (any(grads.inputs[:i]) + grads.inputs[min(i, len(grads.inputs) - 1)])
        return total

    def saved(self, grads: Grads, device: str) -> list[Saved]:
        """Each pair keeps each side whose partner needs a gradient: an input, or a tensor
        einsum made (an intermediate result, a summed operand)."""
        kept: list[Saved] = []
        for i, s in enumerate(self.steps, start=1):
            if i >= len(self.inputs):
                break
            if grads.inputs[i]:  # the left side is needed for the right's gradient
                kept.append(saved_input(0) if i == 1 and not s.left_summed
                            else saved_extra(self._size(s.left)))
            if any(grads.inputs[:i]):
                kept.append(saved_extra(self._size(s.right)) if s.right_summed
                            else saved_input(i))
        return kept

    def receptive_field(self, fields):
        return GLOBAL if any(f is not None for f in fields) else None

    def torch_module(self) -> Any:
        from ..torch.modules import Einsum as TorchEinsum

        return TorchEinsum(self.equation)
