"""Measured memory of one forward on the CPU: the growth of the process's peak RSS.

``VmHWM`` (the peak resident set) after the forward minus ``VmRSS`` before it, the peak
reset through ``/proc/self/clear_refs`` where the kernel allows it (else the growth of
the earlier peak: a lower bound); ``getrusage`` where ``/proc`` is missing. CUDA's
figure (``max_memory_allocated``) is read in :mod:`netcalc.torch.profile`.
"""

from __future__ import annotations

import gc
from typing import Any, Callable


def _proc_status_kb(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_peak_rss_growth(fn: Callable[[], Any]) -> dict[str, Any]:
    """Peak RSS growth over one call of ``fn``: VmHWM after - VmRSS before (bytes)."""
    gc.collect()
    _malloc_trim()
    reset = _reset_peak_rss()
    before_rss = _proc_status_kb("VmRSS")
    before_hwm = _proc_status_kb("VmHWM")
    if before_rss is None or before_hwm is None:
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"peak_rss_growth_bytes": max(0, after - before) * 1024,
                "method": "getrusage ru_maxrss (a lower bound: growth beyond the earlier peak)"}
    fn()
    after_hwm = _proc_status_kb("VmHWM") or before_hwm
    if reset:
        growth, method = after_hwm - before_rss, "VmHWM after - VmRSS before (peak reset)"
    else:
        growth = after_hwm - before_hwm
        method = "VmHWM growth (peak not resettable: a lower bound)"
    return {"peak_rss_growth_bytes": max(0, growth) * 1024, "baseline_rss_bytes": before_rss * 1024,
            "peak_rss_bytes": after_hwm * 1024, "method": method}
