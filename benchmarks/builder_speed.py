"""The module built from a spec runs as fast as the hand-written torchvision model.

ResNet-50 from ``specs/resnet50.yaml`` (``netcalc.torch.build``, its forward generated
straight-line code) against ``torchvision.models.resnet50``, same weights, eval mode,
CPU, ``torch.no_grad``; ``torch.utils.benchmark.Timer`` medians, the two sides
interleaved for several rounds so that a slow spell of the machine hits both:

    python benchmarks/builder_speed.py [--rounds 15] [--sizes 32,224] [--threads N]

Prints, per input size, the median over rounds of the two sides' ratio in the same
round (the two measured back to back, so a slow spell of a shared machine hits both),
each side's median and best (min) per-forward time.

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
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--sizes", default="32,224")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--min-time", type=float, default=0.5, help="seconds per measurement")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    built = build(ROOT / "specs" / "resnet50.yaml").eval()
    tv = torchvision.models.resnet50().eval()
    built.load_state_dict(tv.state_dict(), strict=True)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds of "
          f"{args.min_time} s per side, batch 1, eval, no_grad")
    for size in (int(s) for s in args.sizes.split(",")):
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            assert torch.equal(built(x), tv(x))
        compare(f"{size}x{size}", built, tv, x, args)


def compare(label: str, built, tv, x, args) -> None:
    times: dict[str, list[float]] = {"netcalc": [], "torchvision": []}
    for r in range(args.rounds):
        sides = [("netcalc", built), ("torchvision", tv)]
        for name, model in sides if r % 2 == 0 else sides[::-1]:  # neither always first
            timer = benchmark.Timer("with torch.no_grad(): model(x)",
                                    globals={"model": model, "x": x, "torch": torch},
                                    num_threads=args.threads)
            times[name].append(timer.blocked_autorange(min_run_time=args.min_time).median)
    a, b = statistics.median(times["netcalc"]), statistics.median(times["torchvision"])
    lo_a, lo_b = min(times["netcalc"]), min(times["torchvision"])
    ratios = [p / q for p, q in zip(times["netcalc"], times["torchvision"])]
    print(f"{label}: netcalc / torchvision {statistics.median(ratios):.3f} (median of "
          f"{len(ratios)} rounds, quartiles {_quartiles(ratios)}); median {a * 1e3:.2f} vs "
          f"{b * 1e3:.2f} ms, best {lo_a * 1e3:.2f} vs {lo_b * 1e3:.2f} ms")


def _quartiles(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0], xs[0], xs[0]]
    return f"{q[0]:.3f}..{q[2]:.3f}"


if __name__ == "__main__":
    main()
