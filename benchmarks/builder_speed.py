"""The module built from a spec runs as fast as the hand-written torchvision model.

ResNet-50 from ``specs/resnet50.yaml`` (``netcalc.torch.build``, its forward generated
straight-line code) against ``torchvision.models.resnet50``, same weights, eval mode,
CPU, ``torch.no_grad``; ``torch.utils.benchmark.Timer`` medians, the two sides
interleaved for several rounds so that a slow spell of the machine hits both:

    python benchmarks/builder_speed.py [--rounds 5] [--sizes 32,224] [--threads N]

Target (issue 13): built / torchvision <= 1.02 at 32x32 and at 224x224.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.utils.benchmark as benchmark
import torchvision

from netcalc.torch import build

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sizes", default="32,224")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    built = build(ROOT / "specs" / "resnet50.yaml").eval()
    tv = torchvision.models.resnet50().eval()
    built.load_state_dict(tv.state_dict(), strict=True)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds, "
          "median ms per forward (batch 1)")
    for size in (int(s) for s in args.sizes.split(",")):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            assert torch.equal(built(x), tv(x))
        times: dict[str, list[float]] = {"netcalc": [], "torchvision": []}
        for _ in range(args.rounds):
            for name, model in (("netcalc", built), ("torchvision", tv)):
                timer = benchmark.Timer("with torch.no_grad(): model(x)",
                                        globals={"model": model, "x": x, "torch": torch},
                                        num_threads=args.threads)
                times[name].append(timer.blocked_autorange(min_run_time=args.min_time).median)
        a, b = statistics.median(times["netcalc"]), statistics.median(times["torchvision"])
        ratios = [p / q for p, q in zip(times["netcalc"], times["torchvision"])]
        print(f"{size}x{size}: netcalc {a * 1e3:.2f} ms, torchvision {b * 1e3:.2f} ms, "
              f"ratio {a / b:.3f} (per round {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
