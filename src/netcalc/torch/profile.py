"""Honest timing of a spec's network on CPU and CUDA: whole model, per layer, vs the roofline.

How each figure is taken:

- **Whole model**: eval mode, ``torch.inference_mode()``, ``--warmup`` runs not
  counted, then blocks of ``number`` calls timed back to back, ``number`` chosen
  like ``torch.utils.benchmark``'s ``blocked_autorange`` so a block is long enough
  for the timer's own overhead to vanish; blocks are timed until ``--min-time``
  seconds have been measured (or exactly ``--repeat`` blocks). Median, min and IQR
  are per call. The CPU uses ``time.perf_counter``; CUDA uses CUDA events recorded
  around the block, then synchronises. No hooks are attached during this run.
- **Per layer**: a second pass with forward pre/post hooks on every report layer
  (on CUDA, events recorded in the hooks; on the CPU, the clock read in them), one
  forward per sample; each layer's median over the samples. The difference between
  this pass's median forward time and the plain median is reported as the per-layer
  mode's overhead; hooks never touch the whole-model figure.
- **Bytes moved** by a layer: its weights + its inputs + its outputs at the dtype
  (netcalc's analytic sizes); arithmetic intensity = MACs / bytes moved.
- **Memory**: CUDA ``max_memory_allocated`` (reset and emptied before each
  configuration) beside the analytic weights + buffers + peak live activations; on
  the CPU the growth of the peak RSS (``VmHWM``, reset through
  ``/proc/self/clear_refs`` where allowed) during one forward, beside the analytic
  peak activations.

Entry points: :func:`profile_spec` (build with the torch builder, cross-check, time)
and :func:`profile_module` (time an nn.Module you built, against a report).
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from ..analysis import LayerResult, Report
from ..dtypes import DTYPE_BYTES, INT_BYTES
from ..errors import SpecError
from .guard import check_domain, cuda_unavailable, is_out_of_memory, one_line
from .hardware import Hardware, calibrate, device_name, load_average, roofline

FORMAT_VERSION = 1
DTYPES = ("float32", "float16", "bfloat16")
DEVICES = ("cpu", "cuda", "all")
DEFAULT_WARMUP = 3
DEFAULT_MIN_TIME = 1.0


class ProfileError(Exception):
    """A profile that cannot run as asked (exit code 2), e.g. CUDA asked for but absent."""


class Interrupted(Exception):
    """Ctrl-C during a measurement, carrying the samples taken so far."""

    def __init__(self, partial: "Stats | None" = None):
        super().__init__("interrupted")
        self.partial = partial


# ------------------------------------------------------------------------ options
@dataclass
class ProfileOptions:
    device: str = "cpu"  # cpu | cuda | all
    batches: tuple[int, ...] = (1,)
    dtype: str = "float32"
    warmup: int = DEFAULT_WARMUP
    repeat: int | None = None  # exactly this many timed blocks; else adaptive
    min_time: float = DEFAULT_MIN_TIME  # seconds of timed blocks (adaptive mode)
    threads: int | None = None
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = False
    per_layer: bool = True
    calibrate: bool = True
    recalibrate: bool = False
    top: int = 10

    def validate(self) -> None:
        if self.device not in DEVICES:
            raise ProfileError(f"--device: expected one of {', '.join(DEVICES)}, "
                               f"got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ProfileError(f"--dtype: expected one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if not self.batches or any(b < 1 for b in self.batches):
            raise ProfileError("--batch: expected positive sizes like 1,8,32")
        if self.warmup < 0:
            raise ProfileError("--warmup must be >= 0")
        if self.repeat is not None and self.repeat < 1:
            raise ProfileError("--repeat must be >= 1")
        if self.repeat is None and not self.min_time > 0:
            raise ProfileError("--min-time must be > 0")
        if self.threads is not None and self.threads < 1:
            raise ProfileError("--threads must be >= 1")


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` -> (1, 8, 32); duplicates dropped, order kept."""
    out: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        try:
            b = int(part)
        except ValueError:
            raise ProfileError(f"--batch: {part!r} is not a whole number (e.g. 1,8,32)") from None
        if b < 1:
            raise ProfileError(f"--batch: sizes must be >= 1, got {b}")
        if b not in out:
            out.append(b)
    if not out:
        raise ProfileError("--batch: expected sizes like 1,8,32")
    return tuple(out)


