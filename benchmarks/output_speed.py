"""Big outputs: the table costs about what the JSON costs, and JSON is close to reading
the YAML at all.

Fresh processes, interleaved, medians:

    python benchmarks/output_speed.py [--runs 7]

Targets (issue 11, item 8): the table within 2x of JSON for the same spec (a
10,000-layer chain and Llama-2-7B); ``shapes --format json`` of a 10,000-layer chain of
Conv2d + ReLU <= 2x a fresh interpreter's plain ``yaml.load(..., Loader=CSafeLoader)``
of the same file (the floor: reading it); 20,000 / 10,000 layers <= 2.2x.
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from _proc import run_once, run_timed

ROOT = Path(__file__).resolve().parent.parent
LOAD = "import sys, yaml; yaml.load(open(sys.argv[1]), Loader=yaml.CSafeLoader)"


def chain(layers: int) -> str:
    lines = ["input: [8, 16, 16]", "layers:"]
    for _ in range(layers // 2):
        lines += ["  - {Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}}", "  - ReLU"]
    return "\n".join(lines) + "\n"


def median(cmd: list[str], runs: int) -> float:
    return statistics.median(run_once(cmd)[0] for _ in range(runs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    netcalc = shutil.which("netcalc") or sys.exit("netcalc is not installed")
    import netcalc as package

    compileall.compile_dir(Path(package.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for n in (10_000, 20_000):
            files[n] = Path(tmp, f"chain{n}.yaml")
            files[n].write_text(chain(n), encoding="utf-8")
        cases = {"chain10k": str(files[10_000]), "llama2_7b": str(ROOT / "specs" / "llama2_7b.yaml")}
        for name, path in cases.items():
            t_json, t_table = [], []
            for _ in range(args.runs):
                t_json.append(run_once([netcalc, "shapes", path, "-f", "json"])[0])
                t_table.append(run_once([netcalc, "shapes", path])[0])
            j, t = statistics.median(t_json), statistics.median(t_table)
            print(f"{name}: json {j:.3f} s, table {t:.3f} s, table/json {t / j:.2f}x "
                  f"(target <= 2x)")
        load, j10, j20 = [], [], []
        for _ in range(args.runs):
            load.append(run_timed([sys.executable, "-c", LOAD, str(files[10_000])]))
            j10.append(run_timed([netcalc, "shapes", str(files[10_000]), "-f", "json"]))
            j20.append(run_timed([netcalc, "shapes", str(files[20_000]), "-f", "json"]))
        for i, clock in ((0, "wall"), (1, "CPU")):  # CPU: user + system, for a busy machine
            lo, a, b = (statistics.median(run[i] for run in x) for x in (load, j10, j20))
            print(f"chain10k ({clock}): yaml.load {lo:.3f} s, shapes --format json {a:.3f} s, "
                  f"ratio {a / lo:.2f}x (target <= 2x)")
            print(f"chain20k ({clock}): shapes --format json {b:.3f} s, 20k/10k {b / a:.2f}x "
                  "(target <= 2.2x)")


if __name__ == "__main__":
    main()
