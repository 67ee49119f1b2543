"""`netcalc report`: whole-process time (Graphviz's layout included) and page size.

Fresh processes, interleaved with `shapes --format json` of the same spec (the
analysis alone), medians:

    python benchmarks/report_speed.py [--runs 7]

Targets (issue 14): ResNet-50 <= 2 s and Llama-2-7B <= 3 s whole process, the layout
included; the HTML of Llama-2-7B <= 2 MB.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import sys
import tempfile
from pathlib import Path

from _proc import run_once

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"resnet50": 2.0, "llama2_7b": 3.0}
MAX_HTML = 2_000_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    import netcalc as package

    compileall.compile_dir(Path(package.__file__).parent, quiet=1)  # as pip install does
    netcalc = [sys.executable, "-m", "netcalc"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, target in TARGETS.items():
            spec = str(ROOT / "specs" / f"{name}.yaml")
            page = Path(tmp, f"{name}.html")
            t_report, t_json = [], []
            for _ in range(args.runs):
                t_report.append(run_once([*netcalc, "report", spec, "-o", str(page)])[0])
                t_json.append(run_once([*netcalc, "shapes", spec, "-f", "json"])[0])
            r, j = statistics.median(t_report), statistics.median(t_json)
            size = page.stat().st_size
            print(f"{name}: report {r:.2f} s (target <= {target:g} s), shapes --format json "
                  f"{j:.2f} s, HTML {size / 1e6:.2f} MB"
                  + (f" (target <= {MAX_HTML / 1e6:g} MB)" if name == "llama2_7b" else ""))


if __name__ == "__main__":
    main()
