"""`netcalc check`: the CI gate for spec files.

Every spec found under the given paths is parsed, built and analysed; then its
``expect:`` block (exact values, or values with a tolerance) and its ``budget:``
block (ceilings) are evaluated::

    expect:                    # exact unless a tolerance is given
      output: [1000]           # per-sample shape (batch dropped); a mapping for several outputs
      params: 25557032
      macs: 4.09G ±1%          # human units (units.parse_quantity) and tolerances
      receptive_field: 427     # of the last spatial layer, or {layer4: 427} for named layers
    budget:                    # ceilings, e.g. for a mobile target
      params: 5M
      macs: 600M
      weight_bytes: 20MB
      activation_bytes: 50MB

Both blocks are evaluated at batch 1, float32 and netcalc's MAC convention unless
they set ``batch:``, ``dtype:`` or ``convention:`` themselves (``budget: {dtype: int8,
weight_bytes: 4MB}``; ``expect: {convention: fvcore, macs: ...}`` for a figure
published by fvcore); ``--convention`` changes the default convention.

Outcomes: a spec *passes*, *fails* (an expectation or budget is not met: exit 1) or
is *invalid* (a :class:`SpecError` located at FILE:LINE:COL: exit 2). A failure
names the spec line of its expectation, the expected and the actual value.

This module never imports torch (nor rich): with ``torch=True`` the cross-check of
:mod:`netcalc.torch.crosscheck` is imported lazily, per spec.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterable

from .args import INT64_MAX
from .dtypes import DTYPE_BITS, Dtypes
from .metrics import BUDGETABLE, METRICS
from .errors import Mark, SpecError, did_you_mean
from .units import parse_quantity, significant
from .yamlsafe import LMap

#: totals that ``expect:`` and ``budget:`` can name (attributes of analysis.Totals)
TOTALS = BUDGETABLE
#: the totals that need a training report (made with the training settings)
TRAINING_TOTALS = tuple(m.key for m in METRICS if m.training and m.budget)
BYTES = {m.key for m in METRICS if m.bytes}
#: keys that set how the report is computed rather than what it must say
TRAIN_SETTINGS = ("device", "optimizer", "precision", "checkpoint")
#: beside ``dtype``, as the options --weight-dtype ... of `netcalc shapes`
DTYPE_SETTINGS = ("weight_dtype", "activation_dtype", "kv_dtype", "quant_group_size")
SETTINGS = ("batch", "dtype", *DTYPE_SETTINGS, "convention", *TRAIN_SETTINGS)
EXPECT_KEYS = ("output", "outputs", "receptive_field", *TOTALS, *SETTINGS)
BUDGET_KEYS = (*TOTALS, *SETTINGS)
DTYPES = tuple(DTYPE_BITS)  # the --dtype choices of `netcalc shapes`

#: descriptions, for the JSON Schema and the docs
KEY_DOCS = {
    "output": "per-sample output shape (batch dropped), or a mapping output name -> shape",
    "outputs": "same as output",
    "receptive_field": "receptive-field size of the last spatial layer (int, [h, w] or "
                       "'global'), or a mapping layer name -> size",
    **{m.key: m.doc for m in METRICS},
    "batch": "batch size the values are computed at (default 1)",
    "dtype": "dtype the byte values are computed at (default float32)",
    "weight_dtype": "dtype of the weights (default: dtype)",
    "activation_dtype": "dtype of inputs and layer outputs (default: dtype)",
    "kv_dtype": "dtype of the KV cache (default: dtype)",
    "quant_group_size": "quantized weights: one 16-bit scale per this many weights",
    "convention": "MAC counting convention of macs/flops (default: netcalc, or --convention)",
    "device": "training figures: the kernels, cuda (default) or cpu",
    "optimizer": "training figures: sgd, momentum, adam or adamw (default)",
    "precision": "training figures: fp32, bf16, amp-bf16 or amp-fp16 (default: from dtype)",
    "checkpoint": "training figures: block instances or containers checkpointed (a name or "
                  "a list of names)",
}

_TOL_SEPARATORS = ("±", "+/-", "+-")


# --------------------------------------------------------------------------- results
@dataclass
class Check:
    """One evaluated expectation or budget entry."""

    section: str  # "expect" | "budget" | "torch"
    key: str  # "params", "output.loc1", "receptive_field.layer4"
    mark: Mark
    expected: str  # as written in the spec (or the budget's ceiling)
    actual: str  # the exact actual value
    passed: bool
    message: str  # one line: what was expected and what came out
    expected_value: Any = None  # JSON data
    actual_value: Any = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


@dataclass
class SpecResult:
    file: str
    name: str | None = None
    checks: list[Check] = field(default_factory=list)
    error: SpecError | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the cross-check's data

    @property
    def status(self) -> str:
        if self.error is not None:
            return "invalid"
        return "failed" if any(not c.passed for c in self.checks) else "passed"

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]


@dataclass
class CheckRun:
    results: list[SpecResult]
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        statuses = {r.status for r in self.results}
        if "invalid" in statuses or not self.results:
            return 2
        return 1 if "failed" in statuses else 0

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


# --------------------------------------------------------------------------- files
SUFFIXES = (".yaml", ".yml")
#: per-run caps (--max-files, --max-seconds): a pull request adding a thousand specs
#: near the per-spec limits must not hold CI for hours
MAX_FILES = 1000
MAX_SECONDS = 600.0
NOT_FOLLOWED = "a symbolic link: not followed (--follow-symlinks to follow it)"


class RunLimit(Exception):
    """A per-run cap was reached: the run stops with this one line (exit code 2)."""


def _invalid(path: str | Path, message: str) -> SpecResult:
    return SpecResult(str(path), error=SpecError(message, None, str(path)))


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def collect(paths: Iterable[str | Path], *, follow_symlinks: bool = False,
            max_files: int = MAX_FILES, deadline: float = math.inf
            ) -> tuple[list[Path], list[SpecResult]]:
    """Spec files under the paths (folders recursively, sorted), and the paths that
    cannot be checked (missing, symbolic links) as invalid results.

    Symbolic links are not followed, and reported, unless ``follow_symlinks``; then
    only those that stay inside the folder given (for a file given, its folder).
    Hidden files and folders are skipped. Anything else named *.yaml or *.yml is
    collected, so that a FIFO or a device is reported by the reader, not skipped.
    """
    files: list[Path] = []
    problems: list[SpecResult] = []
    seen: set[str] = set()
    for p in map(Path, paths):
        if p.is_symlink():
            if not follow_symlinks:
                problems.append(_invalid(p, NOT_FOLLOWED))
                continue
            if not _inside(os.path.realpath(p), os.path.realpath(p.parent)):
                problems.append(_invalid(p, "a symbolic link out of its folder: not followed"))
                continue
        if p.is_dir():
            found = sorted(_walk(p, follow_symlinks, problems, deadline))
            if not found:
                problems.append(_invalid(p, "no spec files (*.yaml, *.yml) in this folder"))
        elif os.path.lexists(p):
            found = [p]
        else:
            problems.append(_invalid(p, "no such file or folder"))
            continue
        for f in found:
            key = os.path.realpath(f)
            if key not in seen:
                seen.add(key)
                files.append(f)
                if len(files) > max_files:
                    raise RunLimit(f"more than {max_files:,} spec files (--max-files)")
    return files, problems


def _walk(top: Path, follow: bool, problems: list[SpecResult], deadline: float
          ) -> Iterable[Path]:
    """The spec files under ``top``, without recursion (a deep tree is no risk)."""
    root = os.path.realpath(top)
    visited = {root}
    stack = [top]
    while stack:
        if time.perf_counter() > deadline:
            raise RunLimit(f"still listing {top} at the time limit (--max-seconds)")
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            problems.append(_invalid(folder, f"cannot list the folder: {exc.strerror}"))
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            path = Path(e.path)
            is_spec = path.suffix in SUFFIXES
            if e.is_symlink():
                if not follow:
                    if is_spec or e.is_dir():
                        problems.append(_invalid(path, NOT_FOLLOWED))
                    continue
                target = os.path.realpath(path)
                if not _inside(target, root):
                    problems.append(_invalid(path, f"a symbolic link out of {top}: not followed"))
                elif os.path.isdir(target):
                    if target not in visited:
                        visited.add(target)
                        stack.append(path)
                elif is_spec:
                    yield path
            elif e.is_dir(follow_symlinks=False):
                stack.append(path)
            elif is_spec:
                yield path


def run(paths: Iterable[str | Path], *, torch: bool = False, convention: str | None = None,
        on_result: Callable[[SpecResult], None] | None = None, follow_symlinks: bool = False,
        max_files: int = MAX_FILES, max_seconds: float = MAX_SECONDS,
        max_file_bytes: int | None = None) -> CheckRun:
    """Check every spec under ``paths``; ``on_result`` sees each result as it is made.

    Raises :class:`RunLimit` when more than ``max_files`` specs are found or the run
    passes ``max_seconds`` (checked between specs, each bounded by the spec limits).
    """
    if convention is not None and convention not in convention_names():
        raise ValueError(f"unknown convention {convention!r} ({' | '.join(convention_names())})")
    start = time.perf_counter()
    deadline = start + max_seconds
    files, results = collect(paths, follow_symlinks=follow_symlinks, max_files=max_files,
                             deadline=deadline)
    for r in results:
        if on_result:
            on_result(r)
    for i, f in enumerate(files):
        if time.perf_counter() > deadline:
            raise RunLimit(f"stopped at the time limit of {max_seconds:g} s with {i:,} of "
                           f"{len(files):,} specs checked (--max-seconds)")
        r = check_file(f, torch=torch, convention=convention, max_file_bytes=max_file_bytes)
        results.append(r)
        if on_result:
            on_result(r)
    return CheckRun(results, time.perf_counter() - start)


def check_file(path: str | Path, *, torch: bool = False, convention: str | None = None,
               max_file_bytes: int | None = None) -> SpecResult:
    """Parse, analyse and check one spec file."""
    from . import spec as spec_mod

    start = time.perf_counter()
    result = SpecResult(str(path))
    try:
        spec = spec_mod.load(path, max_file_bytes or spec_mod.MAX_FILE_BYTES)
        result.name = spec.name
        reports = _Reports(spec, convention)
        result.checks = evaluate(spec, convention=convention, reports=reports)
        if torch:
            result.checks += torch_checks(spec, convention, result, reports.get())
    except SpecError as err:
        result.error = err.located(str(path))
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- evaluation
class _Reports:
    """Reports of one spec, computed once per (batch, dtype, convention, training)."""

    def __init__(self, spec: Any, convention: str | None):
        self.spec = spec
        self.convention = convention or "netcalc"
        self.cache: dict[tuple, Any] = {}
        self.graph: Any = None  # the spec expanded once (netcalc.graph.Graph)

    def get(self, batch: int = 1, dtype: str = "float32", convention: str | None = None,
            train: Any = None) -> Any:
        key = (batch, dtype, convention or self.convention, train)
        if key not in self.cache:
            from . import graph

            if self.graph is None:
                g = self.graph = graph.build(self.spec, batch)
            else:  # the same expansion, its layers copied for this analysis
                g = graph.rebatched(self.graph, batch)
            self.cache[key] = analyze(g, *key[1:])
        return self.cache[key]


def analyze(graph: Any, dtype: str, convention: str | None, train: Any = None) -> Any:
    """One report of an expanded spec (netcalc.graph.Graph), under a counting convention
    when one is named, for a training step when ``train`` (netcalc.training.TrainOptions)
    is given."""
    from . import analysis

    report = analysis.analyze_graph(graph, dtype, train)
    if convention not in (None, "netcalc"):
        from . import conventions

        report = conventions.apply(report, convention)
    return report


def convention_names() -> tuple[str, ...]:
    from .conventions import NAMES

    return tuple(NAMES)


def evaluate(spec: Any, convention: str | None = None, reports: "_Reports | None" = None
             ) -> list[Check]:
    """Evaluate a spec's ``expect:`` and ``budget:`` blocks (SpecError if malformed).

    The spec is always analysed once, so a spec with neither block is still built and
    its shapes checked.
    """
    reports = reports or _Reports(spec, convention)
    checks: list[Check] = []
    blocks = [(name, block) for name, block in (("expect", spec.expect), ("budget", spec.budget))
              if block is not None]
    if not blocks:
        reports.get()
    for section, block in blocks:
        keys = EXPECT_KEYS if section == "expect" else BUDGET_KEYS
        for key in block:
            if key not in keys:
                raise SpecError(f"{section}: unknown key {key!r}{did_you_mean(str(key), keys)} "
                                f"(one of {', '.join(keys)})", block.key_mark(key))
        if "output" in block and "outputs" in block:
            raise SpecError(f"{section}: give either output or outputs, not both",
                            block.key_mark("outputs"))
        settings = _settings(section, block)
        try:
            report = reports.get(*settings)
        except SpecError as err:
            if err.mark is None and (err.file or "").startswith("--"):
                raise _at_setting(err, section, block) from None
            raise
        for key, value in block.items():
            if key in SETTINGS:
                continue
            mark = block.key_mark(key)
            vmark = block.value_mark(key)
            if key in ("output", "outputs"):
                checks += _outputs(report, value, mark, vmark, key)
            elif key == "receptive_field":
                checks += _receptive_fields(report, value, mark, vmark)
            elif section == "expect":
                checks.append(_expect_total(report, key, value, mark, vmark))
            else:
                checks.append(_budget_total(report, key, value, mark, vmark))
    return checks


def _settings(section: str, block: LMap) -> tuple[int, Dtypes, str | None, Any]:
    batch = block.get("batch", 1)
    if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= INT64_MAX:
        raise SpecError(f"{section}.batch must be an int from 1 to 2**63 - 1, got {batch!r}",
                        block.value_mark("batch"))
    dtype = block.get("dtype", "float32")
    if dtype not in DTYPES:
        raise SpecError(f"{section}.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}",
                        block.value_mark("dtype"))
    convention = block.get("convention")
    if convention is not None and convention not in convention_names():
        raise SpecError(f"{section}.convention must be one of {', '.join(convention_names())}, "
                        f"got {convention!r}", block.value_mark("convention"))
    return (batch, _dtypes(section, block, dtype), convention,
            _train_settings(section, block, dtype, convention))


def _dtypes(section: str, block: LMap, dtype: str) -> Dtypes:
    """The report's dtypes; an error is located at the setting it names."""
    given = [block.get(k) for k in DTYPE_SETTINGS]
    try:
        return Dtypes.of(dtype, *given, names={k: k for k in ("dtype", *DTYPE_SETTINGS)})
    except SpecError as err:
        key = err.file or "dtype"
        raise SpecError(f"{section}.{key}: {err.message}",
                        block.value_mark(key) if key in block else block.mark) from None


