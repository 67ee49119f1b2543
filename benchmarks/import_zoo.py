"""Import every torchvision classification model and prove the round trip.

    python benchmarks/import_zoo.py [--models resnet50,vit_b_16] [--no-verify] [--markdown]

For each model of ``torchvision.models.list_models(module=torchvision.models)``: import
it (``netcalc.torch.importer.import_target``, built on the meta device, eval mode,
``aux_logits=False`` where it has aux heads) at the evaluation size of its first
weights (``weights.transforms().crop_size``), then compare with torchvision's own
figures of those weights: params equal ``meta["num_params"]``, netcalc's MACs (its own
analysis of the spec, not the source module's) equal ``meta["_ops"]`` GMACs to 3
decimals, output ``[1000]``; and the round trip (``netcalc import --verify``) passes.
A failure is named with its cause. Prints one row per model and a summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

AUX = {"googlenet": {"aux_logits": False, "init_weights": False},
       "inception_v3": {"aux_logits": False, "init_weights": False}}
# the weights' evaluation size needs the model built for it
KWARGS = {**AUX, "vit_h_14": {"image_size": 518}}


def one(name: str, verify: bool) -> dict:
    import torchvision

    import netcalc
    from netcalc.errors import SpecError
    from netcalc.torch.importer import import_target
    from netcalc.torch.roundtrip import roundtrip

    weights = list(torchvision.models.get_model_weights(name))[0]
    size = weights.transforms().crop_size[0]
    row = {"model": name, "size": size, "params": weights.meta["num_params"],
           "ops": weights.meta["_ops"], "status": "ok", "lines": 0}
    t0 = time.perf_counter()
    try:
        imported = import_target(f"torchvision.models:{name}", KWARGS.get(name, {}),
                                 [("", (3, size, size), "float32")])
    except SpecError as exc:
        row.update(status="FAIL", cause=str(exc), seconds=time.perf_counter() - t0)
        return row
    row["seconds"] = time.perf_counter() - t0
    row["lines"] = imported.text.count("\n")
    report = netcalc.analyze(netcalc.parse(imported.text, f"{name}.yaml"))
    row["our_params"] = report.totals.params
    row["gmacs"] = round(report.totals.macs / 1e9, 3)
    problems = []
    if name in AUX and row["our_params"] != row["params"]:  # meta counts the aux heads?
        import torch

        with torch.device("meta"):
            full = getattr(torchvision.models, name)(aux_logits=True, init_weights=False)
        aux = sum(p.numel() for n, p in full.named_parameters() if "aux" in n.lower())
        row["note"] = f"meta num_params {row['params']:,} includes {aux:,} of aux heads"
        row["params"] -= aux
    if row["our_params"] != row["params"]:
        problems.append(f"params {row['our_params']:,} != {row['params']:,}")
    if abs(row["gmacs"] - row["ops"]) > 0.0005:
        problems.append(f"GMACs {row['gmacs']} != _ops {row['ops']}")
    if verify:
        result = roundtrip(imported.text, imported.module, imported.inputs)
        if not result.ok:
            problems.append("round trip: " + result.mismatches[0].message)
    if problems:
        row.update(status="FAIL", cause="; ".join(problems))
    return row


def main() -> None:
    import torchvision

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", help="comma-separated names (default: all)")
    ap.add_argument("--no-verify", action="store_true", help="skip the round trip")
    args = ap.parse_args()
    names = args.models.split(",") if args.models else \
        torchvision.models.list_models(module=torchvision.models)
    rows = []
    print("| model | size | params | GMACs (netcalc) | _ops | lines | s | result |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        try:
            r = one(name, not args.no_verify)
        except Exception as exc:  # noqa: BLE001: a crash is a row, named
            r = {"model": name, "status": "FAIL", "cause": f"crash: {type(exc).__name__}: {exc}",
                 "size": "", "params": 0, "ops": "", "lines": 0}
        rows.append(r)
        result = ("ok" + (f" ({r['note']})" if r.get("note") else "")) if r["status"] == "ok" \
            else r["cause"].replace("|", "/")[:200]
        print(f"| {r['model']} | {r['size']} | {r.get('our_params', 0):,} | {r.get('gmacs', '')}"
              f" | {r['ops']} | {r['lines']} | {r.get('seconds', 0):.1f} | {result} |",
              flush=True)
    ok = sum(r["status"] == "ok" for r in rows)
    print(f"\n{ok}/{len(rows)} models import and round-trip exactly")


if __name__ == "__main__":
    main()
