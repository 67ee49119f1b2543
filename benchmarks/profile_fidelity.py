"""Fidelity of `netcalc profile`: its median against torch.utils.benchmark.Timer's.

One run times the ResNet-18 built from specs/resnet18.yaml two ways, on the very
same module and input tensor:

* netcalc's profiler (the engine behind `netcalc profile`: eval, inference_mode,
  warm-up, adaptive blocks, then the hooked per-layer pass);
* ``torch.utils.benchmark.Timer(...).blocked_autorange()`` directly, with the same
  thread count (Timer defaults to 1 thread; we pass ``torch.get_num_threads()``) and
  the same inference_mode.

The two are interleaved over several rounds (A B, B A, A B, ...) so drift and
neighbours' load hit both alike; the verdict compares the medians of the round
medians. It prints both medians and their ratio (must be within ±10%), the
per-layer mode's overhead, and the calibrated peak FLOP/s and bandwidth.

    .venv/bin/python benchmarks/profile_fidelity.py [--rounds 5] [--min-time 2] [--batch 1]

Exit status 0 when the ratio is within the tolerance, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.utils.benchmark as tbench

import netcalc
from netcalc.torch.build import build_module
from netcalc.torch.hardware import calibrate
from netcalc.torch.profile import ProfileOptions, profile_module

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(ROOT / "specs" / "resnet18.yaml"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of both timers")
    ap.add_argument("--min-time", type=float, default=2.0, help="seconds measured per timing")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    spec = netcalc.load(args.spec)
    report = netcalc.analyze(spec, batch=args.batch)
    torch.manual_seed(0)
    model = build_module(report.graph).eval()
    shape = report.inputs[next(iter(report.inputs))]
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    print(f"{report.name}, batch {args.batch}, {report.totals.macs:,} MACs; "
          f"torch {torch.__version__}, {threads} threads, {args.rounds} interleaved rounds of {args.min_time:g} s each")

    hw = calibrate("cpu", "float32")
    print(f"calibration (cpu, float32, {'cached' if hw.cached else 'measured now'}): "
          f"peak {hw.peak_flops / 1e9:.1f} GFLOP/s ({hw.peak_kernel}; GEMM n={hw.gemm_n}), "
          f"bandwidth {hw.peak_bandwidth / 1e9:.1f} GB/s (copy {hw.copy_bytes >> 20} MiB), "
          f"ridge {hw.ridge:.2f} FLOP/B")

    def run() -> None:
        with torch.inference_mode():
            model(x)

    def netcalc_round(per_layer: bool):
        opts = ProfileOptions(device="cpu", batches=(args.batch,), warmup=args.warmup,
                              min_time=args.min_time, per_layer=per_layer, calibrate=False)
        result = profile_module(lambda r, d: model, lambda b: report, opts,
                                inputs_fn=lambda r, d: [x])
        (cfg,) = result.configs
        if cfg.status != "ok":
            raise SystemExit(f"netcalc profile failed: {cfg.status} {cfg.error}")
        return cfg

    def timer_round() -> float:
        timer = tbench.Timer(stmt="run()", globals={"run": run}, num_threads=threads,
                             label=report.name, description="torch.utils.benchmark")
        for _ in range(args.warmup):
            run()
        return timer.blocked_autorange(min_run_time=args.min_time).median

    ours: list[float] = []
    theirs: list[float] = []
    per_layer = None
    for i in range(args.rounds):
        order = ("netcalc", "timer") if i % 2 == 0 else ("timer", "netcalc")
        for who in order:
            t0 = time.perf_counter()
            if who == "netcalc":
                cfg = netcalc_round(per_layer=per_layer is None)
                if cfg.per_layer is not None:
                    per_layer = cfg.per_layer
                ours.append(cfg.latency.median)
                extra = f" ({cfg.latency.runs} blocks × {cfg.latency.number})"
                value = ours[-1]
            else:
                theirs.append(timer_round())
                value, extra = theirs[-1], ""
            print(f"  round {i + 1} {who:8s} median {value * 1e3:8.3f} ms{extra}  "
                  f"[{time.perf_counter() - t0:.1f} s]")
        sys.stdout.flush()

    a, b = statistics.median(ours), statistics.median(theirs)
    ratio = a / b
    print(f"netcalc profile median:        {a * 1e3:.3f} ms")
    print(f"torch.utils.benchmark median:  {b * 1e3:.3f} ms")
    print(f"ratio netcalc / Timer:         {ratio:.4f} ({(ratio - 1) * 100:+.1f}%, "
          f"tolerance ±{args.tolerance * 100:.0f}%)")
    if per_layer is not None:
        print(f"per-layer mode: hooked forward {per_layer.hooked.median * 1e3:.3f} ms vs plain "
              f"{ours[0] * 1e3:.3f} ms in the same round: overhead "
              f"{per_layer.overhead_s * 1e3:+.3f} ms ({per_layer.overhead_fraction * 100:+.1f}%); "
              f"{len(per_layer.layers)} layers timed, their medians sum to "
              f"{sum(l.stats.median for l in per_layer.layers) * 1e3:.3f} ms")
    achieved = 2 * report.totals.macs / a
    print(f"achieved {achieved / 1e9:.1f} GFLOP/s = {achieved / hw.peak_flops * 100:.1f}% of the "
          "calibrated peak")
    ok = abs(ratio - 1) <= args.tolerance
    print("PASS" if ok else "FAIL", "(medians agree within tolerance)" if ok else
          "(medians differ by more than the tolerance)")
    if args.json:
        args.json.write_text(json.dumps({
            "spec": args.spec, "batch": args.batch, "threads": threads, "rounds": args.rounds,
            "netcalc_medians_s": ours, "timer_medians_s": theirs, "netcalc_median_s": a,
            "timer_median_s": b, "ratio": ratio, "ok": ok,
            "per_layer_overhead_s": per_layer.overhead_s if per_layer else None,
            "per_layer_overhead_fraction": per_layer.overhead_fraction if per_layer else None,
            "peak_flops": hw.peak_flops, "peak_bandwidth": hw.peak_bandwidth,
        }, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
