"""`netcalc import` of ResNet-50 as a whole process vs a plain torch.fx trace of it.

    python benchmarks/import_speed.py [--runs 7]

Fresh processes, interleaved (import, baseline, import, ...), medians. The baseline
imports torch and torchvision, builds ``torchvision.models.resnet50()`` and runs
``torch.fx.symbolic_trace`` on it; the import (without ``--verify``) does all that
netcalc adds: the meta run, the folding, the writing. Target (issue 13): ratio <= 2.
netcalc's bytecode is compiled first, as ``pip install`` does.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import sys
from pathlib import Path

from _proc import run_once

ROOT = Path(__file__).resolve().parent.parent
BASELINE = ("import torch, torchvision, torch.fx\n"
            "model = torchvision.models.resnet50()\n"
            "torch.fx.symbolic_trace(model)\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    compileall.compile_dir(str(ROOT / "src" / "netcalc"), quiet=1)
    ours = [sys.executable, "-m", "netcalc", "import", "torchvision.models:resnet50",
            "--input", "3x224x224"]
    theirs = [sys.executable, "-c", BASELINE]
    run_once(ours), run_once(theirs)  # warm the disk cache
    a, b = [], []
    for _ in range(args.runs):
        a.append(run_once(ours)[0])
        b.append(run_once(theirs)[0])
    ma, mb = statistics.median(a), statistics.median(b)
    print(f"netcalc import resnet50:           median {ma:.2f} s over {args.runs} runs")
    print(f"torch+torchvision, build, fx trace: median {mb:.2f} s")
    print(f"ratio {ma / mb:.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
