"""Receptive-field growth along the network: the path that sets each output's field.

For each output whose value has a receptive field (:mod:`netcalc.rf`; token models
and latent vectors have none, and are left out), the path is walked back from the
output to an input, taking at each layer the input with the widest field (a global
field first, then one global along more dims, then the largest size over the other
spatial dims): the field of a merge is the
union of its inputs' fields, so this is the path that makes the output's field what
it is (for a ResNet, the chain of 3x3 convolutions, not the shortcuts). The result
lists, from the first layer to the output's, each layer and its field: how the field
grows layer by layer (Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019).

One walk per output, linear in the path's length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .rf import RF

if TYPE_CHECKING:
    from .graph import Graph, Ref

#: output name -> [(layer name, its field)], from the first layer to the output's
Growth = dict[str, list[tuple[str, RF]]]


def _width(rf: RF) -> tuple[bool, int, object]:
    """Global first, then more whole (global) dims, then the largest size of the others."""
    return (rf.global_, sum(d.whole for d in rf.dims),
            max((d.size for d in rf.dims if not d.whole), default=0))


def rf_growth(graph: "Graph", fields: "dict[Ref, RF | None]") -> Growth:
    """The field along the widest path to each output that has one (see the module)."""
    out: Growth = {}
    for name, ref in graph.outputs:
        path: list[tuple[str, RF]] = []
        while ref.node in graph.by_name:
            rf = fields.get(ref)
            if rf is None:
                break
            path.append((ref.node, rf))
            wide = [s for s in graph.by_name[ref.node].sources if fields.get(s) is not None]
            if not wide:
                break
            ref = wide[0] if len(wide) == 1 else \
                max(wide, key=lambda s: _width(fields[s]))  # type: ignore[arg-type]
        if path:
            path.reverse()
            out[name] = path
    return out
