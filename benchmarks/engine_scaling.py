"""Analysis cost must be linear in the number of layers.

Generates specs of 10,000 and 20,000 layers (conv, BatchNorm, ReLU and a residual
Add, written out entry by entry), and times in-process, separately, the YAML parse
and the engine (expand the graph + analyse), printing medians and ratios:

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


def time_analysis(text: str, runs: int = 5) -> tuple[float, float, int]:
    """Median seconds of the YAML parse and of the engine, and the layer count."""
    parse_times, engine_times = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        spec = netcalc.parse(text, "generated.yaml")
        t1 = time.perf_counter()
        report = netcalc.analyze(spec)
        t2 = time.perf_counter()
        parse_times.append(t1 - t0)
        engine_times.append(t2 - t1)
    return statistics.median(parse_times), statistics.median(engine_times), len(report.layers)


def main() -> None:
    p10, e10, n10 = time_analysis(spec_text(10_000))
    p20, e20, n20 = time_analysis(spec_text(20_000))
    print(f"{n10:,} layers: engine {e10:.3f} s (target <= 0.5 s); YAML parse {p10:.3f} s; "
          f"total {p10 + e10:.3f} s")
    print(f"{n20:,} layers: engine {e20:.3f} s, ratio {e20 / e10:.2f}x (target <= 2.2x); "
          f"YAML parse {p20:.3f} s, ratio {p20 / p10:.2f}x")


if __name__ == "__main__":
    main()