def resolve_devices(device: str) -> tuple[list[str], list[dict[str, str]]]:
    """Devices to profile and those skipped (with why). CUDA alone but absent -> ProfileError."""
    why = cuda_unavailable()
    cuda_ok = why is None
    if device == "cuda":
        if not cuda_ok:
            raise ProfileError(f"--device cuda: {why}; use --device cpu (or all)")
        return ["cuda"], []
    if device == "all":
        if cuda_ok:
            return ["cpu", "cuda"], []
        return ["cpu"], [{"device": "cuda", "reason": why}]
    if device == "cpu":
        return ["cpu"], []
    raise ProfileError(f"--device: expected one of {', '.join(DEVICES)}, got {device!r}")


# -------------------------------------------------------------------------- stats
def _quantile(sorted_xs: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default) of sorted data."""
    if len(sorted_xs) == 1:
        return sorted_xs[0]
    pos = q * (len(sorted_xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass
class Stats:
    """Seconds per call over ``len(times)`` timed blocks of ``number`` calls each."""

    times: list[float]  # per call, one per block
    number: int = 1

    @property
    def runs(self) -> int:
        return len(self.times)

    @property
    def calls(self) -> int:
        return len(self.times) * self.number

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.times)

    @property
    def q1(self) -> float:
        return _quantile(sorted(self.times), 0.25)

    @property
    def q3(self) -> float:
        return _quantile(sorted(self.times), 0.75)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def total(self) -> float:
        return sum(self.times) * self.number

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median, "min_s": self.min, "max_s": self.max, "mean_s": self.mean,
            "q1_s": self.q1, "q3_s": self.q3, "iqr_s": self.iqr,
            "runs": self.runs, "number": self.number, "calls": self.calls,
            "total_s": self.total, "times_s": list(self.times),
        }


# ------------------------------------------------------------------------ timing
class Progress:
    """Progress callbacks; the CLI's rich bar implements them, this one does nothing."""

    def start(self, total_configs: int) -> None: ...

    def config(self, label: str) -> None: ...

    def phase(self, what: str, total: float | None, unit: str = "runs") -> None: ...

    def advance(self, done: float) -> None: ...

    def config_done(self) -> None: ...

    def message(self, text: str) -> None: ...

    def stop(self) -> None: ...


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def block_timer(device: str) -> Callable[[Callable[[], Any], int], float]:
    """``time(fn, number)`` -> seconds for ``number`` back-to-back calls, device work included."""
    if device == "cuda":
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)

        def run_cuda(fn: Callable[[], Any], number: int) -> float:
            torch.cuda.synchronize()
            start.record()
            for _ in range(number):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3

        return run_cuda

    clock = time.perf_counter

    def run_cpu(fn: Callable[[], Any], number: int) -> float:
        t0 = clock()
        for _ in range(number):
            fn()
        return clock() - t0

    return run_cpu


def estimate_number(timer, fn, min_time: float) -> int:
    """Calls per block, as ``blocked_autorange`` does: grow ×10 until one block takes at
    least ``min_time / 1000`` (and 100 µs), so the timer's overhead is negligible."""
    target = max(min_time / 1000, 1e-4)
    number = 1
    while True:
        t = timer(fn, number)
        if t >= target or number >= 10**6:
            return number
        # jump close to the target rather than only ×10 for very fast functions
        number = max(number * 2, min(number * 10, math.ceil(number * target / max(t, 1e-9))))


def timed_blocks(timer: Callable[[Callable[[], Any], int], float], fn: Callable[[], Any], *,
                 repeat: int | None, min_time: float, number: int | None = None,
                 progress: Progress | None = None, phase: str = "timing",
                 before: Callable[[], Any] | None = None,
                 after: Callable[[], Any] | None = None) -> Stats:
    """The one timing loop: blocks of ``number`` calls of ``fn``, each timed by
    ``timer(fn, number)``, until ``repeat`` blocks (exactly) or, adaptively, until
    ``min_time`` seconds were measured over at least two blocks. Seconds per call.

    ``before()`` runs first (e.g. warm-up) and ``after()`` after each block, outside
    its timing (e.g. reading per-layer hooks). ``number`` left out is estimated like
    ``blocked_autorange``. Ctrl-C anywhere raises :class:`Interrupted` with the blocks
    so far (None before the first).
    """
    progress = progress or Progress()
    times: list[float] = []
    n = 1
    try:
        if before is not None:
            before()
        n = number or estimate_number(timer, fn, min_time if repeat is None else 0.1)
        if repeat is not None:
            progress.phase(phase, repeat, "runs")
        else:
            progress.phase(phase, min_time, "s")
        total = 0.0
        while True:
            t = timer(fn, n)
            if after is not None:
                after()
            times.append(t / n)
            total += t
            progress.advance(1 if repeat is not None else t)
            if repeat is not None:
                if len(times) >= repeat:
                    break
            elif total >= min_time and len(times) >= 2:
                break
    except KeyboardInterrupt:
        raise Interrupted(Stats(times, n) if times else None) from None
    return Stats(times, n)


