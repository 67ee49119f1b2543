"""Cross-check: every analytic number of a spec against the built PyTorch model.

    from netcalc.torch.crosscheck import crosscheck
    result = crosscheck("specs/resnet50.yaml")
    result.ok            # False if any row is a MISMATCH
    result.mismatches    # the rows that disagree, each naming its layer

What is compared, per layer node (the module at the node's report name) and in total:

``shape``
    every output's shape, from a real forward pass (forward hooks; on ``meta``
    nothing is computed or allocated);
``params``, ``trainable``, ``buffers``
    exact element counts of the module's parameters (each Parameter counted once,
    on the first layer that holds it: ``tie:`` shares it), those with
    ``requires_grad``, and its buffers;
``fvcore``
    ``fvcore.nn.FlopCountAnalysis(model, inputs).by_module()[name]`` (one fused
    multiply-add = 1), skipped on ``meta`` (fvcore's jit trace cannot run there);
``flopcounter``
    ``torch.utils.flop_counter.FlopCounterMode`` per module (2 per MAC);
``torchinfo``
    torchinfo's Mult-Adds (the sum over the leaf modules below the layer), when
    torchinfo is installed;
``rf``
    the receptive field, measured: see :func:`empirical_rf`.

The MAC rows compare netcalc's count under the chosen ``convention`` (expressed
in the tool's unit) with the tool's number. Equal: ``match``. Different, but the
tool's own documented rule (:mod:`netcalc.conventions`) gives exactly the tool's
number: ``convention`` (the rule is named). Anything else: ``MISMATCH``.

Protocol (what "the tool's number" means): the model in ``eval()`` mode, float32,
inference under ``torch.no_grad()``, with
``torch.backends.mha`` fast paths disabled (the fused inference kernels of
MultiheadAttention/TransformerEncoderLayer hide their products from every
counter; under autograd torch never takes them either).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .. import conventions
from ..analysis import Report
from ..errors import SpecError
from ..graph import Graph
from ..rf import RF
from ..spec import Spec
from . import guard
from .build import NetcalcModule, _module_of, adopt, flatten_outputs, inputs_for, prepare

MATCH, CONVENTION, MISMATCH, SKIPPED = "match", "convention", "MISMATCH", "skipped"
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


# ============================================================================ running
@contextlib.contextmanager
def counting_mode() -> Iterator[None]:
    """The protocol of every count: no autograd, no fused MHA fast path, quiet tools."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    logger = logging.getLogger("fvcore")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        logger.setLevel(level)


class LayerFailed(Exception):
    """A layer's module raised in the forward pass (``cause``)."""

    def __init__(self, layer: str, cause: BaseException):
        super().__init__(f"{layer}: {guard.one_line(cause)}")
        self.layer = layer
        self.cause = cause


def observe(model: NetcalcModule, inputs: tuple[torch.Tensor, ...]) -> dict[str, list[tuple[int, ...]]]:
    """Output shapes of every layer node from one forward pass (forward hooks). A layer
    that raises is named by :class:`LayerFailed` (running out of memory is not its fault)."""
    shapes: dict[str, list[tuple[int, ...]]] = {}
    running: list[str] = []
    handles = []
    for name, module in model.named_layers():
        def pre(mod, args, name=name):
            running.append(name)

        def hook(mod, args, out, name=name):
            if name not in shapes:  # a module shared by two nodes: first call
                shapes[name] = [tuple(t.shape) for t in flatten_outputs(out)
                                if isinstance(t, torch.Tensor)]
        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(hook)]
    try:
        with counting_mode():
            model(*inputs)
    except guard.TORCH_ERRORS as exc:
        if not running or guard.is_out_of_memory(exc):
            raise
        raise LayerFailed(running[-1], exc) from exc
    finally:
        for h in handles:
            h.remove()
    return shapes


