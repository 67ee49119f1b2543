"""Graph -> Python source of its forward pass (no torch needed to write it).

Two products, one way of writing a forward:

* :func:`builder_forward`: the flat forward the torch builder compiles for
  :class:`netcalc.torch.build.NetcalcModule`: one straight-line function calling each
  layer's module in graph order (``conv1 = _d0['conv1'](x)``), ``del`` after a tensor's
  last use (so inference memory follows the report's peak), checkpoint regions as
  nested functions run under ``torch.utils.checkpoint``. No per-node interpreter.
* :func:`module_source`: a readable, stand-alone PyTorch file (``netcalc export``): one
  ``nn.Module`` class per block (instances that differ only in argument values share
  one class whose ``__init__`` takes those values), submodules created in ``__init__``
  under the spec's names, a straight-line ``forward``; chains named ``0, 1, ...``
  (repeat groups, numbered blocks) become ``nn.Sequential``, so ``state_dict`` keys are
  the report's paths (``layer1.0.conv1.weight``, as torchvision's).

Names are identifiers already (the spec refuses others), but a name may be a Python
keyword or shadow a name the code uses: locals are renamed (``class`` -> ``class_``),
attributes that are not plain identifiers are reached with ``getattr(self, '...')``,
and every string put into the code goes through ``repr``.
"""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

from .errors import SpecError
from .graph import Graph, Node, Ref

__all__ = ["Call", "builder_forward", "module_source", "py_literal"]

#: globals the generated code uses: no local may take these names
_GLOBALS = {"self", "torch", "nn", "F", "reduce", "checkpoint", "getattr", "setattr"}


# ============================================================================ names
def _plain(name: str) -> bool:
    """Usable as an attribute or local as is."""
    return name.isidentifier() and not keyword.iskeyword(name)


class Namer:
    """Distinct, valid local names: ``layer1.0.relu`` -> ``layer1_0_relu``; a keyword or
    a taken name gets ``_`` (then a number)."""

    def __init__(self, taken: Sequence[str] = ()):
        self.taken = set(_GLOBALS) | set(taken)

    def new(self, wanted: str) -> str:
        base = re.sub(r"\W", "_", wanted) or "v"
        if base[0].isdigit():
            base = "v" + base if not base.startswith("_") else base
            base = "_" + base if base[0].isdigit() else base
        if not _plain(base) or base in self.taken:
            base += "_"
        name, k = base, 2
        while name in self.taken:
            name, k = f"{base}{k}", k + 1
        self.taken.add(name)
        return name


