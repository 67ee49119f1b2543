"""The costliest specs the limits accept, and what the limits refuse, as `netcalc check` runs.

Each case is a generated spec checked by a fresh ``python -m netcalc check`` process
under a 1 GB address-space limit (RLIMIT_AS) and a 20-second timeout; the table lists
its exit code, wall time, CPU time (user + system: the wall time of an idle machine,
the figure to read when other work shares the CPUs), peak RSS and the first message:

    python benchmarks/limits.py [--only NAME] [--timeout 20]

Target (issue 11): every spec the limits accept finishes within about 10 s and 1 GB
(README, "Limits").
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AS_LIMIT = 10**9
TIMEOUT = 20
# two reports (expect at batch 2, budget at batch 3) under two other conventions: the
# most work check does per spec
SETTINGS = ("expect: {batch: 2, dtype: float16, convention: fvcore, params: 1}\n"
            "budget: {batch: 3, convention: torchinfo, macs: 1}\n")
CONV = "Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}"
N = 20_000  # graph.MAX_NODES


def distinct_instances(levels: int) -> str:
    """2**levels block instances, each with different arguments (${a*2}, ${a*2+1})."""
    lines = ["input: [8]", "blocks:"]
    for i in range(levels):
        if i + 1 < levels:
            body = f"[{{B{i + 1}: {{a: '${{a*2}}'}}}}, {{B{i + 1}: {{a: '${{a*2+1}}'}}}}]"
        else:
            body = "[{Linear: 8}]"
        lines += [f"  B{i}:", "    args: {a: 1}", f"    layers: {body}"]
    return "\n".join(lines) + "\nlayers: [B0]\n" + SETTINGS


CASES: dict[str, tuple[str, list[str]]] = {
    # accepted at the limits
    # (a Transformer layer counts as the 10 or 14 modules torch builds for it)
    "2,000 TransformerEncoderLayer, 2 reports": (
        "input: [4, 8]\n" + SETTINGS + "layers: [{TransformerEncoderLayer: {nhead: 2, "
        f"dim_feedforward: 16}}, repeat: {N // 10}}}]\n", []),
    "1,428 TransformerDecoderLayer, 2 reports": (
        "inputs: {x: [4, 8], m: [4, 8]}\n" + SETTINGS + "layers:\n  - {name: t, "
        "TransformerDecoderLayer: {nhead: 2, dim_feedforward: 16}, from: [x, m], "
        f"repeat: {N // 14}}}\n", []),
    "10k MultiheadAttention, 2 reports": (
        "input: [4, 8]\n" + SETTINGS + "layers: [{MultiheadAttention: 2, "
        f"repeat: {N // 2}}}]\n", []),
    "20k Conv2d lines + 490k YAML nodes, 2 reports": (
        "input: [4, 8, 8]\n" + SETTINGS + "description: [" + "0," * 310_000 + "]\n"
        "layers:\n" + f"  - {CONV}\n" * N, []),
    "1,000-layer block x 20, 2 reports": (
        "input: [4, 8, 8]\nblocks:\n  B:\n    args: {c: 4}\n    layers:\n"
        + "      - Conv2d: {out_channels: $c, kernel_size: 3, padding: '${c - 3}'}\n" * 1000
        + f"layers: [{{B: ~, repeat: {N // 1000}}}]\n" + SETTINGS, []),
    "2^14 distinct block instances": (distinct_instances(15), []),
    "20k layers on one line": (
        "input: [8]\n" + SETTINGS + "layers: [" + ", ".join(["ReLU"] * N) + "]\n", []),
    "Add of 10,000 inputs": (
        "input: [8]\nlayers:\n  - {name: r, ReLU: ~}\n  - {Add: ~, from: ["
        + ", ".join(["r"] * 10_000) + "]}\n", []),
    # refused
    "20k TransformerEncoderLayer (200k modules)": (
        "input: [4, 8]\nlayers: [{TransformerEncoderLayer: {nhead: 2, "
        f"dim_feedforward: 16}}, repeat: {N}}}]\n", []),
    "20,001 layers (nested repeats)": (
        "input: [8]\nblocks:\n  A: [{ReLU: ~, repeat: 4001}]\n  B: [{A: ~, repeat: 5}]\n"
        "layers: [B]\n", []),
    "2,000,000 lines of - ReLU (--max-file-size 100MB)": (
        "input: [8]\nlayers:\n" + "- ReLU\n" * 2_000_000, ["--max-file-size", "100MB"]),
    "alias bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n"
            for i in range(8)) + "input: [8]\nlayers: [ReLU]\n", []),
    "budget 1e99999999": ("input: [8]\nlayers: [ReLU]\nbudget: {params: 1e99999999}\n", []),
    "int of 5,000 digits": ("input: [" + "9" * 5000 + "]\nlayers: [ReLU]\n", []),
    "lists nested 990 deep": ("input: [8]\nlayers: [ReLU]\ndescription: " + "[" * 990
                              + "]" * 990 + "\n", []),
    "blocks nested 400 deep": (
        "input: [8]\nblocks:\n" + "".join(f"  B{i}: [B{i + 1}]\n" for i in range(400))
        + "  B400: [ReLU]\nlayers: [B0]\n", []),
}


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def run_case(path: Path, extra: list[str], timeout: float
             ) -> tuple[int | str, float, float, int, str]:
    """(exit code or 'timeout', seconds, CPU seconds, peak RSS in bytes, first message)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-m", "netcalc", "check", str(path), *extra],
                             stdout=out, stderr=subprocess.STDOUT, env=env,
                             preexec_fn=limit_memory)
        code: int | str = "timeout"
        while True:  # wait4, not wait: it reports this child's own peak RSS
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                code = p.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.perf_counter() - t0 > timeout:
                p.kill()
                _, status, usage = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.01)
        seconds = time.perf_counter() - t0
        out.seek(0)
        lines = out.read().decode("utf-8", "replace").splitlines()
    first = next((ln.strip() for ln in lines if ln.startswith("  ")), lines[0] if lines else "")
    cpu = usage.ru_utime + usage.ru_stime
    return code, seconds, cpu, usage.ru_maxrss * 1024, first.replace(str(path), "FILE")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", help="run the cases whose name contains this")
    ap.add_argument("--timeout", type=float, default=TIMEOUT,
                    help="wall seconds per case (raise it on a busy machine: CPU time counts)")
    args = ap.parse_args()
    print(f"{'case':52} {'exit':>7} {'wall s':>7} {'CPU s':>6} {'peak RSS':>9}  first message")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (text, extra) in CASES.items():
            if args.only and args.only not in name:
                continue
            path = Path(tmp) / "case.yaml"
            path.write_text(text)
            code, seconds, cpu, rss, first = run_case(path, extra, args.timeout)
            print(f"{name:52} {code!s:>7} {seconds:7.2f} {cpu:6.2f} {rss / 1e6:6.0f} MB  "
                  f"{first[:60]}")


if __name__ == "__main__":
    main()
