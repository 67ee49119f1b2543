"""Traced layers -> the spec's layer tree, with repeated modules folded into blocks.

Every module on a layer's path is a container (its path segments are the spec's names,
so state_dict keys stay the source's). Each container becomes a block instance; the
instances of one module class with the same structure share one block definition:
argument values that differ between instances become block arguments (equal value
vectors share one argument; an integer multiple of another is written ``${a*4}``).
Consecutive instances of a numbered container (``nn.Sequential``, ``nn.ModuleList``)
that chain into each other become one entry with ``repeat:``; a numbered container
that is nothing but such a run is written in its parent as ``{name: C, B: ..., repeat: n}``.
A container of one parameter-free layer (torchvision's ``Permute`` module) is written
as that layer under the container's name.

Names that are not identifiers (``nn.ModuleDict`` keys such as ``"conv-1"``) are mapped
to identifiers; :attr:`Tree.renamed` keeps the mapping for the written comment.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from typing import Any

from ..layers import REGISTRY
from ..torch_names import RESERVED
from .trace import Op, Ref, Traced, Unsupported

GENERIC = ("Sequential", "ModuleList", "ModuleDict")
REPEAT = "*repeat"  # the key of an entry's repeat count among its argument values
MULTIPLES = range(2, 17)  # an argument k times another is written ${a*k}


@dataclass
class Entry:
    name: str  # local name ('' in a numbered container: the position names it)
    kind: str  # a layer type or a block name
    args: dict[str, Any]
    sources: list[str] | None  # `from:` (None: the default, the previous entry)
    repeat: int | None = None
    tie: str | None = None
    block: "Container | None" = None  # the instance, for a block entry


@dataclass
class Container:
    path: str
    cls: str
    children: list[Any] = field(default_factory=list)  # Op | Container, in order
    inputs: list[Ref] = field(default_factory=list)
    output: Ref | None = None
    entries: list[Entry] = field(default_factory=list)
    numbered: bool = False
    key: Any = None
    block: "BlockDef | None" = None
    values: list[Any] = field(default_factory=list)
    params: int = 0


@dataclass
class BlockDef:
    name: str
    numbered: bool
    inputs: list[str]
    entries: list[Entry]  # with `$arg` / `${...}` in place of the differing values
    args: list[str]
    positions: list[tuple[int, str]]  # (entry index, arg key or "repeat") per value


@dataclass
class Tree:
    entries: list[Entry]
    blocks: list[BlockDef]
    renamed: dict[str, str]
    outputs: list[str] | None




class Folder:
    def __init__(self, traced: Traced):
        _gather(traced)
        self.traced = traced
        self.ops = {o.path: o for o in traced.ops}
        self.uses: dict[Ref, set[str]] = {}
        for o in traced.ops:
            for r in o.inputs:
                self.uses.setdefault(_whole(r), set()).add(o.path)
        for r in traced.outputs:
            self.uses.setdefault(_whole(r), set()).add("<output>")
        self.renamed: dict[str, str] = {}
        self.blocks: list[BlockDef] = []
        self.groups: dict[Any, BlockDef] = {}
        self.block_names: set[str] = set()

    def _produced_in(self, ref: Ref, path: str) -> bool:
        if ref.path in self.traced.inputs:  # a spec input
            return False
        return path == "" or ref.path.startswith(path + ".")

    # ------------------------------------------------------------------ the tree
    def tree(self) -> Tree:
        root = Container("", "")
        for o in self.traced.ops:
            parts = o.path.split(".")
            node = root
            for depth in range(1, len(parts)):
                prefix = ".".join(parts[:depth])
                last = node.children[-1] if node.children else None
                if isinstance(last, Container) and last.path == prefix:
                    node = last
                    continue
                if any(isinstance(c, Container) and c.path == prefix for c in node.children):
                    raise Unsupported(f"module {prefix} is used in pieces between other "
                                      "modules (called twice, or its children called one by one)")
                child = Container(prefix, self._class_name(prefix))
                node.children.append(child)
                node = child
            node.children.append(o)
        self._wire(root)
        for height in range(1, self._height(root) + 1):
            made = len(self.blocks)
            self._fold(root, height)
            for b in self.blocks[made:]:  # every instance known: the arguments
                _parameterise(b)
        self._make_entries(root)
        entries = root.entries
        outputs = None
        outs = self.traced.outputs
        last = root.children[-1] if root.children else None
        last_out = last.output if isinstance(last, Container) else Ref(last.path) if last else None
        if len(outs) != 1 or outs[0] != last_out:
            outputs = [self._global(r) for r in outs]
        return Tree(entries, self.blocks, self.renamed, outputs)

    def _class_name(self, path: str) -> str:
        """The module's class, or for a generic container (Sequential, ModuleList) its
        name in CamelCase (``downsample`` -> ``Downsample``, ``layer2`` -> ``Layer``)."""
        cls = self.traced.scopes.get(path, "Module")
        if cls in GENERIC:
            local = path.rpartition(".")[2].rstrip("0123456789_")
            if local and local.isidentifier():
                return "".join(w[:1].upper() + w[1:] for w in local.split("_"))
        return cls

    def _global(self, ref: Ref) -> str:
        name = ".".join(self._local(ref.path, i) for i in range(ref.path.count(".") + 1))
        return name if ref.index is None else f"{name}:{ref.index}"

    def _local(self, path: str, depth: int) -> str:
        return self.renamed.get(path, path).split(".")[depth]

    def _height(self, c: Container) -> int:
        return 1 + max((self._height(x) for x in c.children if isinstance(x, Container)),
                       default=0)

    def _wire(self, c: Container) -> None:
        """Inputs (refs made outside and used inside, first use first) and the output."""
        made_outside = []
        for child in c.children:
            if isinstance(child, Container):
                self._wire(child)
                used = child.inputs
                c.params += child.params
            else:
                used = list(child.inputs)
                c.params += child.params
            for r in used:
                if not self._produced_in(r, c.path) and r not in made_outside:
                    made_outside.append(r)
        c.inputs = made_outside
        if c.path == "":
            return
        outs = []
        for r, users in self.uses.items():
            if self._produced_in(r, c.path) and any(u == "<output>" or not u.startswith(c.path + ".")
                                               for u in users):
                outs.append(r)
        if len(outs) != 1:
            raise Unsupported(f"module {c.path} ({c.cls}) gives {len(outs)} outputs to the "
                              "rest of the model; a block has one")
        c.output = outs[0]
        names = [self._name_of(x) for x in c.children]
        c.numbered = all(n.isdigit() for n in names) and \
            names == [str(i) for i in range(len(names))]

    def _name_of(self, x: Any) -> str:
        path = x.path
        return path.rpartition(".")[2]

    # ------------------------------------------------------------------ entries
    def _sources(self, c: Container, refs: list[Ref], index: int,
                 local: dict[Ref, str]) -> list[str] | None:
        names = []
        for r in refs:
            whole = _whole(r)
            if whole in local:
                name = local[whole]
            elif r in c.inputs:
                names.append(self._input_name(c, c.inputs.index(r)))
                continue
            else:
                raise Unsupported(f"{c.path or 'the model'}: a value from inside another "
                                  f"module ({r.path}) that is not its output")
            names.append(name if r.index is None else f"{name}:{r.index}")
        default = [local_prev] if (local_prev := local.get(Ref("<prev>"))) else (
            [self._input_name(c, 0)] if c.inputs else None)
        return None if names == default else names

    def _input_name(self, c: Container, k: int) -> str:
        if c.path == "":
            return c.inputs[k].path
        return "input" if k == 0 else f"input_{k}"

    def _make_entries(self, c: Container) -> None:
        local: dict[Ref, str] = {}
        used_names: set[str] = set()
        entries: list[Entry] = []
        for i, child in enumerate(c.children):
            raw = self._name_of(child)
            name = str(len(entries)) if c.numbered else self._identifier(child.path, raw,
                                                                        used_names)
            if isinstance(child, Container):
                refs = child.inputs
                if child.block is None:  # folded into one layer, or one repeated run
                    e = child.entries[0]
                    e = Entry(name, e.kind, e.args, None, e.repeat, e.tie, e.block)
                else:
                    e = Entry(name, child.block.name, dict(zip(child.block.args, child.values)),
                              None, block=child)
                out = child.output
            else:
                refs = child.inputs
                e = Entry(name, child.type, dict(child.args), None, tie=child.tie)
                out = Ref(child.path)
            e.sources = self._sources(c, refs, i, local)
            if REGISTRY.get(e.kind) is not None and REGISTRY[e.kind].ARITY[1] == 0:
                e.sources = None
            entries.append(e)
            local[_whole(out)] = name
            local[Ref("<prev>")] = name
        if c.output is not None and local.get(c.output) != entries[-1].name:
            src = local.get(c.output)
            if src is None:
                raise Unsupported(f"module {c.path} returns a value it does not make")
            entries.append(Entry("out" if not c.numbered else str(len(entries)), "Identity",
                                 {}, [src]))
        if c.numbered:
            entries = _compress(entries)
            for e in entries:
                e.name = ""
        c.entries = entries

    def _identifier(self, path: str, raw: str, used: set[str]) -> str:
        name = raw
        if not name.isidentifier() or keyword.iskeyword(name) or name in RESERVED:
            name = re.sub(r"\W", "_", name)
            if not name or name[0].isdigit() or name in RESERVED or keyword.iskeyword(name):
                name = "m_" + name
            while name in used:
                name += "_"
            self.renamed[path] = path.rpartition(".")[0] + ("." if "." in path else "") + name
        used.add(name)
        return name

    # ------------------------------------------------------------------ folding
    def _fold(self, c: Container, height: int) -> None:
        for child in c.children:
            if isinstance(child, Container):
                self._fold(child, height)
        if c.path == "" or self._height(c) != height:
            return
        self._make_entries(c)
        if len(c.entries) == 1 and c.params == 0 and c.entries[0].sources in (None,) and \
                len(c.inputs) <= 1 and c.entries[0].repeat is None:
            c.block = None  # one parameter-free layer: written as that layer
            return
        if c.numbered and len(c.entries) == 1 and c.entries[0].repeat and \
                c.entries[0].sources is None and len(c.inputs) == 1:
            c.block = None  # a run of one block: `repeat:` in the parent
            return
        key, values = _structure(c)
        c.values = values
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = BlockDef(self._block_name(c.cls), c.numbered,
                                                [self._input_name(c, k)
                                                 for k in range(len(c.inputs))],
                                                c.entries, [], [])
            group.instances = []  # type: ignore[attr-defined]
            self.blocks.append(group)
        group.instances.append(c)  # type: ignore[attr-defined]
        c.block = group

    def _block_name(self, cls: str) -> str:
        base = re.sub(r"\W", "_", cls) or "Block"
        if base in REGISTRY or base[0].isdigit():
            base += "Block"
        name, k = base, 1
        while name in self.block_names:
            k += 1
            name = f"{base}_{k}"
        self.block_names.add(name)
        return name


def _prefixes(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def _gather(traced: Traced) -> None:
    """Make every module's layers contiguous: a parameter-free op that runs between
    two children of a module it is not in (``x = x + blk(x)`` over a ModuleList) moves
    into that module (``blocks.add``); its name holds no state. Anything else between
    them is Unsupported."""
    ops = traced.ops
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, o in enumerate(ops):
        for p in _prefixes(o.path):
            first.setdefault(p, i)
            last[p] = i
    taken = {o.path for o in ops} | set(traced.scopes)
    renamed: dict[str, str] = {}

    def move(o: Op, prefix: str) -> None:
        base = f"{prefix}.{o.path.rpartition('.')[2]}"
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        for old, new in list(renamed.items()):
            if new == o.path:
                renamed[old] = name
        renamed[o.path] = name
        for user in ops:
            user.inputs = [Ref(name, r.index) if r.path == o.path else r for r in user.inputs]
        traced.outputs = [Ref(name, r.index) if r.path == o.path else r for r in traced.outputs]
        o.path = name

    def outputs(prefix: str, upto: int) -> int:
        inside = {o.path for o in ops[:upto + 1] if o.path.startswith(prefix + ".")}
        used = {r.path for o in ops[upto + 1:] for r in o.inputs} | \
            {r.path for r in traced.outputs}
        return len(inside & used)

    for prefix in sorted(first, key=lambda p: p.count(".")):
        end = last[prefix]
        for i in range(first[prefix], end + 1):
            o = ops[i]
            if o.path.startswith(prefix + "."):
                continue
            if o.module or o.params:
                raise Unsupported(f"module {prefix} is used in pieces: {o.path} runs between "
                                  "its children")
            move(o, prefix)
        # `x = x + blk(x)` after the last child: the add belongs with the loop
        while end + 1 < len(ops) and outputs(prefix, end) > 1 and \
                not ops[end + 1].module and not ops[end + 1].params:
            end += 1
            move(ops[end], prefix)


def _whole(r: Ref) -> Ref:
    """The op's value as a whole (its piece ``r.index`` is picked by the reader)."""
    return Ref(r.path)


