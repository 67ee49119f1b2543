"""What every output format shows: rows (collapsed to ``--depth``) and exact JSON data."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

from ..analysis import LayerResult, Report
from ..metrics import COLUMNS as METRIC_COLUMNS
from ..metrics import METRICS, ROW_METRICS, SUMMED, UNKNOWN, Metric, total
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
    return fold(report, depth_key(report, depth))


#: which row a layer folds into: (row name, row type), or None for a row of its own
FoldKey = Callable[[str], "tuple[str, str] | None"]


def depth_key(report: Report, depth: int) -> FoldKey:
    """``--depth``'s folding: a layer deeper than ``depth`` folds into its container there."""
    def key(name: str) -> tuple[str, str] | None:
        parts = name.split(".")
        if len(parts) <= depth:
            return None
        prefix = ".".join(parts[:depth])  # every proper prefix of a path is a container
        return prefix, report.containers.get(prefix, "…")
    return key


def fold(report: Report, key: FoldKey) -> list[LayerResult]:
    """Rows with the layers that ``key`` maps to one name folded into one row each, at
    the place of the first; the row sums their metrics and has the last one's shape and
    receptive field."""
    rows: list[LayerResult | None] = []
    groups: dict[str, tuple[int, str, list[LayerResult]]] = {}
    for layer in report.layers:
        k = key(layer.name)
        if k is None:
            rows.append(layer)
            continue
        group = groups.get(k[0])
        if group is None:
            groups[k[0]] = group = (len(rows), k[1], [])
            rows.append(None)
        group[2].append(layer)
    for name, (i, type_, members) in groups.items():
        last = members[-1]
        rows[i] = replace(members[0], name=name, type=type_, tied_to=None, extra={},
                          shape=last.shape, output_shapes=last.output_shapes, rf=last.rf,
                          **_summed(members))
    return rows  # type: ignore[return-value]


def _summed(members: list[LayerResult]) -> dict[str, Any]:
    """The metrics of a container row. None stays None (the report does not carry the
    metric, or no layer was pruned); a metric with a fallback counts the fallback for
    layers without a value of their own, as its total does."""
    out = {}
    for m in SUMMED:
        values = [getattr(x, m.name) for x in members]
        if all(v is None for v in values):
            out[m.name] = None
        elif m.fallback is None:
            out[m.name] = total(values) if m.unknowable else sum(v or 0 for v in values)
        else:
            values = [getattr(x, m.fallback) if v is None else v for v, x in zip(values, members)]
            out[m.name] = total(values) if m.unknowable else sum(values)
    return out


def rf_json(rf: RF | None) -> dict[str, Any] | None:
    if rf is None:
        return None
    if rf.global_:
        return {"size": None, "stride": None, "start": None, "global": True, "aligned": rf.aligned}
    size, stride, start = [], [], []
    for d in rf.dims:  # ints in all but odd cases: skip the Fraction path (10^4 rows)
        if d.whole:  # global along this dim only: null, named in global_dims
            size.append(None)
            stride.append(None)
            start.append(None)
            continue
        size.append(d.size if type(d.size) is int else fraction_json(d.size))
        stride.append(d.stride if type(d.stride) is int else fraction_json(d.stride))
        start.append(d.start if type(d.start) is int else fraction_json(d.start))
    out = {"size": size, "stride": stride, "start": start, "global": False,
           "aligned": rf.aligned}
    if rf.partial:
        out["global_dims"] = [i for i, d in enumerate(rf.dims) if d.whole]
    if any(d.ends is not None for d in rf.dims):
        # uneven (windowed) units: size is the largest extent over a period of units
        out["period"] = [None if d.whole else d.period for d in rf.dims]
    return out


def rf_text(rf: RF | None) -> str:
    if rf is None:
        return "-"
    if rf.global_:
        return "global"
    def one(d) -> str:  # "≤": uneven units (windows), the largest extent
        return "global" if d.whole else ("≤" if d.ends is not None else "") + _frac(d.size)
    texts = [one(d) for d in rf.dims]
    text = "×".join(texts) if len(set(texts)) > 1 else texts[0]
    return text if rf.aligned else f"{text} (misaligned)"


