"""Typed results of a cross-check (``netcalc verify``) and of a profile (``netcalc
profile``), with their JSON forms: torch-free, so a report can be rendered, loaded and
plotted without torch.

The torch side (:mod:`netcalc.torch.crosscheck`, :mod:`netcalc.torch.profile`) fills
these; the renderers (:mod:`netcalc.render.crosscheck`, :mod:`netcalc.render.profile`)
and the HTML report read them. :func:`load_profile` turns a ``netcalc profile --format
json`` file back into a :class:`ProfileResult` (``to_dict`` of the result is the file).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from .hardware import Hardware, Roof
from .memory import LayerBytes

# ================================================================== cross-check
MATCH, CONVENTION, MISMATCH, SKIPPED = "match", "convention", "MISMATCH", "skipped"
OPAQUE = "opaque"  # an Opaque layer (netcalc.layers.opaque): netcalc does not know its MACs


METRICS = ("shape", "params", "trainable", "buffers", "fvcore", "flopcounter", "torchinfo", "rf")


TOOLS = ("fvcore", "flopcounter", "torchinfo")


@dataclass
class CheckRow:
    """One comparison: a layer (or ``TOTAL``), a metric, both numbers and the verdict."""

    layer: str
    type: str
    metric: str
    analytic: Any
    torch: Any
    verdict: str
    rule: str = ""  # the convention rule that explains a difference, or a note
    line: int = 0  # spec line of the layer (0 for totals)

    @property
    def what(self) -> str:
        return self.metric

    @property
    def ok(self) -> bool:
        return self.verdict != MISMATCH

    @property
    def message(self) -> str:
        text = (f"torch: {self.layer} ({self.type}) {self.metric}: netcalc says "
                f"{_text(self.analytic)}, PyTorch gives {_text(self.torch)}")
        return f"{text} ({self.rule})" if self.rule else text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CheckRow":
        """A row of the JSON (numbers as JSON holds them: lists, 'p/q' strings)."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


@dataclass
class CrossCheckResult:
    name: str
    file: str
    batch: int
    device: str
    convention: str
    rows: list[CheckRow]
    totals: list[CheckRow]
    skipped: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def mismatches(self) -> list[CheckRow]:
        return [r for r in (*self.rows, *self.totals) if r.verdict == MISMATCH]

    @property
    def message(self) -> str:
        bad = self.mismatches
        if not bad:
            return f"torch: {self.name}: every number matches PyTorch"
        return f"torch: {self.name}: {len(bad)} mismatch(es); first: {bad[0].message}"

    def counts(self) -> dict[str, int]:
        out = {MATCH: 0, CONVENTION: 0, MISMATCH: 0}
        for r in (*self.rows, *self.totals):
            out[r.verdict] = out.get(r.verdict, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "file": self.file,
            "batch": self.batch,
            "device": self.device,
            "convention": self.convention,
            "ok": self.ok,
            "verdicts": self.counts(),
            "rows": [_row_json(r) for r in self.rows],
            "totals": [_row_json(r) for r in self.totals],
            "skipped": list(self.skipped),
            "versions": dict(self.versions),
        }

    as_dict = to_dict


def _row_json(r: CheckRow) -> dict[str, Any]:
    d = asdict(r)
    d["analytic"] = _jsonable(r.analytic)
    d["torch"] = _jsonable(r.torch)
    if not r.rule:
        del d["rule"]
    return d


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, Fraction):
        return v.numerator if v.denominator == 1 else f"{v.numerator}/{v.denominator}"
    return v


