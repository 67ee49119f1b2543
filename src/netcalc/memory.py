"""Analytic byte accounting of a report, for the roofline and the memory figures: torch-free.

Per layer, the bytes a forward moves: its weights (the report's ``weight_bytes``: int4
packing and quantisation scales included) and buffers at the dtype, plus its inputs
and outputs (activations at the dtype; token ids as int64). Arithmetic intensity is
MACs over these bytes (:func:`netcalc.hardware.roofline`). For the whole model, the
memory a forward needs: weights + buffers + the peak of live activations.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .dtypes import DTYPE_BYTES, INT_BYTES

if TYPE_CHECKING:
    from .analysis import Report


@dataclass
class LayerBytes:
    """Bytes one layer's forward moves."""

    weight_bytes: int
    input_bytes: int
    output_bytes: int

    @property
    def bytes_moved(self) -> int:
        return self.weight_bytes + self.input_bytes + self.output_bytes


@dataclass
class AnalyticMemory:
    """What a forward needs resident: weights, buffers and the peak of live activations."""

    weight_bytes: int
    buffer_bytes: int
    peak_activation_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.buffer_bytes + self.peak_activation_bytes

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "total_bytes": self.total_bytes}


def layer_bytes(report: Report) -> dict[str, LayerBytes]:
    """Per layer: weight, input and output bytes at the report's dtype."""
    wb = DTYPE_BYTES[report.dtype]
    out_bytes: dict[str, list[int]] = {}
    for r in report.layers:
        shapes = r.output_shapes or [r.shape]
        numels = [math.prod(s) for s in shapes]
        total = sum(numels) or 1
        # activation_bytes covers all outputs; split it by element count
        out_bytes[r.name] = [r.activation_bytes * n // total for n in numels]
    graph_inputs = report.graph.inputs if report.graph is not None else {}
    for name, shape in report.inputs.items():
        info = graph_inputs.get(name)
        per = INT_BYTES if info is not None and info.dtype != "float" else wb
        out_bytes[name] = [math.prod(shape) * per]
    result: dict[str, LayerBytes] = {}
    for r in report.layers:
        inb = 0
        for src in r.sources:
            node, _, k = src.partition(":")
            sizes = out_bytes.get(node)
            if not sizes:
                continue
            idx = int(k) if k.isdigit() else 0
            inb += sizes[idx] if idx < len(sizes) else sizes[0]
        result[r.name] = LayerBytes(r.weight_bytes + r.buffers * wb, inb, sum(out_bytes[r.name]))
    return result


def analytic_memory(report: Report) -> AnalyticMemory:
    t = report.totals
    return AnalyticMemory(t.weight_bytes, t.buffers * DTYPE_BYTES[report.dtype],
                          t.peak_activation_bytes)