def measure(fn: Callable[[], Any], device: str, *, repeat: int | None = None,
            min_time: float = DEFAULT_MIN_TIME, number: int | None = None,
            progress: Progress | None = None) -> Stats:
    """Time ``fn``: ``repeat`` blocks, or blocks until ``min_time`` seconds were measured.

    Warm-up is the caller's. Ctrl-C raises :class:`Interrupted` with the blocks so far.
    """
    return timed_blocks(block_timer(device), fn, repeat=repeat, min_time=min_time,
                        number=number, progress=progress)


def warm_up(fn: Callable[[], Any], device: str, runs: int, progress: Progress | None = None,
            announce: bool = True) -> None:
    progress = progress or Progress()
    if runs and announce:
        progress.phase("warm-up", runs)
    for _ in range(runs):
        fn()
        sync(device)
        progress.advance(1)


# ------------------------------------------------------------------- per layer
class LayerClock:
    """Forward hooks timing each named submodule, one sample per forward.

    CPU: ``perf_counter`` in the pre- and post-hook (CPU ops run synchronously).
    CUDA: events recorded in the hooks, read after the forward's synchronisation.
    A module called several times in one forward gets the sum of its calls.
    """

    def __init__(self, modules: dict[str, torch.nn.Module], device: str):
        self.device = device
        self.names = list(modules)
        self.samples: dict[str, list[float]] = {n: [] for n in self.names}
        self.calls: dict[str, int] = {n: 0 for n in self.names}
        self.run_totals: list[float] = []  # per forward: the sum of its layers' times
        self._open: dict[str, list[Any]] = {n: [] for n in self.names}
        self._done: dict[str, list[Any]] = {n: [] for n in self.names}
        self._handles: list[Any] = []
        self._events: list[Any] = []  # CUDA events free for reuse
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._pre(name)))
            self._handles.append(module.register_forward_hook(self._post(name)))

    def _stamp(self) -> Any:
        if self.device == "cuda":
            ev = self._events.pop() if self._events else torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def _pre(self, name: str):
        def hook(module, args):
            self._open[name].append(self._stamp())
        return hook

    def _post(self, name: str):
        def hook(module, args, output):
            end = self._stamp()
            start = self._open[name].pop()
            self._done[name].append((start, end))
        return hook

    def collect(self) -> None:
        """After one forward (synchronised): one sample per layer that ran."""
        run_total = 0.0
        for name in self.names:
            pairs = self._done[name]
            if not pairs:
                continue
            if self.device == "cuda":
                total = sum(s.elapsed_time(e) for s, e in pairs) / 1e3
                for s, e in pairs:
                    self._events += [s, e]
            else:
                total = sum(e - s for s, e in pairs)
            self.samples[name].append(total)
            self.calls[name] = len(pairs)
            run_total += total
            pairs.clear()
        for stack in self._open.values():
            stack.clear()
        self.run_totals.append(run_total)

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def time_layers(module: torch.nn.Module, fn: Callable[[], Any], names: Iterable[str],
                device: str, *, warmup: int, repeat: int | None, min_time: float,
                progress: Progress | None = None) -> tuple[Stats, LayerClock]:
    """The hooked pass: one forward per sample, each timed whole and per layer."""
    progress = progress or Progress()
    by_name = dict(module.named_modules())
    targets = {n: by_name[n] for n in names if n in by_name and n != ""}
    clock = LayerClock(targets, device)

    def warm_then_reset() -> None:
        warm_up(fn, device, warmup, progress)
        clock.collect()
        for name in clock.names:
            clock.samples[name].clear()
        clock.run_totals.clear()

    try:
        hooked = timed_blocks(block_timer(device), fn, repeat=repeat, min_time=min_time,
                              number=1, progress=progress, phase="per-layer",
                              before=warm_then_reset, after=clock.collect)
    finally:
        clock.remove()
    return hooked, clock