def _compress(entries: list[Entry]) -> list[Entry]:
    """Runs of equal entries, each taking the previous one's output: one `repeat:`."""
    out: list[Entry] = []
    for e in entries:
        prev = out[-1] if out else None
        if prev is not None and e.sources is None and e.kind == prev.kind and \
                e.args == prev.args and e.tie is None and prev.tie is None and \
                e.kind not in REGISTRY and (e.repeat or 1) == 1 and \
                (e.block is None or prev.block is None or
                 e.block.values == prev.block.values):
            prev.repeat = (prev.repeat or 1) + 1
            continue
        out.append(e)
    return out


def _structure(c: Container) -> tuple[Any, list[dict[str, Any]]]:
    """The key two instances of one block share (arguments left out: they may differ, a
    missing one being its default), and the instance's arguments per entry."""
    shape, values = [], []
    for e in c.entries:
        shape.append((e.name, e.kind, tuple(e.sources or ()), e.repeat is not None, e.tie))
        values.append({**e.args, **({REPEAT: e.repeat} if e.repeat is not None else {})})
    return (c.cls, c.numbered, len(c.inputs), tuple(shape)), values


_MISSING = object()


def _default(kind: str, key: str) -> Any:
    layer = REGISTRY.get(kind)
    if layer is None or key not in layer.args or layer.args[key].required:
        return _MISSING
    return layer.args[key].default


