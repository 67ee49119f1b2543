"""The layer graph as Graphviz DOT text, and Graphviz's ``dot`` to lay it out.

One node per row of the report (at ``--depth``, as the table folds block instances),
labelled with its name, type and output shape(s) (and params and MACs when asked);
block instances and repeat groups that are not folded are clusters; each edge is
labelled with the shape of the tensor it carries; a merge (a node fed by several
others) is shaded, graph inputs and outputs are ovals, so several outputs show.

**Folding big graphs.** A graph with more than :data:`NODE_LIMIT` nodes at the asked
depth is folded automatically, so that ``dot`` stays fast and the picture readable:
first every repeat group (``repeat: N`` of a block) keeps its first instance drawn in
full and folds the other N - 1 instances into one node (``blocks.1-31``, "Decoder
×31"); if that is still too many, the depth is lowered until it fits. The caption
says what was folded. A graph still too big at depth 1 (a long chain of layers outside
any block) is refused (:class:`DotError`) rather than handed to ``dot``.

Names come from the spec: every label line goes through :func:`netcalc.textsafe.dot`;
node and cluster identifiers are generated (``n12``, ``cluster_3``), never names.
``dot`` runs with a timeout (:data:`DOT_TIMEOUT` seconds).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field

from ..analysis import LayerResult, Report
from ..graph import Ref
from ..textsafe import dot as esc
from ..units import human
from .view import FoldKey, depth_key, fold, shape_text

NODE_LIMIT = 250  # nodes drawn before repeat groups and then depths are folded
DOT_TIMEOUT = 60.0  # seconds for `dot` to lay a graph out
DOT_MISSING = ("Graphviz's `dot` is not on PATH: install Graphviz (apt-get install graphviz, "
               "brew install graphviz, or https://graphviz.org/download/)")
FORMATS = ("svg", "png", "dot")
RANKDIRS = ("TB", "LR")


class DotError(Exception):
    """``dot`` is missing, failed or ran past its timeout, or the graph is too big (one line)."""


@dataclass
class Picture:
    """What the graph shows: rows (folded), edges between them, and how it was folded."""

    rows: list[LayerResult]
    #: (source, target, label): a source is a row index or ("input", name); a target a
    #: row index or ("output", name)
    edges: list[tuple[object, object, str]]
    depth: int | None
    folded_repeats: bool
    notes: list[str] = field(default_factory=list)


def _repeat_key(report: Report, base: FoldKey | None) -> FoldKey:
    """Fold the instances 1..N-1 of each repeat group into one row (then ``base``)."""
    groups = {c: int(label.rsplit("×", 1)[1]) for c, label in report.containers.items()
              if "×" in label and label.rsplit("×", 1)[1].isdigit()}

    def key(name: str) -> tuple[str, str] | None:
        parts = name.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            n = groups.get(prefix)
            if n is not None and n > 1 and parts[i].isdigit() and parts[i] != "0":
                label = report.containers[prefix].rsplit("×", 1)[0]
                return f"{prefix}.1-{n - 1}", f"{label} ×{n - 1}"
        return base(name) if base is not None else None
    return key


def picture(report: Report, depth: int | None = None, limit: int = NODE_LIMIT) -> Picture:
    """The rows and edges to draw at ``depth``, folded beyond ``limit`` nodes (see the module)."""
    key = depth_key(report, depth) if depth is not None else None
    rows = fold(report, key) if key is not None else list(report.layers)
    folded = False
    notes = []
    if len(rows) > limit:
        key = _repeat_key(report, key)
        rows, folded = fold(report, key), True
        notes.append(f"{len(report.layers):,} layers: repeat groups folded after their "
                     "first instance")
        deepest = max(len(r.name.split(".")) for r in rows)
        while len(rows) > limit and deepest > 1:
            deepest -= 1
            depth = deepest
            key = _repeat_key(report, depth_key(report, depth))
            rows = fold(report, key)
            if len(rows) <= limit or deepest == 1:
                notes.append(f"folded to depth {depth}")
        if len(rows) > limit:
            raise DotError(f"{len(rows):,} nodes after folding every block: more than "
                           f"--max-nodes {limit}")
    index = {r.name: i for i, r in enumerate(rows)}
    shapes = {r.name: r.output_shapes or [r.shape] for r in report.layers}
    graph = report.graph
    edges: list[tuple[object, object, str]] = []
    seen: set[tuple[object, object, str]] = set()

    owners: dict[str, int] = {}

    def owner(name: str) -> int:
        i = owners.get(name)
        if i is None:
            k = key(name) if key is not None else None
            i = owners[name] = index[name if k is None else k[0]]
        return i

    def add(edge: tuple[object, object, str]) -> None:
        if edge not in seen and edge[0] != edge[1]:
            seen.add(edge)
            edges.append(edge)

    def source(ref: Ref) -> tuple[object, str]:
        """Where a tensor comes from (a row, or a graph input) and its shape."""
        if ref.node in graph.inputs:
            return ("input", ref.node), shape_text(graph.inputs[ref.node].shape)
        return owner(ref.node), shape_text(shapes[ref.node][ref.out])

    assert graph is not None, "a report from analyze_graph carries its graph"
    for node in graph.nodes:
        dst = owner(node.name)
        for s in node.sources:
            src, label = source(s)
            add((src, dst, label))
    for name, ref in graph.outputs:  # an output may be an input passed through
        src, label = source(ref)
        add((src, ("output", name), label))
    return Picture(rows, edges, depth, folded, notes)


def _node_label(r: LayerResult, params: bool, macs: bool) -> str:
    outs = r.output_shapes if len(r.output_shapes) > 1 else [r.shape]
    lines = [r.name, r.type, " ".join(shape_text(s) for s in outs)]
    if params and r.params:
        lines.append(f"params {human(r.params)}")
    if macs and r.macs:
        lines.append(f"MACs {human(r.macs, 'MAC')}")
    return "\\n".join(esc(x) for x in lines)


def _containers(report: Report, rows: list[LayerResult]) -> dict[str, list[str]]:
    """The clusters to draw: each container that is a proper prefix of a drawn row,
    mapped to its child clusters ('' is the root)."""
    tree: dict[str, list[str]] = {"": []}
    for r in rows:
        parts = r.name.split(".")
        parent = ""
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix not in report.containers:
                continue
            if prefix not in tree:
                tree[prefix] = []
                tree[parent].append(prefix)
            parent = prefix
    return tree


def _cluster_of(report: Report, name: str) -> str:
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in report.containers:
            return prefix
    return ""


def to_dot(report: Report, depth: int | None = None, rankdir: str = "TB",
           params: bool = False, macs: bool = False, limit: int = NODE_LIMIT) -> str:
    """The graph as DOT text (see the module)."""
    pic = picture(report, depth, limit)
    caption = "\\n".join(esc(t) for t in [report.name, *pic.notes])
    out = ["digraph netcalc {",
           f'  graph [rankdir={rankdir}, fontname="Helvetica", fontsize=12, '
           f'labelloc=t, label="{caption}", '
           'nodesep=0.25, ranksep=0.35];',
           '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", color="#4a6fa5", '
           'fontname="Helvetica", fontsize=10];',
           '  edge [color="#666666", fontname="Helvetica", fontsize=8, fontcolor="#555555"];']
    fan_in: dict[object, set[object]] = {}
    for src, dst, _ in pic.edges:
        fan_in.setdefault(dst, set()).add(src)
    in_ids = {name: f"in_{i}" for i, name in enumerate(report.inputs)}
    for name, shape in report.inputs.items():
        out.append(f'  {in_ids[name]} [shape=oval, fillcolor="#e3f1e3", color="#3d8b3d", '
                   f'label="{esc(name)}\\n{esc(shape_text(shape))}"];')
    by_cluster: dict[str, list[int]] = {}
    for i, r in enumerate(pic.rows):
        by_cluster.setdefault(_cluster_of(report, r.name), []).append(i)
    tree = _containers(report, pic.rows)
    ids = {c: f"cluster_{i}" for i, c in enumerate(tree) if c}

    def node_line(i: int, indent: str) -> str:
        r = pic.rows[i]
        style = ', fillcolor="#fff4d6", color="#b07d1a"' if len(fan_in.get(i, ())) > 1 else ""
        return f'{indent}n{i} [label="{_node_label(r, params, macs)}"{style}];'

    def emit(c: str, indent: str) -> None:
        for child in tree.get(c, []):
            out.append(f"{indent}subgraph {ids[child]} {{")
            out.append(f'{indent}  label="{esc(child)}: {esc(report.containers[child])}"; '
                       'style="rounded,dashed"; color="#9aa7b8"; fontsize=10;')
            emit(child, indent + "  ")
            out.append(f"{indent}}}")
        out.extend(node_line(i, indent) for i in by_cluster.get(c, []))

    emit("", "  ")
    for j, name in enumerate(report.outputs):
        out.append(f'  out_{j} [shape=oval, fillcolor="#fbe3e3", color="#a53d3d", '
                   f'label="{esc(name)}"];')
    out_ids = {name: f"out_{j}" for j, name in enumerate(report.outputs)}

    def end(x: object) -> str:
        if isinstance(x, tuple):
            return in_ids[x[1]] if x[0] == "input" else out_ids[x[1]]
        return f"n{x}"

    for src, dst, label in pic.edges:
        out.append(f'  {end(src)} -> {end(dst)} [label="{esc(label)}"];')
    out.append("}")
    return "\n".join(out) + "\n"


def dot_available() -> bool:
    return shutil.which("dot") is not None


def run_dot(text: str, fmt: str, timeout: float = DOT_TIMEOUT) -> bytes:
    """``dot -T<fmt>`` of ``text``: the SVG or PNG bytes, or a DotError (one line)."""
    exe = shutil.which("dot")
    if exe is None:
        raise DotError(DOT_MISSING)
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=text.encode("utf-8"),
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DotError(f"`dot` took more than {timeout:g} s to lay the graph out: "
                       "fold it with --depth") from None
    except OSError as exc:
        raise DotError(f"cannot run `dot`: {exc.strerror or exc}") from None
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise DotError(f"`dot` failed (exit {done.returncode}): {why[-1] if why else ''}")
    return done.stdout