# ------------------------------------------------------------------------ memory
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


# ---------------------------------------------------------------------- analytic
def _dtype_bytes(dtype: str) -> int:
    return DTYPE_BYTES[dtype]


def layer_bytes(report: Report) -> dict[str, dict[str, int]]:
    """Per layer: weight, input and output bytes at the report's dtype."""
    wb = _dtype_bytes(report.dtype)
    out_bytes: dict[str, list[int]] = {}
    for r in report.layers:
        shapes = r.output_shapes or [r.shape]
        numels = [math.prod(s) for s in shapes]
        total = sum(numels) or 1
        # activation_bytes covers all outputs; split it by element count
        out_bytes[r.name] = [r.activation_bytes * n // total for n in numels]
    graph_inputs = report.graph.inputs if report.graph is not None else {}
    for name, shape in report.inputs.items():
        info = graph_inputs.get(name)
        per = INT_BYTES if info is not None and info.dtype != "float" else wb
        out_bytes[name] = [math.prod(shape) * per]
    result: dict[str, dict[str, int]] = {}
    for r in report.layers:
        inb = 0
        for src in r.sources:
            node, _, k = src.partition(":")
            sizes = out_bytes.get(node)
            if not sizes:
                continue
            idx = int(k) if k.isdigit() else 0
            inb += sizes[idx] if idx < len(sizes) else sizes[0]
        weights = r.weight_bytes + r.buffers * wb
        outb = sum(out_bytes[r.name])
        result[r.name] = {"weight_bytes": weights, "input_bytes": inb, "output_bytes": outb,
                          "bytes_moved": weights + inb + outb}
    return result


def analytic_memory(report: Report) -> dict[str, int]:
    t = report.totals
    buffers = t.buffers * _dtype_bytes(report.dtype)
    return {"weight_bytes": t.weight_bytes, "buffer_bytes": buffers,
            "peak_activation_bytes": t.peak_activation_bytes,
            "total_bytes": t.weight_bytes + buffers + t.peak_activation_bytes}


def make_inputs(report: Report, device: str, dtype: str, channels_last: bool = False,
                seed: int = 0) -> list[torch.Tensor]:
    """Random inputs in the spec's input order: floats ~ N(0, 1), token ids in range."""
    gen = torch.Generator().manual_seed(seed)
    tdtype = getattr(torch, dtype)
    graph = report.graph
    tensors = []
    for name, shape in report.inputs.items():
        info = graph.inputs.get(name) if graph is not None else None
        if info is not None and info.dtype != "float":
            high = _id_range(report, name)
            t = torch.randint(0, high, tuple(shape), generator=gen)
        else:
            t = torch.randn(tuple(shape), generator=gen).to(tdtype)
            if channels_last and t.dim() in (4, 5):
                t = t.contiguous(memory_format=torch.channels_last if t.dim() == 4
                                 else torch.channels_last_3d)
        tensors.append(t.to(device))
    return tensors


def _id_range(report: Report, input_name: str) -> int:
    """Token ids must be below every consuming table's size."""
    if report.graph is None:
        return 2
    from ..graph import Ref
    from .build import index_bound

    return index_bound(report.graph, Ref(input_name)) or 2


# ------------------------------------------------------------------------ results
@dataclass
class LayerTiming:
    name: str
    type: str
    calls: int
    stats: Stats
    macs: int
    weight_bytes: int
    input_bytes: int
    output_bytes: int
    bytes_moved: int
    share: float  # of the summed layer medians
    roof: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.type, "calls": self.calls,
            "median_s": self.stats.median, "min_s": self.stats.min, "q1_s": self.stats.q1,
            "q3_s": self.stats.q3, "iqr_s": self.stats.iqr, "samples": self.stats.runs,
            "share": self.share, "macs": self.macs, "weight_bytes": self.weight_bytes,
            "input_bytes": self.input_bytes, "output_bytes": self.output_bytes,
            "bytes_moved": self.bytes_moved, **self.roof,
        }