def _train_settings(section: str, block: LMap, dtype: str, convention: str | None) -> Any:
    """TrainOptions when the block names a training total or setting, else None."""
    if not any(k in block for k in (*TRAINING_TOTALS, *TRAIN_SETTINGS)):
        return None
    from .training import TrainOptions

    if convention not in (None, "netcalc", "flopcounter"):
        raise SpecError(f"{section}.convention {convention!r} counts no backward: training "
                        "figures need netcalc or flopcounter", block.value_mark("convention"))
    given = {k: block[k] for k in TRAIN_SETTINGS if k in block}
    names = given.get("checkpoint", [])
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise SpecError(f"{section}.checkpoint must be a name or a list of names",
                        block.value_mark("checkpoint"))
    options = TrainOptions(given.get("device", "cuda"), given.get("optimizer", "adamw"),
                           given.get("precision"), tuple(names))
    try:
        options.validate().resolved_precision(dtype)
    except SpecError as err:
        raise _at_setting(err, section, block) from None
    return options


def _at_setting(err: SpecError, section: str, block: LMap) -> SpecError:
    """An option error of the training analysis (``--precision: ...``), located at the
    block's setting of the same name."""
    key = (err.file or "").lstrip("-").split(" ")[0]
    mark = block.value_mark(key) if key in block else block.mark
    return SpecError(f"{section}.{key}: {err.message}", mark)