def py_literal(value: Any) -> str:
    """Python source of a constructor argument value (repr of plain data only)."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") \
            else f"float({str(value)!r})"
    if isinstance(value, tuple):
        items = ", ".join(py_literal(v) for v in value)
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, list):
        return "[" + ", ".join(py_literal(v) for v in value) + "]"
    raise TypeError(f"no literal for a {type(value).__name__}")


# ============================================================================ the graph
@dataclass
class _Flow:
    """Where each value is made and read, by node index."""

    index: dict[str, int]  # node name -> index; graph inputs -> -1
    readers: dict[Ref, list[int]]  # ref -> node indices reading it (the end: len(nodes))

    @classmethod
    def of(cls, graph: Graph) -> "_Flow":
        index = {name: -1 for name in graph.inputs}
        readers: dict[Ref, list[int]] = {}
        for i, node in enumerate(graph.nodes):
            index[node.name] = i
            for s in node.sources:
                readers.setdefault(s, []).append(i)
        for _, ref in graph.outputs:
            readers.setdefault(ref, []).append(len(graph.nodes))
        return cls(index, readers)

    def made(self, ref: Ref) -> int:
        return self.index[ref.node]


def _refs_of(node: Node) -> list[Ref]:
    return [Ref(node.name, k) for k in range(max(len(node.layer.outputs), 1))]


def _fixed_single(node: Node) -> bool:
    names = node.layer.output_names()
    return names is not None and len(names) == 1 and len(node.layer.outputs) <= 1


def _out_names(node: Node, base: str) -> list[str]:
    names = node.layer.output_names()
    refs = _refs_of(node)
    if names is None or len(names) < len(refs):
        return [base] + [f"{base}_{k}" for k in range(1, len(refs))]
    return [base] + [f"{base}_{n}" for n in names[1:len(refs)]]


# ============================================================================ builder
def builder_forward(graph: Graph, regions: Sequence[str] = ()) -> str:
    """Source of ``def forward(self, <inputs>)`` returning the tuple of the spec's outputs.

    ``self`` is a NetcalcModule: layers are read from ``self._modules`` chains (fresh on
    every call, so a replaced submodule is used) and held tensors from ``self._held``.
    Each region (a block instance or container path) must be a run of consecutive
    layers; it runs as one nested function under ``checkpoint(..., use_reentrant=False)``.
    The namespace must provide ``checkpoint`` and ``_outs(result, n, name)``.
    """
    nodes = graph.nodes
    flow = _Flow.of(graph)
    # the function's own names first: _d<k> (module dicts), _h, _region<i>, _outs
    namer = Namer(["_h", "_outs", *(f"_d{k}" for k in range(len(nodes) + 1)),
                   *(f"_region{i}" for i in range(len(nodes)))])
    local: dict[Ref, str] = {Ref(n): namer.new(n) for n in graph.inputs}
    for node in nodes:
        for ref, want in zip(_refs_of(node), _out_names(node, node.name)):
            local[ref] = namer.new(want)
    # the module dicts of every container, bound once per call
    lines = [f"def forward(self{''.join(', ' + local[Ref(n)] for n in graph.inputs)}):"]
    dicts: dict[str, str] = {"": "_d0"}
    lines.append("    _d0 = self._modules")
    if any(n.layer.HELD for n in nodes):
        lines.append("    _h = self._held")
    for node in nodes:
        parts = node.name.split(".")[:-1]
        for i in range(len(parts)):
            path = ".".join(parts[: i + 1])
            if path not in dicts:
                parent = dicts[".".join(parts[:i])]
                dicts[path] = f"_d{len(dicts)}"
                lines.append(f"    {dicts[path]} = {parent}[{parts[i]!r}]._modules")
    spans = _spans(graph, regions)
    returned = {r for _, r in graph.outputs}
    i = 0
    while i < len(nodes):
        end = spans.get(i)
        if end is None:
            lines += _leaf(nodes[i], local, dicts, "    ")
            lines += _dels(i, graph, flow, local, "    ", len(nodes), returned)
            i += 1
            continue
        span = range(i, end)
        ins = _inputs(span, graph, flow)
        outs = _outputs(span, graph, flow)
        fn = f"_region{i}"
        args = ", ".join(local[r] for r in ins)
        lines.append(f"    def {fn}({args}):")
        for j in span:
            lines += _leaf(nodes[j], local, dicts, "        ")
            lines += _dels(j, graph, flow, local, "        ", end, set(outs))
        lines.append(f"        return ({''.join(local[r] + ', ' for r in outs)})")
        call = f"checkpoint({fn}, {args + ', ' if args else ''}use_reentrant=False)"
        lines.append(f"    ({''.join(local[r] + ', ' for r in outs)}) = {call}" if outs
                     else f"    {call}")
        dead = [local[r] for r in ins if r not in returned and max(flow.readers[r]) < end]
        if dead:
            lines.append(f"    del {', '.join(dead)}")
        i = end
    lines.append(f"    return ({''.join(local[r] + ', ' for _, r in graph.outputs)})")
    return "\n".join(lines) + "\n"


def _spans(graph: Graph, regions: Sequence[str]) -> dict[int, int]:
    spans: dict[int, int] = {}
    for prefix in regions:
        inside = [i for i, n in enumerate(graph.nodes) if n.name.startswith(prefix + ".")]
        if not inside or inside != list(range(inside[0], inside[-1] + 1)):
            raise SpecError(f"checkpoint: {prefix!r} is not a run of consecutive layers")
        if any(a <= inside[0] < b or inside[0] <= a <= inside[-1] for a, b in spans.items()):
            raise SpecError(f"checkpoint: {prefix!r} overlaps another region")
        spans[inside[0]] = inside[-1] + 1
    return spans


def _inputs(span: range, graph: Graph, flow: _Flow) -> list[Ref]:
    """Values the nodes of ``span`` read that are made before it, by first use."""
    out: dict[Ref, None] = {}
    for j in span:
        for s in graph.nodes[j].sources:
            if flow.made(s) < span.start:
                out.setdefault(s)
    return list(out)


def _outputs(span: range, graph: Graph, flow: _Flow) -> list[Ref]:
    """Values made in ``span`` read after it (or returned by the model)."""
    return [r for j in span for r in _refs_of(graph.nodes[j])
            if any(k >= span.stop for k in flow.readers.get(r, ()))]


def _leaf(node: Node, local: dict[Ref, str], dicts: dict[str, str], pad: str) -> list[str]:
    parent, _, last = node.name.rpartition(".")
    mod = f"_h[{node.name!r}]" if node.layer.HELD else f"{dicts[parent]}[{last!r}]"
    call = f"{mod}({', '.join(local[s] for s in node.sources)})"
    refs = _refs_of(node)
    if _fixed_single(node):
        return [f"{pad}{local[refs[0]]} = {call}"]
    targets = "".join(local[r] + ", " for r in refs)
    return [f"{pad}({targets}) = _outs({call}, {len(refs)}, {node.name!r})"]


def _dels(j: int, graph: Graph, flow: _Flow, local: dict[Ref, str], pad: str, stop: int,
          keep: set[Ref]) -> list[str]:
    """``del`` after node ``j`` of the values it reads or makes that no node after it
    and before ``stop`` reads: ``stop`` is the end of the graph, or of the checkpoint
    region running ``j`` (the caller holds its own reference to what the region
    reads); ``keep``: what must outlive ``stop`` (the outputs, or what the region
    returns)."""
    node = graph.nodes[j]
    dead = [local[r] for r in dict.fromkeys([*node.sources, *_refs_of(node)])
            if r not in keep and not any(j < k < stop for k in flow.readers.get(r, ()))]
    return [f"{pad}del {', '.join(dead)}"] if dead else []


# ============================================================================ export
Value = Union[str, "Call"]


@dataclass
class Call:
    """Source of a constructor call: ``callee(*args, **kwargs)``; values are Python
    literals (source text) or nested calls."""

    callee: str
    args: list[Value] = field(default_factory=list)
    kwargs: list[tuple[str, Value]] = field(default_factory=list)
    #: arguments left at their default (literal source), so instances that set them
    #: and instances that do not can share a class; ``order``: every argument's name
    defaults: dict[str, str] = field(default_factory=dict)
    order: tuple[str, ...] = ()

    def render(self, indent: int = 8, width: int = 96, column: int | None = None) -> str:
        """One line when it fits from ``column`` (default: ``indent``) to ``width``,
        else one argument per line, indented by ``indent + 4``."""
        parts = [_render(a, indent + 4, width) for a in self.args] + \
            [f"{k}={_render(v, indent + 4, width)}" for k, v in self.kwargs]
        one = f"{self.callee}({', '.join(parts)})"
        if len(one) + (indent if column is None else column) <= width and "\n" not in one:
            return one
        pad = " " * (indent + 4)
        return f"{self.callee}(\n" + "".join(f"{pad}{p},\n" for p in parts) + " " * indent + ")"


def _render(v: Value, indent: int, width: int) -> str:
    return v.render(indent, width) if isinstance(v, Call) else v


@dataclass
class _Scope:
    path: str
    label: str
    children: list[Any] = field(default_factory=list)  # _Scope | Node, in graph order
    lo: int = 0
    hi: int = 0

    @property
    def name(self) -> str:
        return self.path.rpartition(".")[2]


@dataclass
class _Instance:
    """One container's class body, before classes are shared."""

    label: str
    forward: str  # source of forward, already final
    items: list[tuple[str, Value]]  # (attribute, constructor) in order
    kinds: dict[str, str]  # attribute -> "param" or "buffer" (else a module)
    args: dict[str, Any] = field(default_factory=dict)  # the block's argument values


