"""The folded layer tree -> spec YAML text, one flow-style line per entry.

The text starts with the schema header (as the bundled specs do), the provenance
comment, the mapping of renamed modules if any, then ``name``, ``input(s)``,
``blocks``, ``layers``, ``outputs`` (when the model's output is not the last layer) and
the measured ``expect:`` block.
"""

from __future__ import annotations

import json
from typing import Any

from ..importers.yamltext import comment
from ..importers.yamltext import value as scalar
from ..layers import REGISTRY
from .fold import BlockDef, Entry, Tree

#: as the bundled specs start; ``netcalc import -o`` makes the path relative to the file
HEADER = "# yaml-language-server: $schema=netcalc.schema.json"


def _args(e: Entry) -> str:
    """``~``, the primary argument alone (``Linear: 1000``), or the mapping."""
    if not e.args:
        return "~"
    layer = REGISTRY.get(e.kind)
    if layer is not None and list(e.args) == [layer.PRIMARY] and \
            not isinstance(e.args[layer.PRIMARY], (list, dict)):
        return scalar(e.args[layer.PRIMARY])
    return scalar(e.args)


def entry_line(e: Entry) -> str:
    parts = []
    if e.name:
        parts.append(f"name: {e.name}")
    parts.append(f"{e.kind}: {_args(e)}")
    if e.sources is not None:
        src = e.sources[0] if len(e.sources) == 1 else e.sources
        parts.append(f"from: {scalar(src)}")
    if e.repeat is not None:
        parts.append(f"repeat: {scalar(e.repeat)}")
    if e.tie is not None:
        parts.append(f"tie: {e.tie}")
    if len(parts) == 1 and not e.args:
        return e.kind
    return "{" + ", ".join(parts) + "}"


def block_lines(b: BlockDef) -> list[str]:
    lines = [f"  {b.name}:"]
    if b.args:
        lines.append("    args: {" + ", ".join(f"{a}: ~" for a in b.args) + "}")
    if b.inputs != ["input"]:
        lines.append(f"    inputs: {scalar(b.inputs)}")
    if b.numbered:
        lines.append("    numbered: true")
    lines.append("    layers:")
    lines += [f"      - {entry_line(e)}" for e in b.entries]
    return lines


def write_spec(name: str, tree: Tree, inputs: dict[str, tuple[tuple[int, ...], str]],
               figures: dict[str, Any], provenance: list[str]) -> str:
    lines = [HEADER, *(comment(p) for p in provenance)]
    if tree.renamed:
        lines.append("# Renamed (not identifiers): " + ", ".join(
            f"{json.dumps(k)} -> {v}" for k, v in tree.renamed.items()))
    lines.append(f"name: {scalar(name)}")
    if list(inputs) == ["input"] and inputs["input"][1] == "float32":
        lines.append(f"input: {scalar(list(inputs['input'][0]))}")
    else:
        lines.append("inputs:")
        for n, (shape, dtype) in inputs.items():
            value = {"shape": list(shape)}
            if dtype != "float32":
                value["dtype"] = dtype
            lines.append(f"  {n}: {scalar(value)}")
    if tree.blocks:
        lines.append("blocks:")
        for b in tree.blocks:
            lines += block_lines(b)
    lines.append("layers:")
    lines += [f"  - {entry_line(e)}" for e in tree.entries]
    if tree.outputs is not None:
        lines.append(f"outputs: {scalar(tree.outputs)}")
    expect: dict[str, Any] = {"convention": "flopcounter"}
    outs = figures["outputs"]
    if len(outs) == 1:
        expect["output"] = outs[0]
    elif tree.outputs is not None and len(tree.outputs) == len(outs):
        expect["output"] = dict(zip(tree.outputs, outs))
    expect["params"] = figures["params"]
    if figures["buffers"]:
        expect["buffers"] = figures["buffers"]
    opaque = any(e.kind == "Opaque" for e in tree.entries) or \
        any(e.kind == "Opaque" for b in tree.blocks for e in b.entries)
    if figures.get("macs") is not None and not opaque:
        expect["macs"] = figures["macs"]
    elif figures.get("macs") is not None:  # netcalc cannot count them: no expectation
        lines.append(f"# The source module measures {figures['macs']:,} MACs; netcalc cannot "
                     "count its Opaque layers.")
    lines.append(f"expect: {scalar(expect)}")
    return "\n".join(lines) + "\n"
