"""What the hardware can do: peak matmul throughput and memory bandwidth, and the roofline.

A short calibration measures, once per device, thread count, dtype and torch version:

- peak throughput: a large square GEMM (``a @ b``, 2·n³ FLOP), n grown until one
  product takes long enough to time well, best of a few runs; on the CPU also a large
  3×3 convolution (the conv library can beat the BLAS, e.g. MKL on AMD), the better
  of the two;
- memory bandwidth: a large tensor copy (``dst.copy_(src)``, read + write = 2 × bytes),
  best of a few runs.

Results are cached in ``$NETCALC_CACHE_DIR/hardware.json`` (default
``$XDG_CACHE_HOME/netcalc`` or ``~/.cache/netcalc``), so later profiles reuse them.

The roofline compares a layer's arithmetic intensity (FLOP per byte moved; bytes =
weights + input + output activations at the dtype) with the ridge point
``peak_flops / peak_bandwidth``: below it a layer is memory-bound (its ceiling is
``intensity × bandwidth``), above it compute-bound (its ceiling is the peak).
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CACHE_VERSION = 2
CACHE_FILE = "hardware.json"


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


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name(torch.cuda.current_device())
    return cpu_name()


def cache_key(device: str, dtype: str) -> str:
    import torch

    if device == "cuda":
        idx = torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(idx)
        where = f"cuda:{device_name('cuda')}:sm{major}{minor}"
    else:
        where = f"cpu:{cpu_name()}:{torch.get_num_threads()}t"
    return f"{where}:{dtype}:torch{torch.__version__}"


# ------------------------------------------------------------------ measurement
def _timer(device: str):
    """A function timing ``fn`` once (seconds), synchronising a CUDA device."""
    import torch

    if device == "cuda":
        def run(fn) -> float:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return run

    def run_cpu(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    return run_cpu


def _best(timer, fn, repeats: int, min_time: float) -> float:
    """The fastest of at least ``repeats`` runs lasting at least ``min_time`` seconds together.

    The best, not the median: a peak is what the hardware can do, and on a shared
    machine slower runs are mostly other work's interference or clock ramp-up.
    """
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_time:
        times.append(timer(fn))
        if len(times) >= 1000:
            break
    return min(times)


def measure_gemm(device: str, dtype: str, *, target_s: float = 0.02, max_n: int | None = None,
                 repeats: int = 5, min_time: float = 1.0) -> tuple[float, int]:
    """Peak matmul FLOP/s: n doubled until one product takes ``target_s``; then the best
    of ``repeats`` runs and ``min_time`` seconds."""
    import torch

    tdtype = getattr(torch, dtype)
    max_n = max_n or (16384 if device == "cuda" else 4096)
    timer = _timer(device)
    n = min(512, max_n)
    with torch.inference_mode():
        while True:
            a = torch.randn(n, n, device=device).to(tdtype)
            b = torch.randn(n, n, device=device).to(tdtype)
            timer(lambda: a @ b)  # warm-up (kernel selection, thread pool start)
            t = min(timer(lambda: a @ b) for _ in range(3))  # one hiccup must not stop the growth
            if t >= target_s or n >= max_n:
                break
            del a, b
            n *= 2
        best = min(t, _best(timer, lambda: a @ b, repeats - 1, min_time))
    del a, b
    return 2 * n**3 / best, n


def measure_conv(device: str, dtype: str, *, target_s: float = 0.02, max_batch: int = 64,
                 repeats: int = 5, min_time: float = 1.0) -> tuple[float, int]:
    """FLOP/s of a large 3×3 convolution (256→256 channels, 14×14): the CPU's convolution
    library (oneDNN) may reach more of the hardware than its BLAS GEMM does (MKL on AMD,
    say), so the CPU peak is the better of the two. Returns (FLOP/s, batch)."""
    import torch
    import torch.nn.functional as F

    tdtype = getattr(torch, dtype)
    timer = _timer(device)
    c, hw_ = 256, 14
    n = 1
    with torch.inference_mode():
        w = torch.randn(c, c, 3, 3, device=device).to(tdtype)
        while True:
            x = torch.randn(n, c, hw_, hw_, device=device).to(tdtype)
            timer(lambda: F.conv2d(x, w, padding=1))
            t = min(timer(lambda: F.conv2d(x, w, padding=1)) for _ in range(3))
            if t >= target_s or n >= max_batch:
                break
            n *= 2
        best = min(t, _best(timer, lambda: F.conv2d(x, w, padding=1), repeats - 1, min_time))
    flops = 2 * n * c * hw_ * hw_ * c * 9
    return flops / best, n


def measure_copy(device: str, dtype: str, *, nbytes: int | None = None,
                 repeats: int = 5, min_time: float = 0.5) -> tuple[float, int]:
    """Memory bandwidth (bytes/s) of a large copy: read + write = 2 × bytes, best of ``repeats``."""
    import torch

    tdtype = getattr(torch, dtype)
    nbytes = nbytes or (1 << 30 if device == "cuda" else 1 << 28)
    numel = nbytes // torch.empty((), dtype=tdtype).element_size()
    timer = _timer(device)
    with torch.inference_mode():
        src = torch.ones(numel, dtype=tdtype, device=device)
        dst = torch.empty_like(src)
        timer(lambda: dst.copy_(src))  # warm-up: pages touched
        best = _best(timer, lambda: dst.copy_(src), repeats, min_time)
        real = src.numel() * src.element_size()
    del src, dst
    if device == "cuda":
        torch.cuda.empty_cache()
    return 2 * real / best, real


def calibrate(device: str = "cpu", dtype: str = "float32", *, force: bool = False,
              use_cache: bool = True, quick: bool = False) -> Hardware:
    """The device's limits at ``dtype``: from the cache, else measured now (and cached).

    ``quick`` measures smaller problems (for tests); quick results are not cached.
    """
    import torch

    key = cache_key(device, dtype)
    path = cache_dir() / CACHE_FILE
    if use_cache and not force and not quick:
        entry = _read_cache(path).get(key)
        if isinstance(entry, dict):
            try:
                hw = Hardware(**{k: entry[k] for k in Hardware.__dataclass_fields__
                                 if k != "cached" and k in entry})
                hw.cached = True
                return hw
            except (KeyError, TypeError):
                pass
    kernel = "matmul"
    if quick:
        flops, n = measure_gemm(device, dtype, target_s=0.002, max_n=256, repeats=2, min_time=0)
        bw, nbytes = measure_copy(device, dtype, nbytes=1 << 22, repeats=2, min_time=0)
    else:
        flops, n = measure_gemm(device, dtype)
        if device == "cpu":
            conv_flops, _ = measure_conv(device, dtype)
            if conv_flops > flops:
                flops, kernel = conv_flops, "conv2d"
        bw, nbytes = measure_copy(device, dtype)
    threads = torch.get_num_threads() if device == "cpu" else None
    name = device_name(device)
    hw = Hardware(device=device, name=name, dtype=dtype, threads=threads, peak_flops=flops,
                  peak_bandwidth=bw, gemm_n=n, copy_bytes=nbytes, peak_kernel=kernel,
                  torch_version=torch.__version__, measured_at=time.time(),
                  load_average=load_average())
    if use_cache and not quick:
        entries = _read_cache(path)
        d = asdict(hw)
        d.pop("cached")
        entries[key] = d
        _write_cache(path, entries)
    return hw


# --------------------------------------------------------------------- roofline
def roofline(macs: int, bytes_moved: int, seconds: float, hw: Hardware | None) -> dict[str, Any]:
    """Achieved throughput, intensity and where a piece of work sits on the roofline.

    ``fraction_of_peak``: achieved FLOP/s over the GEMM peak; ``fraction_of_roofline``:
    achieved over the attainable ceiling at this intensity (min(peak, intensity × bw)).
    Work without MACs (activations, norms, adds) is memory-bound by definition.
    """
    out: dict[str, Any] = {
        "macs_per_s": macs / seconds if seconds > 0 else None,
        "flops_per_s": 2 * macs / seconds if seconds > 0 else None,
        "bytes_per_s": bytes_moved / seconds if seconds > 0 else None,
        "intensity_mac_per_byte": macs / bytes_moved if bytes_moved else None,
        "intensity_flop_per_byte": 2 * macs / bytes_moved if bytes_moved else None,
        "fraction_of_peak": None,
        "fraction_of_bandwidth": None,
        "fraction_of_roofline": None,
        "bound": None,
    }
    if hw is None or seconds <= 0:
        return out
    achieved = 2 * macs / seconds
    out["fraction_of_peak"] = achieved / hw.peak_flops
    out["fraction_of_bandwidth"] = (bytes_moved / seconds) / hw.peak_bandwidth
    intensity = 2 * macs / bytes_moved if bytes_moved else float("inf")
    out["bound"] = "compute" if intensity >= hw.ridge else "memory"
    ceiling = min(hw.peak_flops, intensity * hw.peak_bandwidth)
    if macs and ceiling > 0:
        out["fraction_of_roofline"] = achieved / ceiling
    elif bytes_moved:
        out["fraction_of_roofline"] = out["fraction_of_bandwidth"]
    return out