@dataclass
class _Class:
    """A class shared by the containers of one label and structure."""

    name: str
    first: _Instance
    instances: list[tuple[_Instance, Call]] = field(default_factory=list)
    uses: set[int] = field(default_factory=set)  # ids of the classes its body creates
    source: list[str] = field(default_factory=list)


def module_source(graph: Graph, calls: dict[str, Call], held: dict[str, tuple[Call, bool]],
                  *, helpers: str = "", ties: Sequence[tuple[str, str]] = (),
                  frozen: Sequence[str] = (), header: str = "",
                  imports: Sequence[str] = ()) -> str:
    """A stand-alone Python file defining the spec's model as ``nn.Module`` classes.

    ``calls``: each layer's module constructor; ``held``: for Parameter and Buffer
    layers, (tensor constructor, is a parameter); ``helpers``: class sources the calls
    need (inlined); ``ties``: (parameter path, path of the parameter it becomes);
    ``frozen``: parameter paths with ``requires_grad=False``; ``imports``: lines the
    helpers need besides torch.
    """
    flow = _Flow.of(graph)
    root = _tree(graph)
    top = _class_name(graph.spec.name or "Model", "Model")
    reserved = {top, "Model"} | set(re.findall(r"^class (\w+)", helpers, re.M))
    classes: dict[tuple, _Class] = {}
    ctor: dict[str, Value] = {}  # container path -> its constructor in its parent
    made_by: dict[int, _Class] = {}  # id(Call) -> its class

    def visit(scope: _Scope) -> None:
        for c in scope.children:
            if isinstance(c, _Scope):
                visit(c)
        if scope is root:
            return
        seq = _sequential(scope, graph, flow)
        if seq is not None:
            ctor[scope.path] = Call("nn.Sequential", [_child_ctor(c, calls, ctor) for c in seq])
            return
        inst = _instance(scope, graph, flow, calls, held, ctor)
        template = tuple((a, _template(v)) for a, v in inst.items)
        key = (inst.label, inst.forward, template, tuple(sorted(inst.kinds.items())))
        cls = classes.get(key)
        if cls is None:
            taken = {c.name for c in classes.values()} | reserved
            base = _class_name(inst.label.split("×")[0], "Block") + \
                ("Stack" if "×" in inst.label else "")
            name, k = base, 2
            while name in taken:
                name, k = f"{base}{k}", k + 1
            cls = classes[key] = _Class(name, inst)
        call = Call(cls.name)
        cls.instances.append((inst, call))
        made_by[id(call)] = cls
        for _, v in inst.items:
            for sub in _calls_in(v):
                if id(sub) in made_by:
                    cls.uses.add(id(made_by[id(sub)]))
        ctor[scope.path] = call

    visit(root)
    by_id = {id(c): c for c in classes.values()}
    taken = reserved | {c.name for c in classes.values()}
    done: set[int] = set()
    ordered: list[_Class] = []

    def finish(cls: _Class) -> None:  # classes it creates first: their arguments are known
        if id(cls) in done:
            return
        done.add(id(cls))
        for u in sorted(cls.uses):
            finish(by_id[u])
        _write_class(cls, taken)
        ordered.append(cls)

    for cls in classes.values():
        finish(cls)
    lines = [header.rstrip("\n"), "", *sorted(imports), "", "import torch", "from torch import nn",
             ""]
    if helpers:
        lines += ["", helpers.strip("\n"), ""]
    for cls in ordered:
        lines += ["", *cls.source, ""]
    inst = _instance(root, graph, flow, calls, held, ctor)
    init = [_assign(a, v, inst.kinds.get(a, "")) for a, v in inst.items]
    for mine, theirs in ties:
        holder, _, attr = mine.rpartition(".")
        target = f"self.get_submodule({holder!r})" if holder else "self"
        init.append(f"        setattr({target}, {attr!r}, self.get_parameter({theirs!r}))")
    if frozen:
        init.append(f"        for name in {py_literal(tuple(frozen))}:")
        init.append("            self.get_parameter(name).requires_grad_(False)")
    doc = f"    \"\"\"{_docline(graph.spec.name or 'the model')}, from its netcalc spec.\"\"\""
    lines += ["", f"class {top}(nn.Module):", doc, "", "    def __init__(self):",
              "        super().__init__()", *init, "", inst.forward]
    return "\n".join(lines).strip("\n") + "\n"