def owned_counts(model: NetcalcModule) -> dict[str, tuple[int, int, int]]:
    """(params, trainable params, buffer elements) of each layer; a shared Parameter
    counts on the first layer (graph order) that holds it."""
    seen: set[int] = set()
    seen_buf: set[int] = set()
    out = {}
    for name, module in model.named_layers():
        params = trainable = buffers = 0
        for p in module.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            params += p.numel()
            trainable += p.numel() if p.requires_grad else 0
        for b in module.buffers():
            if id(b) in seen_buf:
                continue
            seen_buf.add(id(b))
            buffers += b.numel()
        out[name] = (params, trainable, buffers)
    return out


def count_fvcore(model: NetcalcModule, inputs: tuple[torch.Tensor, ...]) -> tuple[dict[str, int], int]:
    """fvcore's FlopCountAnalysis per layer node and in total (default op handles)."""
    with counting_mode():
        from fvcore.nn import FlopCountAnalysis

        fa = FlopCountAnalysis(model, inputs)
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        fa.tracer_warnings("none")
        by_module = fa.by_module()
        total = fa.total()
    return {name: int(by_module.get(name, 0)) for name in model.layer_names}, int(total)


def count_flopcounter(model: NetcalcModule, inputs: tuple[torch.Tensor, ...]) -> tuple[dict[str, int], int]:
    """torch.utils.flop_counter.FlopCounterMode per layer node and in total."""
    from torch.utils.flop_counter import FlopCounterMode

    with counting_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(*inputs)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    per = {}
    for name in model.layer_names:
        per[name] = int(sum(counts.get(f"{root}.{name}", {}).values()))
    return per, int(counter.get_total_flops())


def torchinfo_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchinfo") is not None


def count_torchinfo(model: NetcalcModule, inputs: tuple[torch.Tensor, ...]) -> tuple[dict[str, int], int]:
    """torchinfo's Mult-Adds: per layer node, the sum over the leaf modules below it."""
    import torchinfo

    device = inputs[0].device if inputs else torch.device("cpu")
    with counting_mode():
        stats = torchinfo.summary(model, input_data=list(inputs), verbose=0, depth=1_000_000,
                                  device=device)
    by_id: dict[int, int] = {}
    for info in stats.summary_list:
        if info.is_leaf_layer:
            by_id[id(info.module)] = by_id.get(id(info.module), 0) + int(info.macs)
    per = {}
    for name, module in model.named_layers():
        per[name] = sum(by_id.get(id(m), 0) for m in {id(x): x for x in module.modules()}.values())
    return per, int(stats.total_mult_adds)


# ============================================================================ the check
def crosscheck(spec: str | Path | Spec | Graph, *, batch: int = 1, device: str = "cpu",
               convention: str = "netcalc", input_shapes: dict[str, tuple[int, ...]] | None = None,
               tools: tuple[str, ...] = TOOLS, rf: bool | None = None, seed: int = 0,
               module: nn.Module | None = None) -> CrossCheckResult:
    """Compare every analytic number of ``spec`` with PyTorch (see the module docstring).

    ``device="meta"`` checks shapes, params, buffers and the FLOP counter without
    allocating weights (large models); fvcore and the receptive field need real
    tensors and are skipped there. A model too large for the memory this process can
    get (free RAM, ``ulimit -v``, the cgroup's limit), or that runs out of it, is
    checked on meta (``result.device``; the reason is in ``skipped``). ``rf=None``
    measures receptive fields when the device is not meta.

    What torch cannot take -- a device this machine lacks, an argument beyond int64 or
    NaN, a tensor too large to index, any error torch raises outside a layer's forward
    -- is a :class:`SpecError` of one line. A layer whose forward raises is a MISMATCH
    (torch disagrees with the analysis, which accepted it).
    """
    conventions.get(convention)  # validates the name
    guard.check_device(str(device))
    graph, report = prepare(spec, batch=batch, input_shapes=input_shapes)
    guard.check_domain(graph, batch, input_shapes)
    dev = str(device)
    fallback = _too_big(report, dev) if dev != "meta" and module is None else None
    try:
        return _check(graph, report, "meta" if fallback else dev, fallback, convention, tools,
                      rf, seed, module)
    except (*guard.TORCH_ERRORS, MemoryError) as exc:
        if fallback or dev == "meta" or module is not None or not guard.is_out_of_memory(exc):
            raise SpecError(f"torch cannot check this spec: {guard.one_line(exc)}") from exc
        why = guard.one_line(exc)
    # outside the handler, so the failed attempt's tensors are freed before the retry
    return _check(graph, report, "meta", f"device: {dev} ran out of memory ({why}): checked "
                  "on the meta device instead", convention, tools, rf, seed)