# --------------------------------------------------------------------------- quantities
@dataclass(frozen=True)
class Expected:
    """An expected value: exact, or within a tolerance (absolute or relative)."""

    text: str
    value: Fraction
    tolerance: Fraction | None = None  # absolute, after a percentage is applied
    relative: Fraction | None = None  # the percentage as a fraction, when one was given

    @property
    def lo(self) -> Fraction:
        return self.value - (self.tolerance or 0)

    @property
    def hi(self) -> Fraction:
        return self.value + (self.tolerance or 0)

    def accepts(self, actual: int | Fraction) -> bool:
        return self.lo <= actual <= self.hi


def parse_expected(value: Any, mark: Mark, what: str, tolerance: bool = True) -> Expected:
    """``25557032``, ``4.09G``, ``4.09G ±1%``, ``20MB +- 1MB`` -> Expected."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise SpecError(f"{what}: expected a number such as 25557032, 4.09G or '4.09G ±1%', "
                        f"got {value!r}", mark)
    text = str(value).strip()
    base, tol_text = text, None
    for sep in _TOL_SEPARATORS:
        if sep in text:
            base, _, tol_text = text.partition(sep)
            break
    try:
        number = parse_quantity(base.strip() if isinstance(value, str) else value)
    except ValueError as exc:
        raise SpecError(f"{what}: {exc}", mark) from None
    if number < 0:
        raise SpecError(f"{what}: must not be negative, got {text!r}", mark)
    if tol_text is None:
        return Expected(text, number)
    if not tolerance:
        raise SpecError(f"{what}: a budget is a ceiling and takes no tolerance ({text!r})", mark)
    tol_text = tol_text.strip()
    try:
        if tol_text.endswith("%"):
            relative = parse_quantity(tol_text[:-1].strip()) / 100
            return Expected(text, number, number * relative, relative)
        return Expected(text, number, parse_quantity(tol_text))
    except ValueError:
        raise SpecError(f"{what}: cannot read the tolerance {tol_text!r} "
                        "(e.g. ±1% or ±10k)", mark) from None


def exact(x: int | Fraction) -> str:
    """A value for messages: 25,557,032 exactly; a fraction to 10 significant digits."""
    x = Fraction(x)
    if x.denominator == 1:
        return f"{x.numerator:,}"
    return significant(x, 10)


def _json_num(x: int | Fraction) -> int | float:
    x = Fraction(x)
    return x.numerator if x.denominator == 1 else float(x)


def _deviation(actual: int | Fraction, expected: Fraction) -> str:
    diff = Fraction(actual) - expected
    sign = "+" if diff > 0 else "-"
    text = f"{sign}{exact(abs(diff))}"
    if expected:
        text += f", {sign}{significant(abs(diff) / expected * 100)}%"
    return text


def _unknown(report: Any, section: str, key: str, value: Any, mark: Mark) -> Check | None:
    """A check of a total that is unknown (it includes an Opaque layer): failed."""
    if getattr(report.totals, key) is not None:
        return None
    layers = [r.name for r in report.layers if getattr(r, key, 0) is None]
    message = (f"{section}.{key}: unknown: the spec has {len(layers)} layer(s) netcalc cannot "
               f"count ({layers[0] if layers else '?'}{', ...' if len(layers) > 1 else ''}), "
               "so it cannot check this")
    return Check(section, key, mark, str(value), "unknown", False, message, None, None)


def _expect_total(report: Any, key: str, value: Any, mark: Mark, vmark: Mark) -> Check:
    exp = parse_expected(value, vmark, f"expect.{key}")
    unknown = _unknown(report, "expect", key, value, mark)
    if unknown is not None:
        return unknown
    actual = getattr(report.totals, key)
    ok = exp.accepts(actual)
    if exp.tolerance is None:
        wanted = exact(exp.value) if exp.text.replace("_", "").replace(",", "") == \
            str(exp.value) else f"{exp.text} ({exact(exp.value)})"
    else:
        wanted = f"{exp.text} ({exact(exp.lo)} to {exact(exp.hi)})"
    if ok:
        message = f"expect.{key}: {exact(actual)} matches {wanted}"
    else:
        message = (f"expect.{key}: expected {wanted}, got {exact(actual)} "
                   f"({_deviation(actual, exp.value)})")
    return Check("expect", key, mark, exp.text, exact(actual), ok, message,
                 _json_num(exp.value), actual)


def _budget_total(report: Any, key: str, value: Any, mark: Mark, vmark: Mark) -> Check:
    cap = parse_expected(value, vmark, f"budget.{key}", tolerance=False)
    unknown = _unknown(report, "budget", key, value, mark)
    if unknown is not None:
        return unknown
    actual = getattr(report.totals, key)
    ok = actual <= cap.value
    shown = cap.text if cap.text.replace("_", "").replace(",", "") == str(cap.value) \
        else f"{cap.text} ({exact(cap.value)})"
    if ok:
        message = f"budget.{key}: {exact(actual)} is within {shown}"
    else:
        over = actual - cap.value
        pct = f", +{significant(over / cap.value * 100)}%" if cap.value else ""
        message = (f"budget.{key}: {exact(actual)} exceeds the budget of {shown} "
                   f"by {exact(over)}{pct}")
    return Check("budget", key, mark, cap.text, exact(actual), ok, message,
                 _json_num(cap.value), actual)


# --------------------------------------------------------------------------- shapes
def _shape_value(value: Any, mark: Mark, what: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise SpecError(f"{what}: a shape is a list of positive ints, got {value!r}", mark)
    return tuple(value)


def _outputs(report: Any, value: Any, mark: Mark, vmark: Mark, key: str) -> list[Check]:
    outputs: dict[str, tuple[int, ...]] = report.outputs
    if isinstance(value, LMap):
        pairs = []
        for name, shape in value.items():
            if name not in outputs:
                raise SpecError(f"expect.{key}: the spec has no output {name!r} (outputs: "
                                f"{', '.join(outputs)}){did_you_mean(str(name), outputs)}",
                                value.key_mark(name))
            pairs.append((name, shape, value.key_mark(name), value.value_mark(name),
                          f"{key}.{name}"))
    else:
        if len(outputs) != 1:
            raise SpecError(f"expect.{key}: the spec has {len(outputs)} outputs "
                            f"({', '.join(outputs)}): give a mapping name -> shape", vmark)
        name = next(iter(outputs))
        pairs = [(name, value, mark, vmark, key)]
    checks = []
    for name, raw, kmark, smark, label in pairs:
        want = _shape_value(raw, smark, f"expect.{label}")
        full = tuple(outputs[name])
        # per-sample (batch dropped), or the whole shape when its rank is given
        got = full[1:] if len(want) != len(full) else full
        ok = got == want
        text = f"[{', '.join(map(str, want))}]"
        got_text = f"[{', '.join(map(str, got))}]"
        message = (f"expect.{label}: {got_text} matches" if ok
                   else f"expect.{label}: expected shape {text}, got {got_text}")
        checks.append(Check("expect", label, kmark, text, got_text, ok, message,
                            list(want), list(got)))
    return checks


# --------------------------------------------------------------------------- receptive fields
def _rf_target(report: Any, name: str | None, mark: Mark) -> Any:
    layers = report.layers
    if name is None:
        for row in reversed(layers):  # a map (not a flattened one), exact along every dim
            rf = row.rf
            if rf is not None and not rf.global_ and not rf.partial and rf.packing is None \
                    and rf.outer is None:
                return row
        raise SpecError("expect.receptive_field: the spec has no spatial layer", mark)
    for row in layers:
        if row.name == name:
            return row
    inside = [row for row in layers if row.name.startswith(name + ".")]
    if inside:  # a block instance or repeat group: its last layer
        return inside[-1]
    names = [row.name for row in layers]
    raise SpecError(f"expect.receptive_field: no layer {name!r}{did_you_mean(name, names)}", mark)


def _rf_expected(value: Any, mark: Mark, what: str) -> list[Expected] | str:
    if value == "global":
        return "global"
    if isinstance(value, list):
        return [parse_expected(v, mark, what) for v in value]
    return [parse_expected(value, mark, what)]


def _receptive_fields(report: Any, value: Any, mark: Mark, vmark: Mark) -> list[Check]:
    if isinstance(value, LMap):
        items = [(str(k), v, value.key_mark(k), value.value_mark(k)) for k, v in value.items()]
    else:
        items = [(None, value, mark, vmark)]
    checks = []
    for name, raw, kmark, smark in items:
        label = "receptive_field" + (f".{name}" if name else "")
        want = _rf_expected(raw, smark, f"expect.{label}")
        row = _rf_target(report, name, kmark)
        rf = row.rf
        if rf is None:
            got_text = "none"
        elif rf.global_:
            got_text = "global"
        else:
            sizes = [d.size for d in rf.dims]
            got_text = exact(sizes[0]) if len(set(sizes)) == 1 else \
                "×".join("global" if s is None else exact(s) for s in sizes)
        if want == "global":
            ok = rf is not None and rf.global_
            want_text = "global"
        else:
            want_text = "×".join(e.text for e in want)
            if rf is None or rf.global_ or rf.partial:  # global along some dim
                ok = False
            else:
                sizes = [d.size for d in rf.dims]
                if len(want) == 1:
                    ok = all(want[0].accepts(s) for s in sizes)
                else:
                    ok = len(want) == len(sizes) and all(e.accepts(s) for e, s in zip(want, sizes))
        message = (f"expect.{label}: {row.name} sees {got_text}" if ok else
                   f"expect.{label}: expected {want_text} at {row.name}, got {got_text}")
        checks.append(Check("expect", label, kmark, want_text, got_text, ok, message,
                            want_text, got_text))
    return checks


# --------------------------------------------------------------------------- torch
# the packages the torch extra adds, by their own names: `pip install netcalc[torch]`
# would install an unrelated PyPI project called netcalc
TORCH_MISSING = ("--torch needs PyTorch: pip install torch fvcore "
                 "(the CPU wheel of torch is enough)")


class TorchUnavailable(RuntimeError):
    """The torch extra (torch, fvcore) is not installed."""


def torch_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


#: specs larger than this (float32 weights + every activation, batch 1) are cross-checked
#: on torch's meta device: shapes, params, buffers and the FLOP counter, no allocation
TORCH_CPU_LIMIT_BYTES = 2 * 10**9


def torch_checks(spec: Any, convention: str | None, result: SpecResult,
                 report: Any = None) -> list[Check]:
    """Run the torch cross-check of one spec: one Check per mismatch, or one passing."""
    try:
        from .torch.crosscheck import crosscheck
    except ImportError as exc:
        raise TorchUnavailable(f"{TORCH_MISSING} ({exc})") from None
    if report is None:
        report = analyze(spec, 1, "float32", None)
    t = report.totals
    device = "meta" if t.weight_bytes + t.activation_bytes > TORCH_CPU_LIMIT_BYTES else "cpu"
    outcome = crosscheck(spec, device=device, convention=convention or "netcalc")
    result.extra["torch"] = outcome.to_dict()
    mark = getattr(spec.raw, "mark", Mark(1, 1))
    if outcome.ok:
        return [Check("torch", "crosscheck", mark, "analytic", "torch", True,
                      f"torch ({device}): every number matches PyTorch")]
    return [Check("torch", f"{row.layer}.{row.metric}", Mark(row.line, 1) if row.line else mark,
                  str(row.analytic), str(row.torch), False, row.message)
            for row in outcome.mismatches]
