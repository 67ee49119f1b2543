"""`netcalc shapes` as a whole process vs torchinfo's summary of the same ResNet-50.

Prints both medians, their ratio and both peak memories, measured in one run:

    python benchmarks/shapes_speed.py [--runs 11]

Target (issue 2): netcalc median <= 0.25 s and <= 0.06x torchinfo's. torchvision
cannot be installed beside the CPU torch wheel here, so torchinfo summarises the
ResNet-50 that netcalc's torch builder makes from specs/resnet50.yaml: the same
architecture (25,557,032 params, asserted below) that torchvision's resnet50 is.

netcalc's bytecode is compiled first, as ``pip install`` does for an installed
package (torch's is too): an editable install under PYTHONDONTWRITEBYTECODE=1, as on
this machine, would otherwise recompile every module on every run (+60 ms).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import shutil
import statistics
import sys
from pathlib import Path

from _proc import measure, run_once

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
    import netcalc as package

    compileall.compile_dir(Path(package.__file__).parent, quiet=1)
    netcalc_cmd = [netcalc, "shapes", str(SPEC), "--format", "json"]
    if importlib.util.find_spec("torchinfo") is None:  # not imported: torch would bloat the forks
        nc_time, nc_mem = measure(netcalc_cmd, args.runs)
        print(f"netcalc shapes resnet50 --format json: median {nc_time:.3f} s, "
              f"peak RSS {nc_mem / 1e6:.0f} MB  (target <= 0.25 s)")
        print("torchinfo not installed (pip install torchinfo): comparison skipped")
        return
    # Interleaved rounds (three netcalc runs, one torchinfo run), so that a slow spell
    # of the machine hits both sides of the ratio.
    nc, ti = [], []
    for _ in range(max(3, args.runs // 3)):
        nc += [run_once(netcalc_cmd) for _ in range(3)]
        ti.append(run_once([sys.executable, "-c", TORCHINFO]))
    nc_time, nc_mem = statistics.median(t for t, _ in nc), max(m for _, m in nc)
    ti_time, ti_mem = statistics.median(t for t, _ in ti), max(m for _, m in ti)
    print(f"netcalc shapes resnet50 --format json: median {nc_time:.3f} s of {len(nc)} runs, "
          f"peak RSS {nc_mem / 1e6:.0f} MB  (target <= 0.25 s)")
    print(f"torchinfo.summary(resnet50) fresh process: median {ti_time:.3f} s of {len(ti)} runs "
          f"(first {ti[0][0]:.3f} s), peak RSS {ti_mem / 1e6:.0f} MB")
    print(f"ratio netcalc/torchinfo: time {nc_time / ti_time:.3f}x (target <= 0.06x), "
          f"memory {nc_mem / ti_mem:.3f}x")

if __name__ == "__main__":
    main()