def _assign(attr: str, v: Value, kind: str = "") -> str:
    """``self.attr = v``; a buffer, or a name that is not a plain identifier, through
    ``register_buffer`` / ``register_parameter`` / ``add_module`` and ``repr``."""
    if kind == "buffer" or not _plain(attr):
        how = {"buffer": "register_buffer", "param": "register_parameter"}.get(kind, "add_module")
        head, tail = f"        self.{how}({attr!r}, ", ")"
    else:
        head, tail = f"        self.{attr} = ", ""
    body = v.render(8, 96, len(head) + len(tail)) if isinstance(v, Call) else v
    return head + body + tail


def _docline(text: str) -> str:
    return repr(text)[1:-1].replace('"', "'")


def _class_name(label: str, fallback: str) -> str:
    parts = re.split(r"[^A-Za-z0-9]+", label)
    name = "".join(p[:1].upper() + p[1:] for p in parts if p)
    if not name or name[0].isdigit():
        name = fallback + name
    return name if _plain(name) and not hasattr(builtins, name) and name not in _GLOBALS \
        else name + "_"


def _tree(graph: Graph) -> _Scope:
    root = _Scope("", "", lo=0, hi=len(graph.nodes))
    scopes = {"": root}
    for i, node in enumerate(graph.nodes):
        parts = node.name.split(".")
        parent = root
        for k in range(1, len(parts)):
            path = ".".join(parts[:k])
            scope = scopes.get(path)
            if scope is None:
                scope = scopes[path] = _Scope(path, graph.containers.get(path, ""), lo=i)
                parent.children.append(scope)
            scope.hi = i + 1
            parent = scope
        parent.children.append(node)
    return root


