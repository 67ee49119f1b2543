"""The training analysis costs little on top of the inference one, and `fit` is instant.

Fresh processes, interleaved so a slow spell of the machine hits both sides; medians:

    python benchmarks/training_speed.py [--runs 9]

Targets (issue 10): ``shapes --train --format json`` <= 1.25x ``shapes --format json``
on ResNet-50 and on Llama-2-7B; ``fit`` on Llama-2-7B <= 0.5 s as a whole process.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import statistics
import sys
from pathlib import Path

from _proc import run_once

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    netcalc = shutil.which("netcalc") or sys.exit("netcalc is not installed")
    import netcalc as package

    compileall.compile_dir(Path(package.__file__).parent, quiet=1)  # as pip install does
    for spec in ("resnet50", "llama2_7b"):
        path = str(ROOT / "specs" / f"{spec}.yaml")
        plain = [netcalc, "shapes", path, "--format", "json"]
        train = plain + ["--train"]
        a, b = [], []
        for _ in range(args.runs):
            a.append(run_once(plain)[0])
            b.append(run_once(train)[0])
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{spec}: shapes {ma:.3f} s, shapes --train {mb:.3f} s, ratio {mb / ma:.2f}x "
              f"(target <= 1.25x)")
    fit = [netcalc, "fit", str(ROOT / "specs" / "llama2_7b.yaml"), "--memory", "80GB",
           "--train", "--precision", "bf16", "--checkpoint", "blocks"]
    times = [run_once(fit)[0] for _ in range(args.runs)]
    print(f"llama2_7b: fit --memory 80GB --train --precision bf16 --checkpoint blocks: "
          f"median {statistics.median(times):.3f} s (target <= 0.5 s)")


if __name__ == "__main__":
    main()