@dataclass
class PerLayer:
    hooked: Stats  # whole forwards with hooks attached
    layers: list[LayerTiming]
    untimed: list[str]  # report layers with no module of that name, or that never ran
    overhead_s: float  # hooked median - plain median
    overhead_fraction: float
    unattributed_s: float  # median over forwards of (forward - its layers): graph glue, hooks
    eager: bool = False  # timed on the eager module because the whole model was compiled

    def top(self, n: int) -> list[LayerTiming]:
        return sorted(self.layers, key=lambda l: l.stats.median, reverse=True)[:n]

    def to_dict(self) -> dict[str, Any]:
        return {
            "hooked": self.hooked.to_dict(),
            "overhead_s": self.overhead_s,
            "overhead_fraction": self.overhead_fraction,
            "sum_of_layers_s": sum(l.stats.median for l in self.layers),
            "unattributed_s": self.unattributed_s,
            "eager_module": self.eager,
            "untimed": self.untimed,
            "layers": [l.to_dict() for l in self.layers],
        }


@dataclass
class ConfigResult:
    device: str
    batch: int
    status: str = "ok"  # ok | oom | error | interrupted
    error: str | None = None
    latency: Stats | None = None
    macs: int = 0
    bytes_moved: int = 0
    roof: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    per_layer: PerLayer | None = None
    compile: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.device} batch {self.batch}"

    @property
    def throughput(self) -> float | None:
        if self.latency is None or self.latency.median <= 0:
            return None
        return self.batch / self.latency.median

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "batch": self.batch, "status": self.status,
            "error": self.error,
            "latency": self.latency.to_dict() if self.latency else None,
            "throughput_samples_per_s": self.throughput,
            "macs": self.macs, "bytes_moved": self.bytes_moved, **self.roof,
            "memory": self.memory,
            "compile": self.compile,
            "per_layer": self.per_layer.to_dict() if self.per_layer else None,
            "notes": self.notes,
        }


@dataclass
class ProfileResult:
    name: str
    file: str
    options: ProfileOptions
    environment: dict[str, Any]
    hardware: dict[str, Hardware] = field(default_factory=dict)
    configs: list[ConfigResult] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    crosscheck: dict[str, Any] | None = None
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.crosscheck is None or bool(self.crosscheck.get("ok"))

    def to_dict(self) -> dict[str, Any]:
        opts = asdict(self.options)
        opts["batches"] = list(self.options.batches)
        return {
            "format_version": FORMAT_VERSION,
            "kind": "profile",
            "name": self.name,
            "file": self.file,
            "dtype": self.options.dtype,
            "options": opts,
            "environment": self.environment,
            "crosscheck": self.crosscheck,
            "skipped": self.skipped,
            "hardware": {d: hw.to_dict() for d, hw in self.hardware.items()},
            "configs": [c.to_dict() for c in self.configs],
            "interrupted": self.interrupted,
            "warnings": self.warnings,
        }


