"""Spec -> layer graph: blocks and repeats expanded, names given, references resolved.

Names are hierarchical and stable like torch module paths: an entry's ``name``, else
``<type>_<index>`` (lower-case type, index in its list); a repeated entry's
instances are ``name.0``, ``name.1``...; a block instance's layers nest under the
instance name (``layer1.0.conv1``). A ``numbered`` block names its layers by position
instead, as nn.Sequential does (``0``, ``1``, ...; repeats continue the count).

``repeat: 0`` removes the entry: its name then refers to its first input, so a block
argument can switch a layer off.

``from`` refers to earlier entries of the same list, to ``input`` (or the block's
named inputs), or by dotted path to any earlier layer (``layer3.1.relu``); ``x:h_n``
picks a named output. Only earlier layers can be named, so the graph has no cycles.

A layer argument that names a block (MixtureOfExperts' ``expert``: ``Layer.BLOCK_ARGS``)
gets that block expanded into a graph of its own, its input sized by the layer when it
infers its shape; its layers count against the limit below like any block's.

Expansion is bounded: every block instance and repeat is counted against
``max_nodes`` before it is expanded further, and blocks nest at most
``MAX_BLOCK_DEPTH`` deep (expansion recurses once per level).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from .args import INT64_MAX
from .errors import Mark, SpecError, did_you_mean
from .expr import ExprError, substitute
from .layers import REGISTRY
from .layers.base import FLOAT, MAX_NUMEL, Ctx, Layer, TensorInfo
from .perf import paused_gc
from .spec import BlockDef, Entry, InputSpec, Spec, parse_entry
from .yamlsafe import LList, LMap

MAX_NODES = 20_000  # layers after expansion: see README, "Limits"
MAX_BLOCK_DEPTH = 50


class Ref(NamedTuple):  # a NamedTuple: hashed per edge in dict lookups, C-fast
    """One output of a node, or a graph input (node = input name, out = 0)."""

    node: str
    out: int = 0

    def __str__(self) -> str:
        return self.node if self.out == 0 else f"{self.node}:{self.out}"


@dataclass
class Node:
    """One layer instance of the expanded graph, with its inputs and how the spec marks it."""

    name: str
    layer: Layer
    sources: list[Ref]
    mark: Mark
    tie: str | None = None
    trainable: bool = True
    sparsity: float | None = None
    #: the sparsity came from an enclosing block instance: it skips unweighted layers
    sparsity_inherited: bool = False

    @property
    def type(self) -> str:
        return type(self.layer).__name__


@dataclass
class Graph:
    """The expanded spec: inputs, nodes in execution order, outputs, containers."""

    spec: Spec
    inputs: dict[str, TensorInfo]
    nodes: list[Node]
    outputs: list[tuple[str, Ref]]
    #: containers (block instances and repeat groups): name -> label such as "Bottleneck"
    containers: dict[str, str] = field(default_factory=dict)
    by_name: dict[str, Node] = field(default_factory=dict)
    #: block instances: name -> the refs passed as the block's inputs, in its order
    block_sources: dict[str, list[Ref]] = field(default_factory=dict)
    #: block instances: name -> the block's argument values
    block_args: dict[str, dict[str, Any]] = field(default_factory=dict)


def _subst(value: Any, env: dict[str, Any], mark: Mark) -> Any:
    """Substitute block arguments through a located YAML tree, keeping marks."""
    try:
        if isinstance(value, LMap):
            out = LMap()
            out.mark, out.key_marks, out.value_marks = value.mark, {}, {}
            for k, v in value.items():
                key = _subst_key(k, env, value.key_mark(k))
                if key in out:
                    raise SpecError(f"key {k!r} repeats {key!r}", value.key_mark(k))
                out[key] = _subst(v, env, value.value_mark(k))
                out.key_marks[key], out.value_marks[key] = value.key_mark(k), value.value_mark(k)
            return out
        if isinstance(value, LList):
            items = LList(_subst(v, env, value.item_mark(i)) for i, v in enumerate(value))
            items.mark, items.marks = value.mark, value.marks
            return items
        return substitute(value, env)
    except ExprError as exc:
        raise SpecError(str(exc), mark) from None


def _subst_key(key: Any, env: dict[str, Any], mark: Mark) -> Any:
    """A mapping key may be a block argument too (``- {$act: ~}``, like ``- $act``):
    it must come out a string, as every key of a spec is."""
    new = substitute(key, env)
    if not isinstance(new, str):
        raise SpecError(f"key {key!r} is {new!r}: a key must be a string", mark)
    return new


class _Builder:
    def __init__(self, spec: Spec, batch: int, input_shapes: dict[str, tuple[int, ...]] | None,
                 max_nodes: int):
        self.spec = spec
        self.max_nodes = max_nodes
        self.weighted = ""  # how a layer type weighing more than 1 counts, for the message
        self.types = set(REGISTRY) | set(spec.blocks)
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.paths: dict[str, Ref] = {}  # every nameable path -> its output
        self.containers: dict[str, str] = {}
        self.block_sources: dict[str, list[Ref]] = {}
        self.block_args: dict[str, dict[str, Any]] = {}
        self.inputs = _input_tensors(spec, batch, input_shapes)
        for name in self.inputs:
            self.paths[name] = Ref(name)
        self.block_stack: list[str] = []
        self.parsed: dict[tuple[int, int], Entry] = {}  # see entry()
        self.sparsity: float | None = None  # of the innermost block instance that sets one

    # -------------------------------------------------------------- references
    def resolve(self, ref: str, mark: Mark, scope: dict[str, Ref], prefix: str) -> Ref:
        base, _, out = ref.partition(":")
        target = scope.get(base) or self.paths.get(prefix + base) or self.paths.get(base)
        if target is None:
            known = list(scope) + [p for p in self.paths if "." not in p]
            later = any(self._declared_later(base))
            why = " (a later layer: `from` may only name earlier ones)" if later else ""
            raise SpecError(f"unknown layer {base!r} in `from`{why}{did_you_mean(base, known)}",
                            mark)
        if not out:
            return target
        node = self.by_name.get(target.node)
        names = node.layer.output_names() if node else ("output",)
        if out.isdigit() and (names is None or int(out) < len(names)):
            return Ref(target.node, int(out))  # a count known later is checked by the analysis
        if names is not None and out in names:
            return Ref(target.node, names.index(out))
        listed = "0, 1, ..." if names is None else ", ".join(names)
        raise SpecError(f"{base!r} has no output {out!r} (outputs: {listed})", mark)

    def _declared_later(self, base: str):
        for item in self.spec.layers:
            if isinstance(item, LMap) and item.get("name") == base:
                yield True

    # -------------------------------------------------------------- expansion
    def scope(self, entries: LList, prefix: str, env: dict[str, Any] | None,
              scope: dict[str, Ref], first: list[Ref] | None, numbered: bool = False) -> Ref:
        prev = first
        last: Ref | None = None
        position = 0  # in a numbered block: the name of the next child
        for i in range(len(entries)):
            entry = self.entry(entries, i, env)
            mark = entries.item_mark(i)
            if numbered and entry.name is not None:
                raise SpecError("the layers of a numbered block are named by their position "
                                "(0, 1, ...): remove `name`", mark)
            local = entry.name or f"{entry.type.lower()}_{i}"
            if local in scope and not numbered:
                raise SpecError(f"duplicate layer name {local!r}", mark)
            if entry.sources is not None:
                sources = [self.resolve(r, m, scope, prefix) for r, m in entry.sources]
            elif entry.type in REGISTRY and REGISTRY[entry.type].ARITY[1] == 0:
                sources = []  # a tensor of its own (Parameter, Buffer, Constant)
            elif prev is None:
                raise SpecError(f"the spec has several inputs ({', '.join(self.inputs)}): "
                                "say which this layer takes with `from`", mark)
            else:
                sources = prev[:1]
            full = prefix + local
            if entry.repeat == 0:  # switched off: its first input passes through
                if not sources:
                    raise SpecError("repeat: 0 leaves nothing to pass through (the entry "
                                    "has no input)", mark)
                out = sources[0]
            elif numbered:  # each instance is a child, repeats continuing the count
                out = None
                for _ in range(entry.repeat or 1):
                    local = str(position)
                    position += 1
                    out = scope[local] = self.paths[prefix + local] = \
                        self.instance(entry, prefix + local, sources)
                    sources = [out, *sources[1:]]
            elif entry.repeat is None:
                out = self.instance(entry, full, sources)
            else:
                self.containers[full] = f"{entry.type}×{entry.repeat}"
                out = None
                for r in range(entry.repeat):
                    out = self.instance(entry, f"{full}.{r}", sources)
                    sources = [out, *sources[1:]]
            assert out is not None
            if not numbered:
                scope[local] = out
                self.paths[full] = out
            prev = [out]
            last = out
        assert last is not None
        return last

    def entry(self, entries: LList, i: int, env: dict[str, Any] | None) -> Entry:
        """Entry ``i`` of a list, its block arguments substituted.

        The spec's top-level entries (nothing to substitute) are parsed once, for both
        the count and the expansion; block bodies are parsed per instance and not kept
        (their substituted trees would hold memory that a refused spec never needs).
        """
        mark = entries.item_mark(i)
        if env is not None:
            return parse_entry(_subst(entries[i], env, mark), mark, self.types, in_block=True)
        key = (id(entries), i)
        entry = self.parsed.get(key)
        if entry is None:
            entry = self.parsed[key] = parse_entry(entries[i], mark, self.types)
        return entry

    def count(self, entries: LList, env: dict[str, Any] | None, seen: dict) -> int:
        """Layers an entry list expands to, computed before anything is built; a layer
        type counts as the modules torch builds for it (``Layer.MODULES``: a
        TransformerDecoderLayer is 14, its cost is that of its parts).

        Memoised per (block, arguments), so nested repeats cost one visit per
        distinct block instance; stops as soon as the count passes ``max_nodes``.
        """
        total = 0
        for i in range(len(entries)):
            entry = self.entry(entries, i, env)
            mark = entries.item_mark(i)
            block = self.spec.blocks.get(entry.type)
            each = REGISTRY[entry.type].MODULES if entry.type in REGISTRY else 1
            if each > 1:
                self.weighted = f" (a {entry.type} counts as {each}: the modules torch builds)"
            if block is not None:
                each = self._count_block(block, entry, entry.type_mark, seen)
            else:  # a layer whose argument names a block (an expert): its graph counts too
                for name, args, bmark in _block_args(entry):
                    if name in self.spec.blocks and (args is None or isinstance(args, LMap)):
                        inner = Entry(name, args, bmark, bmark)
                        each += self._count_block(self.spec.blocks[name], inner, bmark, seen)
            total += each * (entry.repeat or 1)
            if total > self.max_nodes:
                raise SpecError(f"the spec expands to more than {self.max_nodes:,} layers"
                                f"{self.weighted}", mark)
        return total

    def _count_block(self, block: BlockDef, entry: Entry, mark: Mark, seen: dict) -> int:
        if block.name in self.block_stack:
            raise SpecError(f"block {block.name!r} uses itself "
                            f"({' -> '.join(self.block_stack + [block.name])})", mark)
        benv = _block_env(block, entry)
        key = (block.name, repr(sorted(benv.items())))
        if key not in seen:
            if len(self.block_stack) >= MAX_BLOCK_DEPTH:
                raise SpecError(f"blocks nested more than {MAX_BLOCK_DEPTH} deep", mark)
            self.block_stack.append(block.name)
            try:
                seen[key] = self.count(block.layers, benv, seen)
            finally:
                self.block_stack.pop()
        return seen[key]

    def block_graph(self, value: Any, mark: Mark, what: str) -> Graph:
        """A graph of its own for a one-input block (an expert): ``value`` is its name
        (arguments at their defaults) or ``{name: {argument: value}}``; its input's size
        is set by the layer that uses it (placeholder ``[1]`` until then)."""
        name, args = (value, None) if isinstance(value, str) else next(iter(value.items()))
        block = self.spec.blocks.get(name)
        if block is None:
            kind = " (a layer type: name a block of the spec's `blocks:`)" \
                if name in REGISTRY else did_you_mean(name, self.spec.blocks)
            raise SpecError(f"{what}: unknown block {name!r}{kind}", mark)
        if len(block.inputs) != 1:
            raise SpecError(f"{what}: block {name} takes {len(block.inputs)} inputs "
                            f"({', '.join(block.inputs)}); it must take one", mark)
        inp = block.inputs[0]
        sub = replace(self.spec, name=name, layers=block.layers, outputs=None,
                      inputs={inp: InputSpec(inp, (1,), FLOAT, mark)})
        b = _Builder(sub, 1, None, self.max_nodes)
        b.block_stack = [*self.block_stack, name]
        env = _block_env(block, Entry(name, args, mark, mark))
        last = b.scope(block.layers, "", env, dict(b.paths), [Ref(inp)], block.numbered)
        return Graph(sub, b.inputs, b.nodes, [("output", last)], b.containers, b.by_name,
                     b.block_sources, b.block_args)

    def instance(self, entry: Entry, full: str, sources: list[Ref]) -> Ref:
        block = self.spec.blocks.get(entry.type)
        if block is not None:
            return self.block(block, entry, full, sources)
        args, marks = _layer_args(REGISTRY[entry.type], entry)
        layer = REGISTRY[entry.type](args, Ctx(full, entry.type_mark, marks))
        for arg in layer.BLOCK_ARGS:
            layer.bind_block(arg, self.block_graph(getattr(layer, arg),
                                                   marks.get(arg, entry.type_mark),
                                                   f"{full}: argument {arg}"))
        tie = None
        if entry.tie is not None:
            tname, tmark = entry.tie
            tref = self.paths.get(tname)
            if tref is None or tref.node not in self.by_name:
                raise SpecError(f"tie: unknown layer {tname!r}", tmark)
            tie = tref.node
        inherited = entry.sparsity is None and self.sparsity is not None
        node = Node(full, layer, sources, entry.mark, tie, entry.trainable,
                    self.sparsity if inherited else entry.sparsity, inherited)
        self.nodes.append(node)
        self.by_name[full] = node
        return Ref(full)

    def block(self, block: BlockDef, entry: Entry, full: str, sources: list[Ref]) -> Ref:
        if len(sources) != len(block.inputs):
            raise SpecError(f"block {block.name} takes {len(block.inputs)} input(s) "
                            f"({', '.join(block.inputs)}), got {len(sources)}", entry.mark)
        env = _block_env(block, entry)
        self.containers[full] = block.name
        self.block_sources[full] = list(sources)
        self.block_args[full] = env
        scope = dict(zip(block.inputs, sources))
        self.block_stack.append(block.name)
        outer = self.sparsity
        if entry.sparsity is not None:  # every weighted layer inside, unless it sets its own
            self.sparsity = entry.sparsity
        try:
            out = self.scope(block.layers, full + ".", env, scope, sources, block.numbered)
        finally:
            self.block_stack.pop()
            self.sparsity = outer
        return out


MAX_ARG_TEXT = 256  # characters of a string block argument
MAX_ARG_ITEMS = 16  # items of a list block argument


def _arg_value(block: BlockDef, name: str, value: Any, mark: Mark) -> Any:
    """A block argument is a scalar or a short flat list: its copies and the memo keys of
    every instance stay small."""
    items = value if isinstance(value, list) else [value]
    if (len(items) > MAX_ARG_ITEMS
            or any(isinstance(v, (dict, list)) or isinstance(v, str) and len(v) > MAX_ARG_TEXT
                   for v in items)):
        raise SpecError(f"block {block.name} argument {name!r}: a number, a string of at most "
                        f"{MAX_ARG_TEXT} characters, or a flat list of at most {MAX_ARG_ITEMS} "
                        "of them", mark)
    return value


def _block_env(block: BlockDef, entry: Entry) -> dict[str, Any]:
    given = entry.args
    if given is None:
        given = {}
    elif not isinstance(given, LMap):  # a scalar fills the block's first argument
        if not block.args:
            raise SpecError(f"block {block.name} takes no arguments", entry.type_mark)
        given = {next(iter(block.args)): given}
    marks = given.value_marks if isinstance(given, LMap) else {}
    env: dict[str, Any] = {}
    for k, v in given.items():
        if k not in block.args:
            raise SpecError(f"block {block.name} has no argument {k!r}"
                            f"{did_you_mean(str(k), block.args)}", marks.get(k, entry.type_mark))
        env[k] = _arg_value(block, k, v, marks.get(k, entry.type_mark))
    for k, default in block.args.items():
        if k not in env:
            if default is None:
                raise SpecError(f"block {block.name} needs argument {k!r}", entry.type_mark)
            env[k] = _arg_value(block, k, default, block.arg_marks.get(k, block.mark))
    return env


def _block_args(entry: Entry) -> list[tuple[str, Any, Mark]]:
    """The blocks an entry of a registered type names in its ``BLOCK_ARGS``: (name,
    arguments or None, mark), for ``Block`` or ``{Block: {argument: value}}``."""
    cls = REGISTRY.get(entry.type)
    if cls is None or not cls.BLOCK_ARGS or not isinstance(entry.args, LMap):
        return []
    out = []
    for a in cls.BLOCK_ARGS:
        value, mark = entry.args.get(a), entry.args.value_mark(a)
        if isinstance(value, str):
            out.append((value, None, mark))
        elif isinstance(value, LMap) and len(value) == 1:
            name, args = next(iter(value.items()))
            out.append((name, args, mark))
    return out


def _layer_args(cls: type[Layer], entry: Entry) -> tuple[dict[str, Any], dict[str, Mark]]:
    a = entry.args
    if a is None:
        return {}, {}
    if isinstance(a, LMap):  # its value marks, shared: a layer's context only reads them
        return dict(a), a.value_marks
    if cls.PRIMARY is None:
        raise SpecError(f"{cls.__name__} takes no primary argument; "
                        f"use a mapping ({', '.join(cls.args) or 'no arguments'})", entry.type_mark)
    return {cls.PRIMARY: a}, {cls.PRIMARY: entry.type_mark}


def _input_tensors(spec: Spec, batch: int,
                   input_shapes: dict[str, tuple[int, ...]] | None) -> dict[str, TensorInfo]:
    """The spec's inputs at ``batch`` (``input_shapes``: per-sample shapes given by
    ``--input``), or a located error."""
    if not 1 <= batch <= INT64_MAX:
        raise SpecError(f"must be an int from 1 to 2**63 - 1, got {batch}", file="--batch")
    inputs = {}
    for name, inp in spec.inputs.items():
        shape = (input_shapes or {}).get(name, inp.shape)
        t = inputs[name] = TensorInfo((batch, *shape), inp.dtype)
        if t.numel > MAX_NUMEL:  # blame --input when it gave the shape
            given = name in (input_shapes or {})
            raise SpecError(f"input {name!r} {[batch, *shape]} has more than 2**60 elements "
                            "(torch cannot size its storage)", None if given else inp.mark,
                            "--input" if given else None)
    return inputs


def rebatched(graph: Graph, batch: int) -> Graph:
    """``graph`` at another batch size without expanding the spec again (``check`` asks
    for an expectation's batch and a budget's). Each layer is copied: an analysis records
    its inputs in its layer, and the first graph's report still holds its own. A graph
    whose layers hold a block's graph (experts) is built again."""
    shapes = {k: t.shape[1:] for k, t in graph.inputs.items()}
    if any(n.layer.BLOCK_ARGS for n in graph.nodes):
        return build(graph.spec, batch, shapes)
    try:
        inputs = _input_tensors(graph.spec, batch, shapes)
    except SpecError as err:
        raise err.located(graph.spec.file) from None
    nodes = [Node(n.name, copy.copy(n.layer), n.sources, n.mark, n.tie, n.trainable,
                  n.sparsity, n.sparsity_inherited) for n in graph.nodes]
    return Graph(graph.spec, inputs, nodes, graph.outputs, graph.containers,
                 {n.name: n for n in nodes}, graph.block_sources, graph.block_args)


@paused_gc()
def build(spec: Spec, batch: int = 1, input_shapes: dict[str, tuple[int, ...]] | None = None,
          max_nodes: int = MAX_NODES) -> Graph:
    """Expand a parsed spec into a graph of layer nodes."""
    try:
        b = _Builder(spec, batch, input_shapes, max_nodes)
        b.count(spec.layers, None, {})
        first = [Ref(n) for n in b.inputs] if len(b.inputs) == 1 else None
        last = b.scope(spec.layers, "", None, dict(b.paths), first)
        if spec.outputs is None:
            outputs = [(last.node, last)]
        else:
            outputs = [(r, b.resolve(r, m, {}, "")) for r, m in spec.outputs]
    except SpecError as err:
        raise err.located(spec.file) from None
    return Graph(spec, b.inputs, b.nodes, outputs, b.containers, b.by_name, b.block_sources,
                 b.block_args)
