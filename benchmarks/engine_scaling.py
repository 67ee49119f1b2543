"""Analysis cost must be linear in the number of layers.

Generates specs of 10,000 and 20,000 layers (conv + ReLU pairs with a residual Add
every few layers), times parse + expand + analyse in-process, and prints the
medians and their ratio:

    python benchmarks/engine_scaling.py

Targets (issue 2): 10,000 layers <= 0.5 s; 20,000 layers <= 2.2x that.
"""

from __future__ import annotations

import statistics
import time

import netcalc


def spec_text(layers: int) -> str:
    lines = ["input: [8, 16, 16]", "layers:"]
    for i in range(layers // 4):
        lines.append(f"  - {{name: c{i}, Conv2d: {{out_channels: 8, kernel_size: 3, padding: 1}}}}")
        lines.append("  - BatchNorm2d")
        lines.append("  - ReLU")
        lines.append(f"  - {{Add: ~, from: [relu_{4 * i + 2}, {'input' if i == 0 else f'add_{4 * i - 1}'}]}}")
    return "\n".join(lines) + "\n"


def time_analysis(text: str, runs: int = 5) -> tuple[float, int]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        report = netcalc.analyze(netcalc.parse(text, "generated.yaml"))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(report.layers)


def main() -> None:
    t10, n10 = time_analysis(spec_text(10_000))
    t20, n20 = time_analysis(spec_text(20_000))
    print(f"{n10:,} layers: median {t10:.3f} s  (target <= 0.5 s)")
    print(f"{n20:,} layers: median {t20:.3f} s  ratio {t20 / t10:.2f}x  (target <= 2.2x)")


if __name__ == "__main__":
    main()