def _frac(x) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


_ROW_NAMES = tuple(m.name for m in ROW_METRICS)


_UNKNOWABLE = {m.name for m in ROW_METRICS if m.unknowable and m.fallback is None}


def layer_dict(r: LayerResult, fields: dict[int, Any] | None = None) -> dict[str, Any]:
    """A row as JSON: every metric the row has (None: the report does not carry it).
    ``fields``: the JSON of fields already written, by ``id`` of the RF (a field passes
    unchanged through activations and norms: one conversion serves those rows)."""
    rf = r.rf
    if fields is None:
        field_json = rf_json(rf)
    else:
        field_json = fields.get(id(rf))
        if field_json is None:
            field_json = fields[id(rf)] = rf_json(rf)
    d: dict[str, Any] = {"name": r.name, "type": r.type, "from": r.sources,
                         "shape": list(r.shape), "receptive_field": field_json,
                         "line": r.line}
    values = r.__dict__
    for name in _ROW_NAMES:
        value = values[name]
        if value is not None or name in _UNKNOWABLE:  # unknown: null
            d[name] = value
    if len(r.output_shapes) > 1:
        d["output_shapes"] = [list(s) for s in r.output_shapes]
    if r.tied_to:
        d["tied_to"] = r.tied_to
    d.update(r.extra)
    return d


def totals_dict(report: Report) -> dict[str, Any]:
    """Every total the report carries; one with a fallback only when it or another of
    its group differs from its fallback (pruning figures only for pruned models,
    ``active_params`` only with a mixture of experts)."""
    t = report.totals
    out: dict[str, Any] = {}
    for m in METRICS:
        value = getattr(t, m.key)
        if value is None and m.unknowable and m.fallback is None:
            out[m.key] = None  # unknown: it includes an Opaque layer
            continue
        if value is None or (m.fallback is not None and _as_fallback(t, m.group)):
            continue
        out[m.key] = value
    return out


def _as_fallback(t: Any, group: str) -> bool:
    return all(getattr(t, m.key) == getattr(t, m.fallback) for m in METRICS
               if m.fallback and m.group == group)


def report_dict(report: Report, depth: int | None = None) -> dict[str, Any]:
    totals = totals_dict(report)
    rows = collapse(report, depth)  # alive while ``fields`` is keyed by their RFs' ids
    fields: dict[int, Any] = {}
    out = {
        "format_version": JSON_VERSION,
        "name": report.name,
        "file": report.file,
        "batch": report.batch,
        "dtype": report.dtype,
        **report.dtypes.json(),
        "inputs": {k: list(v) for k, v in report.inputs.items()},
        "layers": [layer_dict(r, fields) for r in rows],
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
    metric: Metric | None = None  # its total is the column's footer


def metric_text(m: Metric, value: int | None) -> str:
    """A metric's value in human units: ``11.7 M``, ``3.21 MB``; ``-`` for none or 0
    (a byte count shows 0 B)."""
    if value is None:
        return UNKNOWN if m.unknowable else "-"
    if m.bytes:
        return human_bytes(value)
    return human(value) if value else "-"


def _metric_column(m: Metric) -> Column:
    def text(r: LayerResult) -> str:
        shown = metric_text(m, getattr(r, m.name))
        return f"{shown} (tied)" if m.name == "params" and r.tied_to and r.params else shown

    return Column(m.column or m.name, lambda r: getattr(r, m.name), text, True, m)


IDENTITY_COLUMNS = (
    Column("Layer", lambda r: r.name, lambda r: r.name),
    Column("Type", lambda r: r.type, lambda r: r.type),
    Column("Output shape", lambda r: shape_text(r.shape), lambda r: shape_text(r.shape)),
    Column("RF", lambda r: rf_text(r.rf), lambda r: rf_text(r.rf)),
)


def columns(report: Report) -> list[Column]:
    """The columns of this report: identity, then each metric with a column title that
    the report carries (training columns only with --train)."""
    return [*IDENTITY_COLUMNS, *(_metric_column(m) for m in METRIC_COLUMNS
                                 if m.unknowable or getattr(report.totals, m.key) is not None)]