def _span(scope: _Scope) -> range:
    return range(scope.lo, scope.hi)


def _attr(c: Any) -> str:
    return c.name if isinstance(c, _Scope) else c.name.rpartition(".")[2]


def _ins(scope: _Scope, graph: Graph, flow: _Flow) -> list[Ref]:
    """A container's forward arguments: the block's declared inputs, then any other
    value from outside that its layers read (``from: layer3.1.relu``)."""
    declared = graph.block_sources.get(scope.path, [])
    return list(dict.fromkeys(declared + _inputs(_span(scope), graph, flow)))


def _sequential(scope: _Scope, graph: Graph, flow: _Flow) -> list[Any] | None:
    """The children of a container that is a chain ``0 -> 1 -> ...`` with one input and
    one output (as nn.Sequential runs it), else None."""
    kids = scope.children
    if [_attr(c) for c in kids] != [str(k) for k in range(len(kids))]:
        return None
    ins = _ins(scope, graph, flow)
    if len(ins) != 1 or len(_outputs(_span(scope), graph, flow)) != 1:
        return None
    prev = ins[0]
    for k, c in enumerate(kids):
        if isinstance(c, _Scope):
            c_ins, c_outs = _ins(c, graph, flow), _outputs(_span(c), graph, flow)
            if c_ins != [prev] or len(c_outs) != 1:
                return None
            out = c_outs[0]
        else:
            if c.layer.HELD or not _fixed_single(c) or c.sources != [prev]:
                return None
            out = Ref(c.name)
        if k + 1 < len(kids):  # read only by the next child
            nxt = kids[k + 1]
            nxt_span = _span(nxt) if isinstance(nxt, _Scope) else \
                range(flow.index[nxt.name], flow.index[nxt.name] + 1)
            if any(j not in nxt_span for j in flow.readers.get(out, [])):
                return None
        prev = out
    return kids


def _child_ctor(c: Any, calls: dict[str, Call], ctor: dict[str, Value]) -> Value:
    return ctor[c.path] if isinstance(c, _Scope) else calls[c.name]


