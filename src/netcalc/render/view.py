"""What every output format shows: rows (collapsed to ``--depth``) and exact JSON data."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from ..analysis import LayerResult, Report
from ..rf import RF, fraction_json
from ..units import human, human_bytes

JSON_VERSION = 1


def collapse(report: Report, depth: int | None) -> list[LayerResult]:
    """Rows with block instances deeper than ``depth`` folded into one row each.

    Like torchinfo's ``depth``: a row per layer whose path has at most ``depth``
    parts, and one per container at that depth, summing its layers; its shape and
    receptive field are those of its last layer. Sums still equal the totals.
    """
    if depth is None:
        return list(report.layers)
    rows: list[LayerResult] = []
    index: dict[str, int] = {}
    for layer in report.layers:
        parts = layer.name.split(".")
        if len(parts) <= depth:
            rows.append(layer)
            continue
        key = ".".join(parts[:depth])  # every proper prefix of a path is a container
        if key in index:
            row = rows[index[key]]
            rows[index[key]] = replace(
                row,
                shape=layer.shape,
                output_shapes=layer.output_shapes,
                params=row.params + layer.params,
                trainable_params=row.trainable_params + layer.trainable_params,
                buffers=row.buffers + layer.buffers,
                macs=row.macs + layer.macs,
                flops=row.flops + layer.flops,
                activation_bytes=row.activation_bytes + layer.activation_bytes,
                weight_bytes=row.weight_bytes + layer.weight_bytes,
                rf=layer.rf,
            )
        else:
            index[key] = len(rows)
            rows.append(replace(layer, name=key, type=report.containers.get(key, "…"),
                                tied_to=None, extra={}))
    return rows


def rf_json(rf: RF | None) -> dict[str, Any] | None:
    if rf is None:
        return None
    if rf.global_:
        return {"size": None, "stride": None, "start": None, "global": True, "aligned": rf.aligned}
    return {
        "size": [fraction_json(d.size) for d in rf.dims],
        "stride": [fraction_json(d.stride) for d in rf.dims],
        "start": [fraction_json(d.start) for d in rf.dims],
        "global": False,
        "aligned": rf.aligned,
    }


def rf_text(rf: RF | None) -> str:
    if rf is None:
        return "-"
    if rf.global_:
        return "global"
    sizes = {d.size for d in rf.dims}
    text = "×".join(_frac(d.size) for d in rf.dims) if len(sizes) > 1 else _frac(rf.dims[0].size)
    return text if rf.aligned else f"{text} (misaligned)"


def _frac(x) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def layer_dict(r: LayerResult) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": r.name,
        "type": r.type,
        "from": r.sources,
        "shape": list(r.shape),
        "params": r.params,
        "trainable_params": r.trainable_params,
        "buffers": r.buffers,
        "macs": r.macs,
        "flops": r.flops,
        "receptive_field": rf_json(r.rf),
        "activation_bytes": r.activation_bytes,
        "weight_bytes": r.weight_bytes,
        "line": r.line,
    }
    if len(r.output_shapes) > 1:
        d["output_shapes"] = [list(s) for s in r.output_shapes]
    if r.tied_to:
        d["tied_to"] = r.tied_to
    if r.nonzero_params is not None:
        d["nonzero_params"] = r.nonzero_params
        d["nonzero_macs"] = r.nonzero_macs
    d.update(r.extra)
    return d


def report_dict(report: Report, depth: int | None = None) -> dict[str, Any]:
    t = report.totals
    totals = {
        "params": t.params,
        "trainable_params": t.trainable_params,
        "buffers": t.buffers,
        "macs": t.macs,
        "flops": t.flops,
        "weight_bytes": t.weight_bytes,
        "activation_bytes": t.activation_bytes,
        "input_bytes": t.input_bytes,
        "peak_activation_bytes": t.peak_activation_bytes,
    }
    if t.nonzero_params != t.params or t.nonzero_macs != t.macs:
        totals["nonzero_params"] = t.nonzero_params
        totals["nonzero_macs"] = t.nonzero_macs
    out = {
        "format_version": JSON_VERSION,
        "name": report.name,
        "file": report.file,
        "batch": report.batch,
        "dtype": report.dtype,
        "inputs": {k: list(v) for k, v in report.inputs.items()},
        "layers": [layer_dict(r) for r in collapse(report, depth)],
        "outputs": {k: list(v) for k, v in report.outputs.items()},
        "totals": totals,
    }
    out.update(report.sections)
    return out


def shape_text(shape) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"


@dataclass(frozen=True)
class Column:
    """One report column: its exact value (CSV, Markdown) and its human text (table)."""

    title: str
    exact: Callable[[LayerResult], Any]
    human: Callable[[LayerResult], str]
    numeric: bool = False


COLUMNS = (
    Column("Layer", lambda r: r.name, lambda r: r.name),
    Column("Type", lambda r: r.type, lambda r: r.type),
    Column("Output shape", lambda r: shape_text(r.shape), lambda r: shape_text(r.shape)),
    Column("RF", lambda r: rf_text(r.rf), lambda r: rf_text(r.rf)),
    Column("Params", lambda r: r.params, lambda r: _tied(r, human(r.params)) if r.params else "-", True),
    Column("MACs", lambda r: r.macs, lambda r: human(r.macs) if r.macs else "-", True),
    Column("FLOPs", lambda r: r.flops, lambda r: human(r.flops) if r.flops else "-", True),
    Column("Activations", lambda r: r.activation_bytes, lambda r: human_bytes(r.activation_bytes), True),
)


def _tied(r: LayerResult, text: str) -> str:
    return f"{text} (tied)" if r.tied_to else text
