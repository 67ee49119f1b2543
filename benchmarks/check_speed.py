"""`netcalc check` over 100 specs as a whole process, and proof that torch is not imported.

Copies the spec library round-robin into 100 files in a temporary folder (every copy
keeps its `expect:` and `budget:` blocks, so everything is evaluated), then times
``netcalc check DIR`` as a fresh process (median of several runs), and runs it once
more under ``python -X importtime`` to list every module it imported:

    python benchmarks/check_speed.py [--runs 7] [--specs 100]

Target (issue 6): about a second for 100 specs, and no torch (nor fvcore) import.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _proc import measure

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "specs").glob("*.yaml"))
CLI = "from netcalc.cli import app; app()"


def make_copies(folder: Path, n: int) -> None:
    for i in range(n):
        src = LIBRARY[i % len(LIBRARY)]
        shutil.copyfile(src, folder / f"{i:03d}_{src.name}")


def imported_modules(cmd: list[str]) -> list[str]:
    """Top-level names of every module the command imported (``-X importtime``)."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name.split(".")[0])
    return sorted(names)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--specs", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_copies(folder, args.specs)
        cmd = [sys.executable, "-c", CLI, "check", str(folder)]
        seconds, rss = measure(cmd, args.runs)
        print(f"netcalc check, {args.specs} specs ({len(LIBRARY)} library specs round-robin): "
              f"median {seconds:.3f} s over {args.runs} fresh processes, peak RSS {rss / 1e6:.0f} MB "
              f"(target: about 1 s)")
        startup, _ = measure([sys.executable, "-c", CLI, "--version"], args.runs)
        print(f"of which interpreter + CLI start-up (netcalc --version): {startup:.3f} s")
        modules = imported_modules([sys.executable, "-X", "importtime", *cmd[1:]])
    heavy = [m for m in modules if m in ("torch", "fvcore", "torchinfo", "numpy", "rich")]
    print(f"modules imported: {len(modules)}; torch/fvcore/torchinfo/numpy/rich among them: "
          f"{heavy or 'none'}")
    assert "torch" not in modules, "netcalc check imported torch"
    assert "fvcore" not in modules, "netcalc check imported fvcore"


if __name__ == "__main__":
    main()
