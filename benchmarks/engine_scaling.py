"""Analysis cost must be linear in the number of layers.

Generates specs of 10,000 and 20,000 layers (conv, BatchNorm, ReLU and a residual
Add, written out entry by entry). Each measurement is a fresh process, as a user's
``netcalc shapes big.yaml`` is, timing inside it, separately, the YAML parse
(``netcalc.parse``) and the engine (``netcalc.analyze``: expand the graph, then
shapes, receptive fields, counts and memory). Sizes are interleaved so that a slow
spell of the machine hits both; medians and ratios are printed:

    python benchmarks/engine_scaling.py [--runs 7]

Targets (issue 2): engine on 10,000 layers <= 0.5 s; 20,000 layers <= 2.2x that.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
import netcalc
text = open(sys.argv[1]).read()
t0 = time.perf_counter()
spec = netcalc.parse(text, sys.argv[1])
t1 = time.perf_counter()
report = netcalc.analyze(spec)
t2 = time.perf_counter()
print(json.dumps({"parse": t1 - t0, "engine": t2 - t1, "layers": len(report.layers)}))
"""


def spec_text(layers: int) -> str:
    lines = ["input: [8, 16, 16]", "layers:"]
    for i in range(layers // 4):
        lines.append(f"  - {{name: c{i}, Conv2d: {{out_channels: 8, kernel_size: 3, padding: 1}}}}")
        lines.append("  - BatchNorm2d")
        lines.append("  - ReLU")
        lines.append(f"  - {{Add: ~, from: [relu_{4 * i + 2}, {'input' if i == 0 else f'add_{4 * i - 1}'}]}}")
    return "\n".join(lines) + "\n"


def time_once(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    sizes = (10_000, 20_000)
    times: dict[int, list[dict]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {n: Path(tmp) / f"layers{n}.yaml" for n in sizes}
        for n, path in paths.items():
            path.write_text(spec_text(n))
        for _ in range(args.runs):
            for n, path in paths.items():
                t = time_once(path)
                assert t["layers"] == n, t
                times[n].append(t)
    med = {n: {k: statistics.median(t[k] for t in times[n]) for k in ("parse", "engine")}
           for n in sizes}
    a, b = med[10_000], med[20_000]
    print(f"10,000 layers: engine {a['engine']:.3f} s (target <= 0.5 s); YAML parse "
          f"{a['parse']:.3f} s; total {a['parse'] + a['engine']:.3f} s  (medians of {args.runs})")
    print(f"20,000 layers: engine {b['engine']:.3f} s, ratio {b['engine'] / a['engine']:.2f}x "
          f"(target <= 2.2x); YAML parse {b['parse']:.3f} s, ratio {b['parse'] / a['parse']:.2f}x")


if __name__ == "__main__":
    main()