def _check(graph: Graph, report: Report, dev: str, fallback: str | None, convention: str,
           tools: tuple[str, ...], rf: bool | None, seed: int,
           module: nn.Module | None = None) -> CrossCheckResult:
    meta = dev == "meta"
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = (_module_of(graph, device=dev) if module is None else adopt(graph, module)).eval()
    inputs = inputs_for(graph, device=dev, generator=gen)
    result = CrossCheckResult(report.name, report.file, report.batch, dev, convention, [], [],
                              versions=_versions(tools))
    if fallback:
        result.skipped.append(fallback)
    lines = {n.name: n.mark.line for n in graph.nodes}
    types = {n.name: n.type for n in graph.nodes}

    def add(name: str, metric: str, analytic: Any, actual: Any, verdict: str | None = None,
            rule: str = "") -> None:
        if verdict is None:
            verdict = MATCH if analytic == actual else MISMATCH
        result.rows.append(CheckRow(name, types[name], metric, analytic, actual, verdict, rule,
                                    lines[name]))

    # shapes
    try:
        shapes = observe(model, inputs)
    except LayerFailed as exc:  # nothing after this layer ran: it is the one finding
        r = next(r for r in report.layers if r.name == exc.layer)
        add(exc.layer, "shape", [list(s) for s in r.output_shapes],
            f"raises {type(exc.cause).__name__}: {guard.one_line(exc.cause)}", MISMATCH,
            "the forward pass stopped here; nothing after it was compared")
        return result
    for r in report.layers:
        add(r.name, "shape", [list(s) for s in r.output_shapes],
            [list(s) for s in shapes.get(r.name, [])[: max(len(r.output_shapes), 1)]])
    # params, trainable, buffers
    owned = owned_counts(model)
    for r in report.layers:
        p, t, b = owned[r.name]
        add(r.name, "params", r.params, p)
        add(r.name, "trainable", r.trainable_params, t)
        add(r.name, "buffers", r.buffers, b)
    totals = report.totals
    all_params = list(model.parameters())
    result.totals += [
        _total("output shapes", [list(report.outputs[n]) for n in model.output_names],
               _output_shapes(model, inputs)),
        _total("params", totals.params, sum(p.numel() for p in all_params)),
        _total("trainable", totals.trainable_params,
               sum(p.numel() for p in all_params if p.requires_grad)),
        _total("buffers", totals.buffers, sum(b.numel() for b in model.buffers())),
    ]
    # MACs, each tool against netcalc's number under `convention`, in the tool's unit
    counters = {"fvcore": count_fvcore, "flopcounter": count_flopcounter,
                "torchinfo": count_torchinfo}
    for tool in tools:
        if tool == "fvcore" and meta:
            result.skipped.append("fvcore: its jit trace cannot run on the meta device")
            continue
        if tool == "torchinfo" and not torchinfo_available():
            result.skipped.append("torchinfo: not installed")
            continue
        try:
            per, total = counters[tool](model, inputs)
        except Exception as exc:  # a tool that cannot run the model is a finding, not a crash
            result.totals.append(CheckRow("TOTAL", "", tool, "runs",
                                          f"fails: {guard.one_line(exc)}",
                                          MISMATCH, f"{tool} could not count this model"))
            continue
        _compare_counts(result, report, convention, tool, per, total, add, torch_context(dev))
    # receptive fields
    if rf is None:
        rf = not meta
    if meta:
        result.skipped.append("rf: measured on real tensors only (not on the meta device)")
    elif rf:
        result.rows += empirical_rf(graph, report, seed=seed, skipped=result.skipped)
    return result


