"""What a device can do, and where a piece of work sits on its roofline: torch-free.

The limits (:class:`Hardware`) are measured by :mod:`netcalc.torch.calibrate` (a large
GEMM and a large copy, see there) and cached in ``$NETCALC_CACHE_DIR/hardware.json``
(default ``$XDG_CACHE_HOME/netcalc`` or ``~/.cache/netcalc``); this module holds them,
reads and writes the cache and computes the roofline, so a profile can be read and
plotted without torch.

The roofline (Williams, Waterman & Patterson, CACM 2009) compares a layer's arithmetic
intensity (FLOP per byte moved; bytes = weights + input + output activations at the
dtype, :func:`netcalc.memory.layer_bytes`) with the ridge point
``peak_flops / peak_bandwidth``: below it a layer is memory-bound (its ceiling is
``intensity × bandwidth``), above it compute-bound (its ceiling is the peak).
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

CACHE_VERSION = 2
CACHE_FILE = "hardware.json"
_DERIVED = ("peak_macs", "ridge_flop_per_byte", "ridge_mac_per_byte")


@dataclass
class Hardware:
    """Measured limits of one device at one dtype."""

    device: str  # "cpu" | "cuda"
    name: str  # "AMD EPYC (2 threads)", "NVIDIA H100 80GB HBM3"
    dtype: str
    threads: int | None  # CPU threads the calibration ran with
    peak_flops: float  # FLOP/s of the calibration GEMM (1 MAC = 2 FLOP)
    peak_bandwidth: float  # bytes/s of the calibration copy (read + write)
    gemm_n: int
    copy_bytes: int
    torch_version: str
    measured_at: float  # unix time
    load_average: float | None = None  # 1-minute load when measured (CPU contention shows here)
    peak_kernel: str = "matmul"  # which kernel reached the peak: "matmul" or "conv2d"
    cached: bool = False  # read back from the cache rather than measured now

    @property
    def ridge(self) -> float:
        """The roofline's ridge point in FLOP per byte."""
        return self.peak_flops / self.peak_bandwidth

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["peak_macs"] = self.peak_flops / 2
        d["ridge_flop_per_byte"] = self.ridge
        d["ridge_mac_per_byte"] = self.ridge / 2
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Hardware":
        """The inverse of :meth:`to_dict` (derived figures are recomputed)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class Roof:
    """Achieved throughput and intensity of a piece of work, and its place on the roofline.

    ``fraction_of_peak``: achieved FLOP/s over the calibrated peak; ``fraction_of_roofline``:
    achieved over the attainable ceiling at this intensity (min(peak, intensity × bw));
    ``bound``: "compute" or "memory" (None without calibrated limits).
    """

    macs_per_s: float | None = None
    flops_per_s: float | None = None
    bytes_per_s: float | None = None
    intensity_mac_per_byte: float | None = None
    intensity_flop_per_byte: float | None = None
    fraction_of_peak: float | None = None
    fraction_of_bandwidth: float | None = None
    fraction_of_roofline: float | None = None
    bound: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Roof":
        return cls(**{f.name: d.get(f.name) for f in fields(cls)})


# ------------------------------------------------------------------------ cache
def cache_dir() -> Path:
    env = os.environ.get("NETCALC_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "netcalc"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _write_cache(path: Path, entries: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs a re-calibration next time


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


# --------------------------------------------------------------------- roofline
def roofline(macs: int, bytes_moved: int, seconds: float, hw: Hardware | None) -> Roof:
    """Achieved throughput, intensity and where a piece of work sits on the roofline.
    Work without MACs (activations, norms, adds) is memory-bound by definition."""
    out = Roof(
        macs_per_s=macs / seconds if seconds > 0 else None,
        flops_per_s=2 * macs / seconds if seconds > 0 else None,
        bytes_per_s=bytes_moved / seconds if seconds > 0 else None,
        intensity_mac_per_byte=macs / bytes_moved if bytes_moved else None,
        intensity_flop_per_byte=2 * macs / bytes_moved if bytes_moved else None,
    )
    if hw is None or seconds <= 0:
        return out
    achieved = 2 * macs / seconds
    out.fraction_of_peak = achieved / hw.peak_flops
    out.fraction_of_bandwidth = (bytes_moved / seconds) / hw.peak_bandwidth
    intensity = 2 * macs / bytes_moved if bytes_moved else float("inf")
    out.bound = "compute" if intensity >= hw.ridge else "memory"
    ceiling = min(hw.peak_flops, intensity * hw.peak_bandwidth)
    if macs and ceiling > 0:
        out.fraction_of_roofline = achieved / ceiling
    elif bytes_moved:
        out.fraction_of_roofline = out.fraction_of_bandwidth
    return out