def _instance(scope: _Scope, graph: Graph, flow: _Flow, calls: dict[str, Call],
              held: dict[str, tuple[Call, bool]], ctor: dict[str, Value]) -> _Instance:
    """The class body of one container (or of the root: its inputs are the spec's)."""
    span = _span(scope)
    namer = Namer()
    if scope.path == "":
        ins = [Ref(n) for n in graph.inputs]
        params = [namer.new(n) for n in graph.inputs]
        outs = [r for _, r in graph.outputs]
    else:
        declared = graph.block_sources.get(scope.path, [])
        ins = _ins(scope, graph, flow)
        block = graph.spec.blocks.get(scope.label)
        labels = list(block.inputs) if block is not None else []
        params = [namer.new(labels[k] if k < len(labels) and k < len(declared)
                            and declared[k] == r else ("x" if len(ins) == 1 else f"x{k}"))
                  for k, r in enumerate(ins)]
        outs = _outputs(span, graph, flow)
    local: dict[Ref, str] = dict(zip(ins, params))
    items: list[tuple[str, Value]] = []
    kinds: dict[str, str] = {}
    body: list[str] = []
    steps: list[tuple[list[Ref], list[Ref]]] = []  # (reads, makes) per child
    for c in scope.children:
        attr = _attr(c)
        get = f"self.{attr}" if _plain(attr) else f"getattr(self, {attr!r})"
        if isinstance(c, _Scope):
            reads, makes = _ins(c, graph, flow), _outputs(_span(c), graph, flow)
            items.append((attr, ctor[c.path]))
            names = [namer.new(attr if len(makes) == 1 else
                               r.node[len(c.path) + 1:] + ("" if r.out == 0 else f"_{r.out}"))
                     for r in makes]
            call = f"{get}({', '.join(local[r] for r in reads)})"
        else:
            reads, makes = list(c.sources), _refs_of(c)
            names = [namer.new(n) for n in _out_names(c, attr)]
            if c.layer.HELD:
                expr, is_param = held[c.name]
                items.append((attr, Call("nn.Parameter", [expr]) if is_param else expr))
                kinds[attr] = "param" if is_param else "buffer"
                call = get
            else:
                items.append((attr, calls[c.name]))
                call = f"{get}({', '.join(local[s] for s in c.sources)})"
        local.update(zip(makes, names))
        if not names:
            body.append(f"        {call}")
        elif len(names) == 1 and (isinstance(c, _Scope) or _fixed_single(c)):
            body.append(f"        {names[0]} = {call}")
        else:
            body.append(f"        {', '.join(names)}{',' if len(names) == 1 else ''} = {call}")
        steps.append((reads, makes))
    # del after each value's last read in this body
    last: dict[Ref, int] = {r: -1 for r in ins}
    for k, (reads, makes) in enumerate(steps):
        for r in makes:
            last.setdefault(r, k)
        for r in reads:
            last[r] = k
    dels: dict[int, list[str]] = {}
    for r, k in last.items():
        if r not in outs:
            dels.setdefault(k, []).append(local[r])
    lines = [f"    def forward(self{''.join(', ' + p for p in params)}):"]
    if -1 in dels:
        lines.append(f"        del {', '.join(dels[-1])}")
    for k, line in enumerate(body):
        lines.append(line)
        if k in dels and k < len(body) - 1:
            lines.append(f"        del {', '.join(dels[k])}")
    result = [local[r] for r in outs]
    lines.append("        return " + (result[0] if len(result) == 1 else
                                      "(" + "".join(x + ", " for x in result) + ")"))
    return _Instance(scope.label, "\n".join(lines), items, kinds,
                     graph.block_args.get(scope.path, {}))


# ---------------------------------------------------------------- sharing classes
def _template(v: Value) -> Any:
    """A constructor with its literals left out (instances of one class differ there,
    also by leaving an argument at its default or not)."""
    if isinstance(v, Call):
        return (v.callee, tuple(_template(a) for a in v.args),
                tuple((k, _template(x)) for k, x in v.kwargs if isinstance(x, Call)))
    return None


def _merged(calls: list[Value]) -> Value:
    """One constructor over instances' constructors (same template): every argument
    any of them sets, in the class's order; a literal stands for the first one's."""
    first = calls[0]
    if not isinstance(first, Call):
        return first
    named: dict[str, list[Value]] = {}
    for c in calls:
        assert isinstance(c, Call)
        for k, x in c.kwargs:
            named.setdefault(k, [])
    order = list(first.order) + [k for k in named if k not in first.order]
    kwargs = []
    for k in order:
        if k in named:
            kwargs.append((k, _merged([dict(c.kwargs).get(k, c.defaults.get(k))
                                       for c in calls if isinstance(c, Call)])))
    return Call(first.callee, [_merged([c.args[i] for c in calls if isinstance(c, Call)])
                               for i in range(len(first.args))], kwargs, first.defaults,
                first.order)


