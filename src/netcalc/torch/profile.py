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

This module orchestrates; the result types are :mod:`netcalc.results` (torch-free), the
timer and timing loops :mod:`netcalc.torch.timing`, the CPU memory probe
:mod:`netcalc.torch.memory_probe`, the byte accounting :mod:`netcalc.memory`, the
calibration :mod:`netcalc.torch.calibrate` and the roofline :mod:`netcalc.hardware`.
Their names stay importable from here.
"""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..analysis import LayerResult, Report
from ..errors import SpecError
from ..hardware import Hardware, load_average, roofline
from ..memory import LayerBytes, analytic_memory, layer_bytes  # noqa: F401
from ..results import (  # noqa: F401 - the result types, importable from here as before
    DEFAULT_MIN_TIME, DEFAULT_WARMUP, DEVICES, DTYPES, FORMAT_VERSION, ConfigResult,
    CrossCheckSummary, LayerTiming, PerLayer, ProfileError, ProfileOptions, ProfileResult,
    Progress, Stats,
)
from .calibrate import calibrate, device_name
from .guard import check_domain, cuda_unavailable, is_out_of_memory, one_line
from .memory_probe import cpu_peak_rss_growth
from .timing import (  # noqa: F401 - importable from here as before
    Interrupted, LayerClock, block_timer, estimate_number, measure, sync, time_layers,
    timed_blocks, warm_up,
)


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
    res.memory["analytic"] = analytic_memory(report).to_dict()
    bytes_by_layer = layer_bytes(report)
    res.bytes_moved = sum(b.bytes_moved for b in bytes_by_layer.values())
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


def _per_layer(module, eager, report: Report, bytes_by_layer: dict[str, LayerBytes],
               res: ConfigResult, options: ProfileOptions, hw: Hardware | None,
               progress: Progress) -> PerLayer:
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
                                macs=r.macs, bytes=b, share=0.0,
                                roof=roofline(r.macs, b.bytes_moved, st.median, hw)))
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
                   crosscheck: CrossCheckSummary | None = None,
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
        fracs = [c.roof.fraction_of_peak if c.roof is not None else None]
        if c.per_layer:
            fracs += [l.roof.fraction_of_peak for l in c.per_layer.layers]
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
                       input_shapes: dict[str, tuple[int, ...]] | None = None
                       ) -> CrossCheckSummary:
    """Run the builder's cross-check (shapes, params, MACs; receptive fields are left to
    ``netcalc check``): its mismatches are reported, never hidden."""
    try:
        from .crosscheck import crosscheck
    except ImportError as exc:
        return CrossCheckSummary(ran=False, ok=False, error=f"cross-check unavailable: {exc}")
    try:
        result = crosscheck(spec, batch=batch, input_shapes=input_shapes, rf=False)
    except SpecError:  # the spec (or an option) is invalid: exit 2, not a failed check
        raise
    except Exception as exc:  # noqa: BLE001 - reported, and the profile goes on
        return CrossCheckSummary(ran=False, ok=False,
                                 error=f"{type(exc).__name__}: {one_line(exc)}")
    return CrossCheckSummary.of(result)


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