def torch_context(device: str, dtype: str = "float32") -> conventions.Context:
    """The convention context of this torch build: device type and oneDNN."""
    onednn = bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled)
    return conventions.Context(torch.device(device).type, onednn, dtype)


def _too_big(report: Report, device: str) -> str | None:
    """Why the float32 model cannot be allocated on this CPU (then: checked on meta).

    The estimate is compared with what this process can get, which under ``ulimit -v``
    or in a container is far less than the machine's free RAM; 0.6 leaves room for the
    tools' copies and the allocator's arenas."""
    if torch.device(device).type != "cpu":
        return None
    room = guard.allocatable()
    if room is None:  # pragma: no cover - not POSIX
        return None
    avail, limit = room
    t = report.totals
    need = t.weight_bytes + t.buffers * 4 + t.peak_activation_bytes + t.input_bytes
    if need <= avail * 0.6:
        return None
    return (f"device: the float32 model needs about {need / 1e9:.1f} GB and {limit} leaves "
            f"{avail / 1e9:.1f} GB: checked on the meta device instead (shapes, params, "
            "buffers, FLOP counter, torchinfo; no fvcore, no receptive fields)")


def _compare_counts(result: CrossCheckResult, report: Report, convention: str, tool: str,
                    per: dict[str, int], total: int, add, ctx: conventions.Context) -> None:
    mine = conventions.get(convention)
    theirs = conventions.get(tool)
    unit = theirs.scale  # tool units per MAC-unit of the convention tables
    sum_mine = sum_theirs = 0
    for r in report.layers:
        layer = report.graph.by_name[r.name].layer if report.graph else None
        a, _ = mine.layer_count(r, layer, ctx)
        t, rule = theirs.layer_count(r, layer, ctx)
        a_tool = _in_unit(a, mine.scale, unit)  # expressed in the tool's unit
        t_tool = _in_unit(t, theirs.scale, unit)
        sum_mine += a_tool
        sum_theirs += t_tool
        actual = per.get(r.name, 0)
        if a_tool == actual:
            add(r.name, tool, a_tool, actual, MATCH)
        elif t_tool == actual:
            add(r.name, tool, a_tool, actual, CONVENTION, rule.id)
        else:
            add(r.name, tool, a_tool, actual, MISMATCH,
                f"{tool} rule {rule.id} predicts {t_tool:,}")
    if sum_mine == total:
        verdict, rule = MATCH, ""
    elif sum_theirs == total:
        verdict, rule = CONVENTION, f"{tool} convention (sum of its per-layer rules)"
    else:
        verdict, rule = MISMATCH, f"{tool} rules predict {sum_theirs:,}"
    result.totals.append(CheckRow("TOTAL", "", tool, sum_mine, total, verdict, rule))


def _in_unit(count: int, scale: int, unit: int) -> int:
    """A count made with ``scale`` units per MAC, expressed with ``unit`` per MAC."""
    return count * unit // scale if (count * unit) % scale == 0 else Fraction(count * unit, scale)


def _total(metric: str, analytic: Any, actual: Any) -> CheckRow:
    return CheckRow("TOTAL", "", metric, analytic, actual, MATCH if analytic == actual else MISMATCH)


def _output_shapes(model: NetcalcModule, inputs: tuple[torch.Tensor, ...]) -> list[list[int]]:
    with counting_mode():
        out = model(*inputs)
    outs = list(out) if isinstance(out, tuple) else [out]
    return [list(t.shape) for t in outs]