def _text(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    if isinstance(v, list) and v and isinstance(v[0], (list, tuple)):
        return ", ".join(str(list(x)) for x in v)
    return str(v)


@dataclass
class CrossCheckSummary:
    """What a profile says of its cross-check (shapes, params, MACs vs PyTorch)."""

    ran: bool
    ok: bool
    error: str | None = None
    batch: int | None = None
    rows: int = 0
    verdicts: dict[str, int] | None = None
    skipped: list[str] = field(default_factory=list)
    message: str | None = None
    mismatches: list[CheckRow] = field(default_factory=list)

    @classmethod
    def of(cls, result: CrossCheckResult) -> "CrossCheckSummary":
        return cls(ran=True, ok=result.ok, batch=result.batch,
                   rows=len(result.rows) + len(result.totals), verdicts=result.counts(),
                   skipped=list(result.skipped), message=result.message,
                   mismatches=result.mismatches)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "ran": self.ran, "error": self.error, "batch": self.batch,
                "rows": self.rows, "verdicts": self.verdicts, "skipped": list(self.skipped),
                "message": self.message, "mismatches": [_row_json(r) for r in self.mismatches]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CrossCheckSummary":
        return cls(ran=d["ran"], ok=d["ok"], error=d.get("error"), batch=d.get("batch"),
                   rows=d.get("rows", 0), verdicts=d.get("verdicts"),
                   skipped=list(d.get("skipped") or []), message=d.get("message"),
                   mismatches=[CheckRow.from_dict(r) for r in d.get("mismatches") or []])


# ====================================================================== profile
FORMAT_VERSION = 1


DTYPES = ("float32", "float16", "bfloat16")


DEVICES = ("cpu", "cuda", "all")


DEFAULT_WARMUP = 3


DEFAULT_MIN_TIME = 1.0


class ProfileError(Exception):
    """A profile that cannot run as asked (exit code 2), e.g. CUDA asked for but absent."""


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Stats":
        return cls(list(d["times_s"]), d["number"])


class Progress:
    """The progress protocol: callbacks a profile makes as it goes. This base does
    nothing; the CLI's rich bar (:mod:`netcalc.render.profile`) overrides them."""

    def start(self, total_configs: int) -> None: ...

    def config(self, label: str) -> None: ...

    def phase(self, what: str, total: float | None, unit: str = "runs") -> None: ...

    def advance(self, done: float) -> None: ...

    def config_done(self) -> None: ...

    def message(self, text: str) -> None: ...

    def stop(self) -> None: ...


@dataclass
class LayerTiming:
    """One layer's samples in the hooked pass, its bytes and its place on the roofline."""

    name: str
    type: str
    calls: int
    stats: Stats
    macs: int
    bytes: LayerBytes
    share: float  # of the summed layer medians
    roof: Roof

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.type, "calls": self.calls,
            "median_s": self.stats.median, "min_s": self.stats.min, "q1_s": self.stats.q1,
            "q3_s": self.stats.q3, "iqr_s": self.stats.iqr, "samples": self.stats.runs,
            "times_s": list(self.stats.times), "share": self.share, "macs": self.macs,
            **asdict(self.bytes), "bytes_moved": self.bytes.bytes_moved, **self.roof.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LayerTiming":
        # a profile written before format_version 1 kept only the median of a layer
        times = d["times_s"] if "times_s" in d else [d["median_s"]]
        return cls(d["name"], d["type"], d["calls"], Stats(list(times)), d["macs"],
                   LayerBytes(d["weight_bytes"], d["input_bytes"], d["output_bytes"]),
                   d["share"], Roof.from_dict(d))


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

    @property
    def sum_of_layers_s(self) -> float:
        return sum(l.stats.median for l in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "hooked": self.hooked.to_dict(),
            "overhead_s": self.overhead_s,
            "overhead_fraction": self.overhead_fraction,
            "sum_of_layers_s": self.sum_of_layers_s,
            "unattributed_s": self.unattributed_s,
            "eager_module": self.eager,
            "untimed": self.untimed,
            "layers": [l.to_dict() for l in self.layers],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PerLayer":
        return cls(Stats.from_dict(d["hooked"]), [LayerTiming.from_dict(l) for l in d["layers"]],
                   list(d["untimed"]), d["overhead_s"], d["overhead_fraction"],
                   d["unattributed_s"], d["eager_module"])


@dataclass
class ConfigResult:
    """One (device, batch) of a profile. ``memory``: "analytic" (weights, buffers, peak
    activations: :class:`netcalc.memory.AnalyticMemory` as a dict) and "measured"
    (CUDA ``max_memory_allocated`` or the CPU's peak RSS growth, with its method)."""

    device: str
    batch: int
    status: str = "ok"  # ok | oom | error | interrupted
    error: str | None = None
    latency: Stats | None = None
    macs: int = 0
    bytes_moved: int = 0
    roof: Roof | None = None
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
            "macs": self.macs, "bytes_moved": self.bytes_moved,
            **(self.roof.to_dict() if self.roof is not None else {}),
            "memory": self.memory,
            "compile": self.compile,
            "per_layer": self.per_layer.to_dict() if self.per_layer else None,
            "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConfigResult":
        return cls(d["device"], d["batch"], d["status"], d.get("error"),
                   Stats.from_dict(d["latency"]) if d.get("latency") else None,
                   d["macs"], d["bytes_moved"],
                   Roof.from_dict(d) if "bound" in d else None, d.get("memory") or {},
                   PerLayer.from_dict(d["per_layer"]) if d.get("per_layer") else None,
                   d.get("compile"), list(d.get("notes") or []))


@dataclass
class ProfileResult:
    name: str
    file: str
    options: ProfileOptions
    environment: dict[str, Any]
    hardware: dict[str, Hardware] = field(default_factory=dict)
    configs: list[ConfigResult] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"device", "reason"}
    crosscheck: CrossCheckSummary | None = None
    interrupted: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.crosscheck is None or self.crosscheck.ok

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
            "crosscheck": self.crosscheck.to_dict() if self.crosscheck is not None else None,
            "skipped": self.skipped,
            "hardware": {d: hw.to_dict() for d, hw in self.hardware.items()},
            "configs": [c.to_dict() for c in self.configs],
            "interrupted": self.interrupted,
            "warnings": self.warnings,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ProfileResult":
        opts = dict(d["options"])
        opts["batches"] = tuple(opts["batches"])
        cc = d.get("crosscheck")
        return cls(d["name"], d["file"], ProfileOptions(**opts), d["environment"],
                   {k: Hardware.from_dict(v) for k, v in d["hardware"].items()},
                   [ConfigResult.from_dict(c) for c in d["configs"]], list(d["skipped"]),
                   CrossCheckSummary.from_dict(cc) if cc is not None else None,
                   d["interrupted"], list(d["warnings"]))


def load_profile(source: "str | Path | dict[str, Any]") -> ProfileResult:
    """A profile from ``netcalc profile --format json`` (a path, or the parsed JSON) as a
    typed :class:`ProfileResult`; ValueError if it is not one this version reads."""
    data = source if isinstance(source, dict) else json.loads(Path(source).read_text("utf-8"))
    if not isinstance(data, dict) or data.get("kind") != "profile":
        raise ValueError("not a netcalc profile (expected the JSON of `netcalc profile "
                         "--format json`)")
    version = data.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(f"profile format_version {version!r}: this netcalc reads "
                         f"{FORMAT_VERSION}")
    try:
        return ProfileResult.from_dict(data)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed profile: {type(exc).__name__}: {exc}") from None