def _leaf_of(v: Value, path: tuple) -> str | None:
    """The literal at ``path`` of a constructor (an argument left out: its default)."""
    for step in path[1:]:
        if not isinstance(v, Call):
            return None
        if isinstance(step, int):
            v = v.args[step]
        else:
            v = dict(v.kwargs).get(step, v.defaults.get(step))
        if v is None:
            return None
    return v if isinstance(v, str) else None


def _calls_in(v: Value):
    if isinstance(v, Call):
        yield v
        for a in v.args:
            yield from _calls_in(a)
        for _, x in v.kwargs:
            yield from _calls_in(x)


def _leaves(v: Value, path: tuple, out: dict[tuple, str]) -> None:
    if isinstance(v, Call):
        for i, a in enumerate(v.args):
            _leaves(a, path + (i,), out)
        for k, x in v.kwargs:
            _leaves(x, path + (k,), out)
    else:
        out[path] = v


def _signature(params: list[str]) -> list[str]:
    one = f"    def __init__(self{''.join(', ' + p for p in params)}):"
    if len(one) <= 96:
        return [one]
    return ["    def __init__(", "        self,", *(f"        {p}," for p in params), "    ):"]


def _plain_value(v: Any) -> Any:
    """A block argument as the module attribute holds it (lists as tuples)."""
    return tuple(v) if isinstance(v, list) else v


def _write_class(cls: _Class, taken: set[str]) -> None:
    """The class's source, and every instance's constructor call: values that differ
    between instances become ``__init__`` arguments (one per distinct column of
    values), named after the torch argument (``stride``) or, when two differ,
    after the submodule too (``conv1_out_channels``)."""
    items = [(a, _merged([dict(inst.items)[a] for inst, _ in cls.instances]))
             for a, _ in cls.first.items]
    shape: dict[tuple, str] = {}
    for a, v in items:
        _leaves(v, (a,), shape)
    paths = list(shape)
    table = [{p: _leaf_of(dict(inst.items)[p[0]], p) for p in paths} for inst, _ in cls.instances]
    columns: dict[tuple, list[tuple]] = {}
    for p in paths:
        col = tuple(row[p] for row in table)
        if len(set(col)) > 1:
            columns.setdefault(col, []).append(p)

    def kw(p: tuple) -> str:
        named = [x for x in p if isinstance(x, str)]
        return named[-1] if len(p) > 1 and isinstance(p[-1], str) else "_".join(named)

    counts: dict[str, int] = {}
    for ps in columns.values():
        counts[kw(ps[0])] = counts.get(kw(ps[0]), 0) + 1
    namer = Namer(sorted(taken))  # not a class name: __init__ creates them
    param: dict[tuple, str] = {}
    block_args: dict[tuple, str] = {}  # a column that is a block argument takes its name
    for arg in cls.first.args:
        try:
            col = tuple(py_literal(_plain_value(inst.args.get(arg))) for inst, _ in cls.instances)
        except TypeError:
            continue
        block_args.setdefault(col, arg)
    for col, ps in columns.items():
        want = block_args.get(col) or (kw(ps[0]) if counts[kw(ps[0])] == 1
                                       else f"{ps[0][0]}_{kw(ps[0])}")
        pname = namer.new(want)
        for p in ps:
            param[p] = pname
    plist = list(dict.fromkeys(param[p] for p in paths if p in param))

    def subst(v: Value, path: tuple) -> Value:
        if isinstance(v, Call):
            return Call(v.callee, [subst(a, path + (i,)) for i, a in enumerate(v.args)],
                        [(k, subst(x, path + (k,))) for k, x in v.kwargs])
        return param.get(path, v)

    inst = cls.first
    lines = [f"class {cls.name}(nn.Module):",
             f"    \"\"\"{_docline(inst.label)}, a block of the spec.\"\"\"", "",
             *_signature(plist), "        super().__init__()"]
    lines += [_assign(a, subst(v, (a,)), inst.kinds.get(a, "")) for a, v in items]
    lines += ["", inst.forward]
    cls.source = lines
    column_of = {param[p]: p for p in reversed(paths) if p in param}
    for row, (_, call) in zip(table, cls.instances):
        call.kwargs = [(pn, row[column_of[pn]]) for pn in plist]
