"""The round trip of an import: the written spec against the module it came from.

Two proofs, on the meta device (no weights): ``netcalc verify`` of the spec (every
analytic number of every layer against its built module: shapes, params, buffers,
FlopCounterMode MACs), and the built module against the source module, which share
their module paths: the same ``state_dict`` keys with the same shapes, the same output
shapes, and the same FlopCounterMode MACs under every module path both have (per layer
and per block) and in total.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..spec import parse
from .build import build_module
from .crosscheck import MATCH, MISMATCH, CheckRow, CrossCheckResult, crosscheck

SOURCE = "source"  # the `type` column of the rows that compare with the source module


def _flops_by_path(module: nn.Module, feeds: list[torch.Tensor]) -> tuple[dict[str, int], Any]:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        out = module(*feeds)
    per: dict[str, int] = {}
    for key, ops in counter.get_flop_counts().items():
        if key == "Global":
            continue
        path = key.partition(".")[2]  # drop the root's class name: the root is ''

        per[path] = sum(ops.values()) // 2
    return per, out


def _shapes(value: Any) -> list[list[int]]:
    if isinstance(value, torch.Tensor):
        return [list(value.shape)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _shapes(v)]
    return []


def _row(layer: str, metric: str, spec: Any, source: Any, rule: str = "") -> CheckRow:
    return CheckRow(layer, SOURCE, metric, spec, source, MATCH if spec == source else MISMATCH,
                    rule)


def roundtrip(text: str, source: nn.Module,
              inputs: dict[str, tuple[tuple[int, ...], str]]) -> CrossCheckResult:
    spec = parse(text, "<import>")
    result = crosscheck(spec, device="meta", convention="flopcounter", tools=("flopcounter",),
                        rf=False)
    built = build_module(spec, device="meta").eval()
    ours = {k: list(v.shape) for k, v in built.state_dict().items()}
    theirs = {k: list(v.shape) for k, v in source.state_dict().items()}
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    rule = (f"missing {missing[0]}" if missing else f"extra {extra[0]}" if extra else "")
    result.totals.append(_row("TOTAL", "state_dict keys", len(ours), len(theirs), rule))
    wrong = [k for k in theirs if k in ours and ours[k] != theirs[k]]
    result.totals.append(_row("TOTAL", "state_dict shapes", len(theirs) - len(wrong),
                              len(theirs), f"{wrong[0]}: {ours[wrong[0]]} vs {theirs[wrong[0]]}"
                              if wrong else ""))
    device = next((t.device for t in source.parameters()), torch.device("meta"))
    feeds = [torch.zeros((1, *shape), dtype=torch.int64, device=device) if dtype == "int64"
             else torch.empty((1, *shape), device=device) for shape, dtype in inputs.values()]
    source_flops, source_out = _flops_by_path(source, feeds)
    built_flops, built_out = _flops_by_path(built, [f.to("meta") for f in feeds])
    result.totals.append(_row("TOTAL", "output shapes", _shapes(built_out), _shapes(source_out)))
    for path in source_flops:
        if path and path in built_flops and (source_flops[path] or built_flops[path]):
            result.rows.append(_row(path, "macs (source)", built_flops[path], source_flops[path]))
    result.totals.append(_row("TOTAL", "macs (source)", built_flops.get("", 0),
                              source_flops.get("", 0)))
    return result
