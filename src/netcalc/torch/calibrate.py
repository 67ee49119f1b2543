"""Measuring a device's limits: peak matmul throughput and memory bandwidth.

A short calibration measures, once per device, thread count, dtype and torch version:

- peak throughput: a large square GEMM (``a @ b``, 2·n³ FLOP), n grown until one
  product takes long enough to time well, best of a few runs; on the CPU also a large
  3×3 convolution (the conv library can beat the BLAS, e.g. MKL on AMD), the better
  of the two;
- memory bandwidth: a large tensor copy (``dst.copy_(src)``, read + write = 2 × bytes),
  best of a few runs.

Every run is timed by the one timer of :mod:`netcalc.torch.timing`. The result is a
:class:`netcalc.hardware.Hardware`, cached (see there) so later profiles reuse it.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from ..hardware import CACHE_FILE, Hardware, _read_cache, _write_cache, cache_dir, cpu_name
from ..hardware import load_average
from .timing import block_timer


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


def _best(timer, fn, repeats: int, min_time: float) -> float:
    """The fastest of at least ``repeats`` runs of ``timer(fn, 1)`` lasting at least
    ``min_time`` seconds together.

    The best, not the median: a peak is what the hardware can do, and on a shared
    machine slower runs are mostly other work's interference or clock ramp-up.
    """
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_time:
        times.append(timer(fn, 1))
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
    timer = block_timer(device)
    n = min(512, max_n)
    with torch.inference_mode():
        while True:
            a = torch.randn(n, n, device=device).to(tdtype)
            b = torch.randn(n, n, device=device).to(tdtype)
            timer(lambda: a @ b, 1)  # warm-up (kernel selection, thread pool start)
            # the best of 3: one hiccup must not stop the growth
            t = min(timer(lambda: a @ b, 1) for _ in range(3))
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
    timer = block_timer(device)
    c, hw_ = 256, 14
    n = 1
    with torch.inference_mode():
        w = torch.randn(c, c, 3, 3, device=device).to(tdtype)
        while True:
            x = torch.randn(n, c, hw_, hw_, device=device).to(tdtype)
            timer(lambda: F.conv2d(x, w, padding=1), 1)
            t = min(timer(lambda: F.conv2d(x, w, padding=1), 1) for _ in range(3))
            if t >= target_s or n >= max_batch:
                break
            n *= 2
        best = min(t, _best(timer, lambda: F.conv2d(x, w, padding=1), repeats - 1, min_time))
    flops = 2 * n * c * hw_ * hw_ * c * 9
    return flops / best, n


def measure_copy(device: str, dtype: str, *, nbytes: int | None = None,
                 repeats: int = 5, min_time: float = 0.5) -> tuple[float, int]:
    """Memory bandwidth (bytes/s) of a large copy: read + write = 2 × bytes, best of
    ``repeats``."""
    import torch

    tdtype = getattr(torch, dtype)
    nbytes = nbytes or (1 << 30 if device == "cuda" else 1 << 28)
    numel = nbytes // torch.empty((), dtype=tdtype).element_size()
    timer = block_timer(device)
    with torch.inference_mode():
        src = torch.ones(numel, dtype=tdtype, device=device)
        dst = torch.empty_like(src)
        timer(lambda: dst.copy_(src), 1)  # warm-up: pages touched
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