def _versions(tools: tuple[str, ...]) -> dict[str, str]:
    from importlib import metadata

    out = {"torch": torch.__version__}
    for dist in ("fvcore", "torchinfo"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


# ============================================================================ receptive field
#: modules replaced by Identity while measuring receptive fields: point-wise maps whose
#: gradient can vanish (ReLU of a negative, saturated clamps) and norms whose statistics
#: mix positions (the analytic field ignores statistics, see netcalc.layers.norm)
def _rf_surrogate(module: nn.Module) -> nn.Module | None:
    act = nn.modules.activation
    keep = (act.Softmax, act.Softmin, act.LogSoftmax, act.Softmax2d, act.MultiheadAttention)
    if type(module).__module__ == act.__name__ and not isinstance(module, keep):
        return nn.Identity()
    if isinstance(module, (nn.modules.dropout._DropoutNd, nn.modules.batchnorm._NormBase,
                           nn.GroupNorm, nn.LayerNorm, nn.RMSNorm)):
        return nn.Identity()
    if isinstance(module, nn.modules.pooling._MaxPoolNd):
        return _SpreadMaxPool(module)
    if isinstance(module, nn.modules.pooling._AdaptiveMaxPoolNd):
        nd = int(type(module).__name__[-2])
        return getattr(nn, f"AdaptiveAvgPool{nd}d")(module.output_size)
    return None


class _SpreadMaxPool(nn.Module):
    """Max pooling whose gradient reaches every element of each window (not only the
    maximum): ``max(x).detach() + sum(x) - sum(x).detach()``; same windows as torch's."""

    def __init__(self, pool: nn.Module):
        super().__init__()
        self.pool = pool
        self.nd = int(type(pool).__name__[-2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        nd, p = self.nd, self.pool
        tup = lambda v: (v,) * nd if isinstance(v, int) else tuple(v)  # noqa: E731
        k, s, pad, d = tup(p.kernel_size), tup(p.stride or p.kernel_size), tup(p.padding), \
            tup(p.dilation)
        y = p(x)
        out_sizes = y.shape[-nd:]
        pads: list[int] = []
        for i in reversed(range(nd)):
            n = x.shape[-nd + i]
            need = (out_sizes[i] - 1) * s[i] + d[i] * (k[i] - 1) + 1 - n - pad[i]
            pads += [pad[i], max(need, pad[i])]
        xp = F.pad(x, pads)
        c = x.shape[-nd - 1]
        flat = xp.reshape(-1, c, *xp.shape[-nd:])
        w = torch.ones((c, 1, *k), dtype=x.dtype, device=x.device)
        conv = getattr(F, f"conv{nd}d")
        summed = conv(flat, w, stride=s, dilation=d, groups=c)
        summed = summed[(..., *(slice(0, o) for o in out_sizes))].reshape(y.shape)
        return y.detach() + summed - summed.detach()


def _integral(rf) -> bool:
    return all(v.denominator == 1 for d in rf.dims for v in (d.size, d.stride, d.lo, d.hi))


def empirical_rf(graph: Graph, report: Report, *, seed: int = 0,
                 skipped: list[str] | None = None, layers: list[str] | None = None
                 ) -> list[CheckRow]:
    """Measure the receptive field of every spatial layer by backpropagation.

    The model is built in float32 (a layer that disagrees is measured again in
    float64: an underflowing gradient can only shrink the extent) with every
    parameter a positive random value scaled by 1/fan-in, in eval mode, on a
    positive random input; activations,
    dropout and norms are replaced by the identity and max pools spread their
    gradient over the whole window (the field is geometry: those modules only decide
    whether a gradient vanishes, never where it can reach). For each layer whose
    analytic field is integral and aligned, one output unit is chosen -- the one
    nearest the centre whose region lies inside the input (else the centre unit,
    compared after clipping to the input) -- and a positive random combination of
    its channels is backpropagated to the input. The input extent with a non-zero
    gradient, per spatial dim, must equal the analytic region ``[lo, hi]`` of that
    unit. Where no unit's region lies inside the input, the centre unit's region is
    clipped to the input and the measured extent must lie within it (a dilated or
    strided window may have holes exactly on the border, so the extent can be
    smaller); inside the input it must be equal. A layer whose output units do not
    step a whole number of input units (transposed convolution, upsampling, pixel
    shuffle, adaptive pools with uneven windows) has units that differ by phase on
    a stepped grid: its measured extent must not exceed the analytic size; the
    layers after it (whose units' regions vary from unit to unit) are not measured.

    Several layers are probed at once, one per sample of a batch (eval mode keeps
    samples independent).
    """
    skipped = skipped if skipped is not None else []
    spatial = [(n, t) for n, t in graph.inputs.items() if t.dtype != "int64" and len(t.shape) >= 3]
    if not spatial:
        return []
    if len(spatial) != 1 or len(graph.inputs) != 1:
        skipped.append("rf: measured only for specs with one spatial float input")
        return []
    in_name, in_info = spatial[0]
    in_sizes = in_info.shape[2:]
    probes = []
    skipped_layers = 0
    for r in report.layers:
        if layers is not None and r.name not in layers:
            continue
        f = r.rf
        if f is None or f.global_ or not f.dims:
            continue
        if not f.aligned or not _integral(f) or len(f.dims) != len(in_sizes):
            skipped_layers += 1
            continue
        probes.append(r)
    if skipped_layers:
        skipped.append(f"rf: {skipped_layers} layer(s) with a fractional or unaligned field "
                       "not measured")
    if not probes:
        return []
    # float32 is fast; a gradient that underflows there can only shrink the measured
    # extent, so every layer that disagrees is measured again in float64
    rows = _measure_rf(graph, report, probes, in_info, torch.float32, seed, skipped)
    again = {r.layer for r in rows if r.verdict == MISMATCH}
    if again:
        redo = {r.layer: r for r in _measure_rf(graph, report,
                                                 [p for p in probes if p.name in again],
                                                 in_info, torch.float64, seed)}
        rows = [redo.get(r.layer, r) for r in rows]
    return rows


def _measure_rf(graph: Graph, report: Report, probes: list, in_info, dtype: torch.dtype,
                seed: int, skipped: list[str] | None = None) -> list[CheckRow]:
    in_sizes = in_info.shape[2:]
    # nodes at or behind a layer whose units do not step evenly over its input
    uneven: dict[str, str] = {}
    rf_of = {r.name: r.rf for r in report.layers}
    in_rf = {name: RF.identity(len(t.shape) - 2) for name, t in graph.inputs.items()
             if len(t.shape) >= 3}
    for node in graph.nodes:
        f = rf_of[node.name]
        own = False
        if f is not None and not f.global_:
            # the layer's own steps, output jump / input jump per dim, are not whole
            # (transposed windows, resampling, adaptive pools with uneven windows)
            for src in node.sources:
                g = rf_of.get(src.node, in_rf.get(src.node))
                if g is not None and not g.global_ and len(g.dims) == len(f.dims):
                    own = own or not all(_whole_step(d.stride, e.stride)
                                         for d, e in zip(f.dims, g.dims))
        # "own": this layer steps unevenly; "behind": a later layer that changes the
        # field (a point-wise layer keeps its source's status)
        status = "own" if own else "even"
        for src in node.sources:
            st = uneven.get(src.node, "even")
            if st != "even":
                status = st if rf_of.get(src.node) == f else "behind"
        uneven[node.name] = status
    # nodes behind a padding that copies the input (reflect, replicate, circular): at the
    # border their units read real pixels where the analytic field sees padding
    copied: dict[str, bool] = {}
    for node in graph.nodes:
        own = node.type.startswith(("Reflection", "Replication", "Circular")) or \
            getattr(node.layer, "padding_mode", "zeros") not in ("zeros", None)
        copied[node.name] = own or any(copied.get(src.node, False) for src in node.sources)
    border_skips = behind_skips = 0
    gen = torch.Generator().manual_seed(seed)
    model = _module_of(graph, dtype=dtype).eval()
    for name, module in list(model.named_modules()):
        if not name:
            continue
        sub = _rf_surrogate(module)
        if sub is not None:
            model.set_submodule(name, sub)
    with torch.no_grad():
        for module in model.modules():
            for p in module.parameters(recurse=False):
                fan_in = max(1, p.numel() // p.shape[0]) if p.dim() > 1 else 1
                p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5).div_(fan_in)
    # a layer built as the identity here (activation, norm, dropout, nn.Identity) outputs
    # the very tensor of its source: measure the source once for both
    root: dict[str, str] = {}
    out_shape = {r.name: r.shape for r in report.layers}
    for node in graph.nodes:
        src = node.sources[0].node if len(node.sources) == 1 else None
        if (src in out_shape and node.sources[0].out == 0
                and type(model.get_submodule(node.name)) is nn.Identity
                and out_shape[src] == out_shape[node.name]):
            root[node.name] = root.get(src, src)
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    targets: dict[tuple[str, tuple[int, ...]], list] = {}
    for r in probes:
        axes = r.rf.spatial_axes(len(r.shape))
        sizes = [r.shape[a] for a in axes]
        unit, expect = _choose_unit(r.rf, sizes, in_sizes)
        unit = tuple(zip(axes, unit))  # each spatial index at its axis (channel-last too)
        targets.setdefault((root.get(r.name, r.name), unit), []).append((r, expect))
    keys = sorted(targets, key=lambda k: order[k[0]])
    per_sample = max(1, report.totals.activation_bytes // report.batch
                     * torch.finfo(dtype).bits // 32)
    chunk = max(1, min(64, (1 << 30) // per_sample))
    rows: list[CheckRow] = []
    nodes = {n.name: n for n in graph.nodes}
    for start in range(0, len(keys), chunk):
        group = keys[start:start + chunk]
        x = (torch.rand((len(group), *in_info.shape[1:]), generator=gen, dtype=dtype)
             + 0.5).requires_grad_(True)
        captured: dict[str, torch.Tensor] = {}
        handles = []
        wanted = {name for name, _ in group}
        last = group[-1][0]  # the forward stops after the deepest layer of the group
        for name, module in model.named_layers():
            if name in wanted:
                def hook(mod, args, out, name=name):
                    captured.setdefault(name, flatten_outputs(out)[0])
                    if name == last:
                        raise _Stop
                handles.append(module.register_forward_hook(hook))
        try:
            with torch.enable_grad():
                try:
                    model(x)
                except _Stop:
                    pass
                seeds = []
                for b, (name, unit) in enumerate(group):
                    out = captured[name]
                    at = [slice(None)] * out.dim()
                    at[0] = b
                    for a, j in unit:
                        at[a] = j
                    vec = out[tuple(at)]
                    weights = torch.rand(vec.shape, generator=gen, dtype=vec.dtype) + 0.5
                    seeds.append((vec * weights).sum())
                (grad,) = torch.autograd.grad(torch.stack(seeds).sum(), x)
        finally:
            for h in handles:
                h.remove()
        for b, key in enumerate(group):
            g = grad[b].abs().sum(dim=0)  # over channels
            measured = []
            for d in range(len(in_sizes)):
                other = tuple(i for i in range(len(in_sizes)) if i != d)
                line = g.amax(dim=other) if other else g
                idx = torch.nonzero(line).flatten()
                measured.append([int(idx.min()), int(idx.max())] if len(idx) else None)
            for r, (lo_hi, clipped) in targets[key]:
                analytic = [None if v is None else list(v) for v in lo_hi]
                if any(v is None for v in analytic):  # the unit sees padding only
                    analytic = [None] * len(analytic)
                note = f"unit {[j for _, j in key[1]]}" + (", clipped to the input" if clipped else "")
                if dtype == torch.float64:
                    note += ", float64"
                if key[0] != r.name:
                    note += f", measured on {key[0]} (identity in between)"
                node = nodes[r.name]
                if clipped and copied[r.name]:
                    border_skips += 1
                    continue
                if uneven[r.name] == "behind":
                    behind_skips += 1
                    continue
                if analytic == measured:
                    verdict = MATCH
                elif clipped and _within(measured, analytic, empty_ok=True):
                    # the region pokes out of the input: the unit reads only the real pixels
                    # of a dilated or strided window, so holes may sit on the border
                    verdict = MATCH
                    note += " (measured inside the clipped region: holes of the window at the border)"
                elif uneven[r.name] == "own" and all(
                        m is None or m[1] - m[0] + 1 <= d.size for m, d in zip(measured, r.rf.dims)):
                    # uneven steps (transposed conv, resampling, adaptive pool): units differ
                    # by phase and sit on a stepped grid; the size bounds each one
                    verdict = MATCH
                    note += (" (uneven steps: units differ by phase; measured extent within "
                             "the analytic size)")
                else:
                    verdict = MISMATCH
                rows.append(CheckRow(r.name, node.type, "rf", analytic, measured, verdict, note,
                                     node.mark.line))
    rows.sort(key=lambda row: order[row.layer])
    if behind_skips and skipped is not None:
        skipped.append(f"rf: {behind_skips} layer(s) not measured: they follow a layer whose "
                       "units step unevenly over its input (transposed conv, resampling, "
                       "adaptive pool), so their units' regions differ and the analytic field "
                       "describes a typical one")
    if border_skips and skipped is not None:
        skipped.append(f"rf: {border_skips} layer(s) not measured: no unit lies inside the "
                       "input and a reflect/replicate/circular padding copies pixels at the "
                       "border")
    return rows


def _whole_step(jump: Any, jump_in: Any) -> bool:
    """Does one output step span a whole number of input steps? (A jump of 0: every
    unit reads the same input, e.g. upsampling a size-1 dim with align_corners.)"""
    if jump_in == 0:
        return jump == 0
    step = Fraction(jump) / Fraction(jump_in)
    return step.denominator == 1


def _within(measured: list, analytic: list, empty_ok: bool = False) -> bool:
    if empty_ok and any(m is None for m in measured):
        return True
    if any(a is None for a in analytic):
        return False
    return all(m is not None and a[0] <= m[0] <= m[1] <= a[1]
               for m, a in zip(measured, analytic))


class _Stop(Exception):
    """Ends a receptive-field forward pass after the deepest probed layer."""


def _choose_unit(rf, out_sizes, in_sizes) -> tuple[tuple[int, ...], tuple[list, bool]]:
    """Per dim, the unit nearest the centre whose region lies inside the input; else the
    one nearest the centre whose clipped region is not empty (else the centre unit, whose
    region is then empty: None)."""
    unit, regions, clipped = [], [], False
    for d, (dim, n_out, n_in) in enumerate(zip(rf.dims, out_sizes, in_sizes)):
        def region(j):
            c = dim.start + j * dim.stride
            return c - (dim.size - 1) / 2, c + (dim.size - 1) / 2

        def clip(j):
            lo, hi = region(j)
            return max(lo, Fraction(0)), min(hi, Fraction(n_in - 1))
        centre = (n_out - 1) // 2
        near = lambda j: (abs(j - centre), j)  # noqa: E731
        inside = [j for j in range(n_out) if region(j)[0] >= 0 and region(j)[1] <= n_in - 1]
        if inside:
            j = min(inside, key=near)
            lo, hi = region(j)
        else:
            clipped = True
            seen = [j for j in range(n_out) if clip(j)[0] <= clip(j)[1]]
            j = min(seen, key=near) if seen else centre
            lo, hi = clip(j)
        unit.append(j)
        regions.append([int(lo), int(hi)] if lo <= hi else None)
    return tuple(unit), (regions, clipped)