def _parameterise(b: BlockDef) -> None:
    instances = b.instances  # type: ignore[attr-defined]
    entries = [Entry(e.name, e.kind, {}, e.sources, e.repeat, e.tie) for e in b.entries]
    chosen: dict[str, tuple[tuple, str]] = {}  # repr of a vector -> it, its argument
    names: set[str] = set()
    kept = []  # (arg name, vector)
    for i, e in enumerate(entries):
        keys: list[str] = []
        for inst in instances:
            keys += [k for k in inst.values[i] if k not in keys]
        for key in keys:
            default = _default(e.kind, key)
            vec = tuple(inst.values[i].get(key, default) for inst in instances)
            if _MISSING in vec:
                raise Unsupported(f"block {b.name}: argument {key} of {e.name or i} missing")
            if all(v == vec[0] for v in vec):
                value = vec[0]
                if default is not _MISSING and value == default:
                    continue
            elif repr(vec) in chosen:
                value = "$" + chosen[repr(vec)][1]
            else:
                value = _multiple(vec, chosen)
                if value is None:
                    base = "repeats" if key == REPEAT else key
                    base = base if base not in names else f"{base}_{e.name or i}"
                    while base in names or not base.isidentifier():
                        base = "a_" + base.strip("_") if not base.isidentifier() else base + "_"
                    names.add(base)
                    chosen[repr(vec)] = (vec, base)
                    b.args.append(base)
                    kept.append(vec)
                    value = "$" + base
            if key == REPEAT:
                e.repeat = value
            else:
                e.args[key] = value
    b.entries = entries
    for k, inst in enumerate(instances):  # each instance's own values of the arguments
        inst.values = [vec[k] for vec in kept]


def _multiple(vec: tuple, chosen: dict[str, tuple[tuple, str]]) -> str | None:
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in vec):
        return None
    for other, name in chosen.values():
        if len(other) == len(vec) and all(isinstance(v, int) and not isinstance(v, bool) and v
                                           for v in other):
            for k in MULTIPLES:
                if all(a == k * o for a, o in zip(vec, other)):
                    return f"${{{name}*{k}}}"
    return None


def fold(traced: Traced) -> Tree:
    return Folder(traced).tree()


__all__ = ["Entry", "BlockDef", "Tree", "fold", "Op"]
