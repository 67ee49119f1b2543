"""`netcalc fit` output: the batch that fits and the memory breakdown at that batch."""

from __future__ import annotations

import json

from ..fit import FitResult
from ..textsafe import text
from ..units import human_bytes
from .table import training_lines


def fit_dict(r: FitResult) -> dict:
    report = r.report
    t = report.totals
    data = {
        "format_version": 1,
        "name": report.name,
        "file": report.file,
        "memory_bytes": r.memory,
        "mode": "training" if r.train else "inference",
        "dtype": report.dtype,
        **report.dtypes.json(),
        "batch": r.batch,
        "needed_bytes": r.needed,
        "next_batch_bytes": r.needed_next,
    }
    if r.train:
        data["training"] = report.sections["training"]
        data["saved_activation_bytes"] = t.saved_activation_bytes
    else:
        data["inference"] = {"weight_bytes": t.weight_bytes,
                             "peak_activation_bytes": t.peak_activation_bytes}
    return data


def render_fit(r: FitResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(fit_dict(r), indent=2) + "\n"
    report = r.report
    what = "training step" if r.train else "inference"
    if r.batch is None:
        head = (f"{text(report.name)}: nothing fits in {human_bytes(r.memory)} ({r.memory:,} B): "
                f"{what} at batch 1 needs {human_bytes(r.needed)} ({r.needed:,} B)")
    else:
        after = (f"; batch {r.batch + 1:,} would need {human_bytes(r.needed_next)}"
                 if r.needed_next is not None else "")
        head = (f"{text(report.name)}: batch {r.batch:,} fits in {human_bytes(r.memory)} "
                f"({what} needs {human_bytes(r.needed)}, {r.needed:,} B{after})")
    lines = [head]
    if r.train:
        lines += training_lines(report, report.sections["training"])
    else:
        t = report.totals
        lines.append(f"  weights {human_bytes(t.weight_bytes)} + buffers + inference peak of "
                     f"live activations {human_bytes(t.peak_activation_bytes)} "
                     f"at {report.dtypes.label()}")
    return "\n".join(lines) + "\n"
