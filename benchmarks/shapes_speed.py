"""`netcalc shapes` as a whole process vs torchinfo's summary of the same ResNet-50.

Prints both medians, their ratio and both peak memories, measured in one run:

    python benchmarks/shapes_speed.py [--runs 11]

Target (issue 2): netcalc median <= 0.25 s and <= 0.06x torchinfo's. torchvision
cannot be installed beside the CPU torch wheel here, so torchinfo summarises the
ResNet-50 that netcalc's torch builder makes from specs/resnet50.yaml: the same
architecture (25,557,032 params, asserted below) that torchvision's resnet50 is.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from _proc import measure

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "specs" / "resnet50.yaml"

TORCHINFO = f"""
import torch, torchinfo
from netcalc.torch.build import build_module
model = build_module({str(SPEC)!r})
stats = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0)
assert stats.total_params == 25_557_032, stats.total_params
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=11)
    args = ap.parse_args()
    netcalc = shutil.which("netcalc") or sys.exit("netcalc is not installed")
    nc_time, nc_mem = measure([netcalc, "shapes", str(SPEC), "--format", "json"], args.runs)
    print(f"netcalc shapes resnet50 --format json: median {nc_time:.3f} s, peak RSS {nc_mem / 1e6:.0f} MB"
          f"  (target <= 0.25 s)")
    try:
        import torchinfo  # noqa: F401
    except ImportError:
        print("torchinfo not installed (pip install torchinfo): comparison skipped")
        return
    ti_runs = max(3, args.runs // 3)
    ti_time, ti_mem = measure([sys.executable, "-c", TORCHINFO], ti_runs)
    print(f"torchinfo.summary(resnet50) fresh process: median {ti_time:.3f} s, peak RSS {ti_mem / 1e6:.0f} MB")
    print(f"ratio netcalc/torchinfo: time {nc_time / ti_time:.3f}x (target <= 0.06x), "
          f"memory {nc_mem / ti_mem:.3f}x")


if __name__ == "__main__":
    main()
