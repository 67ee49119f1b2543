"""Run a command as a fresh process and measure its wall time and peak RSS."""

from __future__ import annotations

import os
import statistics
import subprocess
import time


def run_once(cmd: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of one run of ``cmd``; raises if it fails."""
    seconds, _, rss = run_timed(cmd)
    return seconds, rss


def run_timed(cmd: list[str]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds (user + system: the wall time of an idle machine, the
    figure to compare when other work shares the CPUs), peak RSS in bytes) of one run."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    err = p.stderr.read().decode() if p.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def measure(cmd: list[str], runs: int) -> tuple[float, int]:
    """Median seconds and the largest peak RSS over ``runs`` fresh processes."""
    results = [run_once(cmd) for _ in range(runs)]
    return statistics.median(t for t, _ in results), max(m for _, m in results)