def environment(devices: Sequence[str]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu": device_name("cpu"),
        "cpu_count": os.cpu_count(),
        "cuda_available": torch.cuda.is_available(),
        "load_average_start": load_average(),
    }
    if "cuda" in devices:
        env["cuda_device"] = device_name("cuda")
        env["cuda_version"] = torch.version.cuda
        env["cudnn_version"] = torch.backends.cudnn.version()
        # float32 convolutions may run as TF32 on tensor cores while the calibration GEMM
        # (a matmul) follows the matmul flag: say which
        env["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
        env["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
    return env


# ---------------------------------------------------------------------- profiling
def _free(device: str) -> None:
    """Release what a configuration left (CUDA: back to the driver, so the next starts clean).

    On the CPU reference counting frees the tensors; a full ``gc.collect`` (slow with
    torch loaded) runs once per configuration, before its memory measurement."""
    if device == "cuda":
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _settings(options: ProfileOptions):
    """Threads and cuDNN autotuning for the run, restored afterwards."""
    threads = torch.get_num_threads()
    cudnn = torch.backends.cudnn.benchmark
    try:
        if options.threads:
            torch.set_num_threads(options.threads)
        torch.backends.cudnn.benchmark = options.cudnn_benchmark
        yield
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = cudnn


def _prepare(module: torch.nn.Module, device: str, dtype: str,
             channels_last: bool) -> torch.nn.Module:
    module = module.to(device=device, dtype=getattr(torch, dtype)).eval()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


InputsFn = Callable[[Report, str], Sequence[torch.Tensor]]


def profile_config(build: Callable[[Report, str], torch.nn.Module], report: Report, device: str,
                   batch: int, options: ProfileOptions, hw: Hardware | None,
                   progress: Progress | None = None, inputs_fn: InputsFn | None = None
                   ) -> ConfigResult:
    """Time one (device, batch): memory on the first forward, warm-up, plain timing, then
    per layer. OOM -> status "oom"; Ctrl-C -> status "interrupted" and re-raised."""
    progress = progress or Progress()
    res = ConfigResult(device, batch, macs=report.totals.macs)
    res.memory["analytic"] = analytic_memory(report)
    bytes_by_layer = layer_bytes(report)
    res.bytes_moved = sum(b["bytes_moved"] for b in bytes_by_layer.values())
    module = inputs = None
    if device == "cuda":
        _free(device)
        torch.cuda.reset_peak_memory_stats()
    try:
        # built outside inference mode: parameters must stay ordinary tensors
        module = _prepare(build(report, device), device, options.dtype, options.channels_last)
        if inputs_fn is not None:
            inputs = list(inputs_fn(report, device))
        else:
            inputs = make_inputs(report, device, options.dtype, options.channels_last)
        with torch.inference_mode():

            def eager() -> Any:
                return module(*inputs)

            # memory: one forward measured alone, after a first call has done the lazy
            # set-up (thread pools, kernel caches); both count as warm-up runs
            warm = options.warmup
            if warm:
                progress.phase("warm-up", warm)
                warm_up(eager, device, 1, progress, announce=False)
                warm -= 1
            if device == "cuda":
                _free(device)
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                eager()
                sync(device)
                peak = torch.cuda.max_memory_allocated()
                res.memory["measured"] = {
                    "max_allocated_bytes": peak,
                    "baseline_bytes": base,
                    "peak_growth_bytes": peak - base,
                    "method": "torch.cuda.max_memory_allocated over one forward, peak stats reset "
                              "before it (weights + inputs + activations + workspaces)",
                }
            else:
                res.memory["measured"] = cpu_peak_rss_growth(eager)
            if warm:
                progress.advance(1)
                warm -= 1
            fn = eager
            if options.compile:
                fn = _compiled(module, inputs, res, progress)
            warm_up(fn, device, warm, progress, announce=False)
            res.latency = measure(fn, device, repeat=options.repeat, min_time=options.min_time,
                                  progress=progress)
            res.roof = roofline(res.macs, res.bytes_moved, res.latency.median, hw)
            if options.per_layer:
                res.per_layer = _per_layer(module, eager, report, bytes_by_layer, res, options,
                                           hw, progress)
                res.per_layer.eager = fn is not eager
    except Interrupted as exc:
        res.status = "interrupted"
        if res.latency is None and exc.partial is not None and len(exc.partial.times):
            res.latency = exc.partial
            res.roof = roofline(res.macs, res.bytes_moved, res.latency.median, hw)
        raise _ConfigInterrupted(res) from None
    except KeyboardInterrupt:
        res.status = "interrupted"
        raise _ConfigInterrupted(res) from None
    except Exception as exc:  # noqa: BLE001 - one configuration failing must not stop the rest
        if is_out_of_memory(exc):
            res.status = "oom"
            res.error = f"out of memory at batch {batch} on {device}"
            if device == "cuda":
                res.memory.setdefault("measured", {})["max_allocated_bytes"] = \
                    torch.cuda.max_memory_allocated()
        else:
            res.status = "error"
            res.error = f"{type(exc).__name__}: {one_line(exc)}"
    finally:
        del module, inputs
        _free(device)
    return res


class _ConfigInterrupted(Exception):
    def __init__(self, result: ConfigResult):
        super().__init__("interrupted")
        self.result = result


def _compiled(module, inputs, res: ConfigResult, progress: Progress):
    """torch.compile the module; on failure report it and fall back to eager."""
    info: dict[str, Any] = {"requested": True, "ok": False, "error": None, "compile_s": None}
    res.compile = info
    progress.phase("compiling", None)
    try:
        compiled = torch.compile(module)
        t0 = time.perf_counter()
        compiled(*inputs)  # compiles on the first call
        sync(res.device)
        info["compile_s"] = time.perf_counter() - t0
        info["ok"] = True
        return lambda: compiled(*inputs)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001
        if is_out_of_memory(exc):
            raise
        msg = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
        info["error"] = msg
        res.notes.append(f"torch.compile failed ({msg}); timed the eager module instead")
        return lambda: module(*inputs)


def _per_layer(module, eager, report: Report, bytes_by_layer, res: ConfigResult,
               options: ProfileOptions, hw: Hardware | None, progress: Progress) -> PerLayer:
    names = [r.name for r in report.layers]
    hooked, clock = time_layers(module, eager, names, res.device, warmup=min(options.warmup, 2),
                                repeat=options.repeat, min_time=options.min_time, progress=progress)
    rows: list[LayerTiming] = []
    untimed: list[str] = []
    by_name: dict[str, LayerResult] = {r.name: r for r in report.layers}
    for name in names:
        samples = clock.samples.get(name) or []
        if not samples:
            untimed.append(name)
            continue
        r = by_name[name]
        st = Stats(samples)
        b = bytes_by_layer[name]
        rows.append(LayerTiming(name=name, type=r.type, calls=clock.calls.get(name, 1), stats=st,
                                macs=r.macs, weight_bytes=b["weight_bytes"],
                                input_bytes=b["input_bytes"], output_bytes=b["output_bytes"],
                                bytes_moved=b["bytes_moved"], share=0.0,
                                roof=roofline(r.macs, b["bytes_moved"], st.median, hw)))
    total = sum(r.stats.median for r in rows)
    for r in rows:
        r.share = r.stats.median / total if total > 0 else 0.0
    plain = res.latency.median if res.latency else hooked.median
    overhead = hooked.median - plain
    # per forward: its time minus its layers' (a difference of medians would mix runs)
    between = [t - s for t, s in zip(hooked.times, clock.run_totals)]
    return PerLayer(hooked=hooked, layers=rows, untimed=untimed, overhead_s=overhead,
                    overhead_fraction=overhead / plain if plain > 0 else 0.0,
                    unattributed_s=statistics.median(between) if between else 0.0)


def profile_module(build: Callable[[Report, str], torch.nn.Module],
                   analyze: Callable[[int], Report], options: ProfileOptions, *,
                   name: str = "", file: str = "", progress: Progress | None = None,
                   crosscheck: dict[str, Any] | None = None,
                   calibrate_quick: bool = False, inputs_fn: InputsFn | None = None
                   ) -> ProfileResult:
    """Profile modules from ``build(report, device)`` against reports from ``analyze(batch)``.

    Inputs are random tensors of the report's input shapes unless ``inputs_fn(report,
    device)`` gives them.

    Ctrl-C stops cleanly: the result holds every finished configuration, the one
    interrupted (with any samples it had), and ``interrupted=True``.
    """
    options.validate()
    devices, skipped = resolve_devices(options.device)
    progress = progress or Progress()
    result = ProfileResult(name=name, file=file, options=options, environment={},
                           skipped=skipped, crosscheck=crosscheck)
    with _settings(options):
        result.environment = environment(devices)
        reports: dict[int, Report] = {}
        progress.start(len(devices) * len(options.batches))
        try:
            for device in devices:
                hw = None
                if options.calibrate:
                    progress.config(f"calibrating {device}")
                    progress.phase("calibration", None)
                    try:
                        hw = calibrate(device, options.dtype, force=options.recalibrate,
                                       quick=calibrate_quick)
                        result.hardware[device] = hw
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:  # noqa: BLE001
                        progress.message(f"calibration on {device} failed: {exc}")
                for batch in options.batches:
                    if batch not in reports:
                        reports[batch] = analyze(batch)
                    progress.config(f"{device} · batch {batch}")
                    try:
                        cfg = profile_config(build, reports[batch], device, batch, options, hw,
                                             progress, inputs_fn)
                    except _ConfigInterrupted as exc:
                        result.configs.append(exc.result)
                        raise KeyboardInterrupt from None
                    result.configs.append(cfg)
                    progress.config_done()
        except KeyboardInterrupt:
            result.interrupted = True
        finally:
            progress.stop()
    result.environment["load_average_end"] = load_average()
    result.warnings = honesty_warnings(result)
    return result


def honesty_warnings(result: ProfileResult) -> list[str]:
    """What makes these figures less trustworthy, said plainly."""
    out: list[str] = []
    cpus = result.environment.get("cpu_count") or 1
    loads = [x for x in (result.environment.get("load_average_start"),
                         result.environment.get("load_average_end")) if x is not None]
    if any(c.device == "cpu" for c in result.configs) and loads and max(loads) > cpus:
        out.append(f"the machine was busy (load average {max(loads):.1f} on {cpus} CPUs): "
                   "other work competed for the CPU, so CPU timings are slower and noisier "
                   "than on an idle machine")
    for device, hw in result.hardware.items():
        if device == "cpu" and hw.load_average is not None and hw.load_average > cpus:
            out.append(f"the {device} calibration was measured under load (load average "
                       f"{hw.load_average:.1f}); rerun with --recalibrate on a quiet machine")
    worst: dict[str, float] = {}
    for c in result.configs:
        fracs = [c.roof.get("fraction_of_peak")]
        if c.per_layer:
            fracs += [l.roof.get("fraction_of_peak") for l in c.per_layer.layers]
        top = max((f for f in fracs if f is not None), default=0.0)
        worst[c.device] = max(worst.get(c.device, 0.0), top)
    for device, top in worst.items():
        if top > 1.05:
            out.append(f"{device}: achieved throughput reaches {top * 100:.0f}% of the calibrated "
                       "peak: the calibration kernels (GEMM, 3x3 conv) fall short of this "
                       "device's best, or ran disturbed; read fractions of peak as relative, or "
                       "rerun with --recalibrate on a quiet machine")
    return out


# ------------------------------------------------------------------- from a spec
def crosscheck_summary(spec: Any, batch: int,
                       input_shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, Any]:
    """Run the builder's cross-check (shapes, params, MACs; receptive fields are left to
    ``netcalc check``): its mismatches are reported, never hidden."""
    try:
        from .crosscheck import crosscheck
    except ImportError as exc:
        return {"ok": False, "ran": False, "error": f"cross-check unavailable: {exc}",
                "mismatches": []}
    try:
        result = crosscheck(spec, batch=batch, input_shapes=input_shapes, rf=False)
    except SpecError:  # the spec (or an option) is invalid: exit 2, not a failed check
        raise
    except Exception as exc:  # noqa: BLE001 - reported, and the profile goes on
        return {"ok": False, "ran": False, "error": f"{type(exc).__name__}: {one_line(exc)}",
                "mismatches": []}
    full = result.to_dict() if hasattr(result, "to_dict") else {}
    rows = [*(full.get("rows") or []), *(full.get("totals") or [])]
    bad = [r for r in rows if r.get("verdict") == "MISMATCH"]
    if not full:  # a result without to_dict: its rows' ``ok``
        raw = list(getattr(result, "rows", []) or [])
        rows = raw
        bad = [_row_dict(r) for r in raw if not getattr(r, "ok", True)]
    return {"ok": bool(getattr(result, "ok", not bad)), "ran": True, "error": None,
            "batch": batch, "rows": len(rows), "verdicts": full.get("verdicts"),
            "skipped": full.get("skipped", []), "message": getattr(result, "message", None),
            "mismatches": bad}


def _row_dict(row: Any) -> dict[str, Any]:
    if isinstance(row, dict):
        d = dict(row)
    elif hasattr(row, "__dataclass_fields__"):
        d = asdict(row)
    else:
        d = {k: v for k, v in vars(row).items() if not k.startswith("_")}
    return {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
            for k, v in d.items()}


def profile_spec(spec_path: str | Path, options: ProfileOptions, *,
                 input_shapes: dict[str, tuple[int, ...]] | None = None,
                 progress: Progress | None = None, run_crosscheck: bool = True) -> ProfileResult:
    """Build the spec with the torch builder, cross-check it, then profile it."""
    import netcalc

    from .build import build_module, prepare

    options.validate()
    resolve_devices(options.device)  # fail fast, before the cross-check
    spec = netcalc.load(spec_path)
    for batch in options.batches:  # what torch cannot take is refused before any timing
        check_domain(prepare(spec, batch=batch, input_shapes=input_shapes)[0], batch, input_shapes)
    cc = crosscheck_summary(spec, options.batches[0], input_shapes) if run_crosscheck else None

    def analyze(batch: int) -> Report:
        return netcalc.analyze(spec, batch=batch, dtype=options.dtype, input_shapes=input_shapes)

    def build(report: Report, device: str) -> torch.nn.Module:
        return build_module(report.graph, batch=report.batch, input_shapes=input_shapes,
                            device=device, dtype=getattr(torch, options.dtype))

    return profile_module(build, analyze, options, name=spec.name, file=str(spec_path),
                          progress=progress, crosscheck=cc)
