"""Receptive fields measured by backpropagation: the ``rf`` rows of a cross-check.

See :func:`empirical_rf`. The probe runs in phases (:func:`_measure_rf`): classify the
nodes (uneven steps, border-copying paddings), build the probe model (positive weights,
point-wise maps and norms as the identity, max pools spreading their gradient), choose
one output unit per probed layer, backpropagate from those units in batches, and judge
each measured extent against the analytic region.
"""

from __future__ import annotations

from fractions import Fraction
from math import prod
from typing import Any

import torch
from torch import nn

from ..analysis import Report
from ..graph import Graph
from ..results import MATCH, MISMATCH, CheckRow
from ..rf import RF
from ..rfperiod import end
from .build import NetcalcModule, _module_of, flatten_outputs


#: modules replaced by Identity while measuring receptive fields: point-wise maps whose
#: gradient can vanish (ReLU of a negative, saturated clamps) and norms whose statistics
#: mix positions (the analytic field ignores statistics, see netcalc.layers.norm);
#: softmaxes spread their gradient (a saturated one rounds it to 0, deep in Swin-T)
def _rf_surrogate(module: nn.Module) -> nn.Module | None:
    act = nn.modules.activation
    keep = (act.Softmax, act.Softmin, act.LogSoftmax, act.Softmax2d, act.MultiheadAttention)
    if isinstance(module, (act.Softmax, act.Softmin, act.LogSoftmax)):
        return _SpreadSoftmax(module)
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


class _SpreadSoftmax(nn.Module):
    """A softmax whose gradient reaches every element along its dim with weight 1:
    ``softmax(x).detach() + sum(x) - sum(x).detach()``, the same values. A softmax mixes
    the whole dim, but once its logits grow apart (positive weights, no norms: Swin-T's
    later stages) the gradient of all but the largest rounds to 0, even in float64."""

    def __init__(self, softmax: nn.Module):
        super().__init__()
        self.softmax = softmax

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.softmax.dim if self.softmax.dim is not None else -1
        total = x.sum(dim=dim, keepdim=True)
        return self.softmax(x).detach() + total - total.detach()


def _integral(rf) -> bool:
    return all(v.denominator == 1 for d in rf.dims if not d.whole
               for v in (d.size, d.stride, d.lo, d.hi, *(x for e in d.ends or () for x in e)))


def _exact_dims(values: list, rf) -> list:
    """The entries of ``values`` (one per dim) for the dims that are not global."""
    return [v for v, d in zip(values, rf.dims) if not d.whole]


def empirical_rf(graph: Graph, report: Report, *, seed: int = 0,
                 skipped: list[str] | None = None, layers: list[str] | None = None,
                 every_unit: bool = False) -> list[CheckRow]:
    """Measure the receptive field of every spatial layer by backpropagation.

    The model is built in float32 (a layer that disagrees is measured again in
    float64: an underflowing gradient can only shrink the extent) with every
    parameter a positive random value scaled by 1/fan-in, in eval mode, on a
    positive random input; activations, dropout and norms are replaced by the
    identity, max pools spread their gradient over the whole window and softmaxes over
    their whole dim (the field is geometry: those modules only decide whether a
    gradient vanishes, never where it can reach). For each layer whose
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

    A dim along which the analytic field is global (a Roll, a reduction or a Linear
    along it) is not compared; the other dims are. Spatial dims merged into one axis
    (a flattened map) are probed at the unit's indices in that axis: every index whose
    digit of each merged dim is the unit's, so channels merged in with them (a flatten of
    ``(C, H, W)``) are combined as on the unflattened map, whose field is their union.

    A windowed (uneven) field (:mod:`netcalc.rfperiod`: Swin's window attention) has
    units of different regions: its row probes, among the units of one period nearest
    the centre whose regions lie inside the input, the one of the largest extent (the
    size the field reports), and compares its region exactly; with ``every_unit`` every
    unit of the period is probed and compared (a backward pass each: what the tests
    do; verify keeps one per layer, as Swin-T has some 300 windowed rows).

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
    rows = _measure_rf(graph, report, probes, in_info, torch.float32, seed, skipped,
                       every_unit)
    again = {r.layer for r in rows if r.verdict == MISMATCH}
    if again:
        redo = {r.layer: r for r in _measure_rf(graph, report,
                                                 [p for p in probes if p.name in again],
                                                 in_info, torch.float64, seed, None,
                                                 every_unit)}
        rows = [redo.get(r.layer, r) for r in rows]
    return rows


def _measure_rf(graph: Graph, report: Report, probes: list, in_info, dtype: torch.dtype,
                seed: int, skipped: list[str] | None = None, every_unit: bool = False
                ) -> list[CheckRow]:
    """The probe at ``dtype``, phase by phase; one row per probed layer."""
    in_sizes = in_info.shape[2:]
    uneven = _stepping(graph, report)
    copied = _copied_borders(graph)
    gen = torch.Generator().manual_seed(seed)
    model = _probe_model(graph, dtype, gen)
    targets = _targets(graph, report, model, probes, in_sizes, every_unit)
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    extents = _extents(model, report, sorted(targets, key=lambda k: order[k[0]]), in_info,
                       dtype, gen)
    rows: list[CheckRow] = []
    border_skips = behind_skips = 0
    nodes = {n.name: n for n in graph.nodes}
    units: dict[str, list] = {}  # layer -> [(its unit's key, measured, (region, clipped))]
    layer_of = {}
    for key, measured in extents.items():
        for r, expect in targets[key]:
            units.setdefault(r.name, []).append((key, measured, expect))
            layer_of[r.name] = r
    for name, seen in units.items():
        r = layer_of[name]
        if copied[name]:  # a clipped unit reads copied or wrapped-around pixels
            seen = [u for u in seen if not u[2][1]]
        if not seen:
            border_skips += 1
        elif uneven[name] == "behind":
            behind_skips += 1
        elif all(d.ends is None for d in r.rf.dims):
            key, measured, (lo_hi, clipped) = seen[0]
            rows.append(_judge(r, nodes[name], key, measured, lo_hi, clipped,
                               uneven[name] == "own", dtype))
        else:
            rows.append(_judge_period(r, nodes[name], seen, dtype))
    rows.sort(key=lambda row: order[row.layer])
    if behind_skips and skipped is not None:
        skipped.append(f"rf: {behind_skips} layer(s) not measured: they follow a layer whose "
                       "units step unevenly over its input (transposed conv, resampling, "
                       "adaptive pool), so their units' regions differ and the analytic field "
                       "describes a typical one")
    if border_skips and skipped is not None:
        skipped.append(f"rf: {border_skips} layer(s) not measured: no unit lies inside the "
                       "input and a reflect/replicate/circular padding or a Roll copies or "
                       "wraps pixels at the border")
    return rows


def _stepping(graph: Graph, report: Report) -> dict[str, str]:
    """Per node: "own" when its units do not step evenly over its input, "behind" when
    it follows such a layer and changes the field, else "even"."""
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
                                         for d, e in zip(f.dims, g.dims)
                                         if not d.whole and not e.whole)
        # a point-wise layer keeps its source's status
        status = "own" if own else "even"
        for src in node.sources:
            st = uneven.get(src.node, "even")
            if st != "even":
                status = st if rf_of.get(src.node) == f else "behind"
        uneven[node.name] = status
    return uneven


def _copied_borders(graph: Graph) -> dict[str, bool]:
    """Per node: behind a padding that copies the input (reflect, replicate, circular)
    or a Roll (which wraps around)? At the border its units read real pixels where the
    analytic field sees padding, or the other edge of the map."""
    copied: dict[str, bool] = {}
    for node in graph.nodes:
        own = node.type.startswith(("Reflection", "Replication", "Circular", "Roll")) or \
            getattr(node.layer, "padding_mode", "zeros") not in ("zeros", None)
        copied[node.name] = own or any(copied.get(src.node, False) for src in node.sources)
    return copied


def _probe_model(graph: Graph, dtype: torch.dtype, gen: torch.Generator) -> NetcalcModule:
    """The model at ``dtype`` in eval mode, surrogates in place (:func:`_rf_surrogate`),
    every parameter a positive random value scaled by 1/fan-in."""
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
    return model


def _targets(graph: Graph, report: Report, model: NetcalcModule, probes: list,
             in_sizes, every_unit: bool = False) -> dict[tuple[str, tuple], list]:
    """(node measured, its unit at each spatial axis) -> [(layer, (expected region,
    clipped))]. A layer built as the identity here (activation, norm, dropout) outputs
    the very tensor of its source: the source is measured once for both."""
    root: dict[str, str] = {}
    out_shape = {r.name: r.shape for r in report.layers}
    for node in graph.nodes:
        src = node.sources[0].node if len(node.sources) == 1 else None
        if (src in out_shape and node.sources[0].out == 0
                and type(model.get_submodule(node.name)) is nn.Identity
                and out_shape[src] == out_shape[node.name]):
            root[node.name] = root.get(src, src)
    targets: dict[tuple[str, tuple], list] = {}
    for r in probes:
        places = r.rf.digits(r.shape)
        sizes = [1 if not dig else prod(n for _, _, n, _ in dig) for dig in places]
        if any(d.ends is not None for d in r.rf.dims):
            chosen = _choose_period(r.rf, sizes, in_sizes)
            if not every_unit:  # the unit of the largest extent, inside the input first
                chosen = [max(chosen, key=lambda u: (not u[1][1], sum(
                    g[1] - g[0] for g in u[1][0] if g is not None)))]
        else:
            chosen = [_choose_unit(r.rf, sizes, in_sizes)]
        for unit, expect in chosen:
            # per spatial axis (channel-last too), the indices holding the unit: along
            # an axis of merged dims, every index whose digit ``value // q % n`` of each
            # dim it holds is the unit's (a dim split into windows has one digit per
            # axis: the window, the offset in it) -- the digits of channels merged in
            # stay free, so the unit combines its channels as on an unmerged map (a
            # flattened (C, H, W) map holds the unit (h, w) at c*H*W + h*W + w for
            # every c)
            digits: dict[int, list] = {}
            for dig, j in zip(places, unit):
                for a, q, n, w in dig:
                    digits.setdefault(a, []).append((q, n, j // w % n))
            held = tuple((a, tuple(i for i in range(r.shape[a])
                                   if all(i // q % n == v for q, n, v in digits[a])))
                         for a in sorted(digits))
            targets.setdefault((root.get(r.name, r.name), held), []).append((r, expect))
    return targets


def _extents(model: NetcalcModule, report: Report, keys: list, in_info, dtype: torch.dtype,
             gen: torch.Generator) -> dict[tuple, list]:
    """Backpropagate from each key's unit, one per sample of a batch (eval mode keeps
    samples independent), in graph order: per key, the input extent [first, last] with
    a non-zero gradient along each spatial dim (None: none)."""
    in_sizes = in_info.shape[2:]
    per_sample = max(1, report.totals.activation_bytes // report.batch
                     * torch.finfo(dtype).bits // 32)
    chunk = max(1, min(64, (1 << 30) // per_sample))
    extents: dict[tuple, list] = {}
    for start in range(0, len(keys), chunk):
        group = keys[start:start + chunk]
        grad = _backprop(model, group, in_info, dtype, gen)
        for b, key in enumerate(group):
            g = grad[b].abs().sum(dim=0)  # over channels
            measured = []
            for d in range(len(in_sizes)):
                other = tuple(i for i in range(len(in_sizes)) if i != d)
                line = g.amax(dim=other) if other else g
                idx = torch.nonzero(line).flatten()
                measured.append([int(idx.min()), int(idx.max())] if len(idx) else None)
            extents[key] = measured
    return extents


def _backprop(model: NetcalcModule, group: list, in_info, dtype: torch.dtype,
              gen: torch.Generator) -> torch.Tensor:
    """The input gradient of a positive random combination of each unit's channels, one
    unit per sample; the forward stops after the deepest layer of the group."""
    x = (torch.rand((len(group), *in_info.shape[1:]), generator=gen, dtype=dtype)
         + 0.5).requires_grad_(True)
    captured: dict[str, torch.Tensor] = {}
    handles = []
    wanted = {name for name, _ in group}
    last = group[-1][0]
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
                mask = torch.ones(out.shape[1:], dtype=torch.bool, device=out.device)
                for a, held in unit:
                    along = torch.zeros(out.shape[a], dtype=torch.bool, device=out.device)
                    along[list(held)] = True
                    mask &= along.reshape([-1 if i == a else 1 for i in range(1, out.dim())])
                vec = out[b][mask]
                weights = torch.rand(vec.shape, generator=gen, dtype=vec.dtype) + 0.5
                seeds.append((vec * weights).sum())
            (grad,) = torch.autograd.grad(torch.stack(seeds).sum(), x)
    finally:
        for h in handles:
            h.remove()
    return grad


def _judge(r: Any, node: Any, key: tuple, measured: list, lo_hi: list, clipped: bool,
           uneven: bool, dtype: torch.dtype) -> CheckRow:
    """The row of one probed layer: its measured extent against the analytic region."""
    analytic = [None if v is None else list(v) for v in lo_hi]
    if any(v is None for v in _exact_dims(analytic, r.rf)):  # the unit sees padding only
        analytic = [None] * len(analytic)
    whole = [d.whole for d in r.rf.dims]
    analytic = ["global" if w else v for v, w in zip(analytic, whole)]
    exact_a, exact_m = _exact_dims(analytic, r.rf), _exact_dims(measured, r.rf)
    note = f"unit {[held[0] if len(held) == 1 else list(held) for _, held in key[1]]}" + \
        (", clipped to the input" if clipped else "")
    if dtype == torch.float64:
        note += ", float64"
    if key[0] != r.name:
        note += f", measured on {key[0]} (identity in between)"
    if any(whole):
        note += ", global dims not compared"
    if exact_a == exact_m:
        verdict = MATCH
    elif clipped and _within(exact_m, exact_a, empty_ok=True):
        # the region pokes out of the input: the unit reads only the real pixels of a
        # dilated or strided window, so holes may sit on the border
        verdict = MATCH
        note += " (measured inside the clipped region: holes of the window at the border)"
    elif uneven and all(m is None or m[1] - m[0] + 1 <= d.size
                        for m, d in zip(exact_m, _exact_dims(list(r.rf.dims), r.rf))):
        # uneven steps (transposed conv, resampling, adaptive pool): units differ by
        # phase and sit on a stepped grid; the size bounds each one
        verdict = MATCH
        note += (" (uneven steps: units differ by phase; measured extent within the "
                 "analytic size)")
    else:
        verdict = MISMATCH
    return CheckRow(r.name, node.type, "rf", analytic, measured, verdict, note, node.mark.line)


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
        if dim.whole:  # every position: not compared
            unit.append(0)
            regions.append([0, n_in - 1])
            continue
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


def _choose_period(rf, out_sizes, in_sizes) -> list:
    """Units covering one period of every uneven (windowed) dim: per such dim the P
    consecutive units nearest the centre whose regions all lie inside the input, unit k
    at phase k of each dim (the fields are separable: one backward pass measures every
    dim of a unit); an even dim keeps :func:`_choose_unit`'s unit. Where no period lies
    inside the input, the regions of the units that poke out are clipped to it (and
    are not judged behind a Roll or a copying padding). [(unit, (regions, clipped))]."""
    (base, _) = _choose_unit(rf, out_sizes, in_sizes)
    count = max(d.period for d in rf.dims if not d.whole)
    first = []
    for d, j, n_out, n_in in zip(rf.dims, base, out_sizes, in_sizes):
        if d.whole or d.ends is None:
            first.append(None)
            continue
        period = min(d.period, n_out)
        centre = (n_out - period) // 2
        inside = [s for s in range(n_out - period + 1)
                  if all(0 <= end(d, s + k)[0] and end(d, s + k)[1] <= n_in - 1
                         for k in range(period))]
        first.append(min(inside, key=lambda s: (abs(s - centre), s)) if inside else centre)
    out = []
    for k in range(count):
        unit, regions = [], []
        for d, j, s, n_out, n_in in zip(rf.dims, base, first, out_sizes, in_sizes):
            if d.whole:
                unit.append(0)
                regions.append([0, n_in - 1])
                continue
            u = j if s is None else s + k % min(d.period, n_out)
            lo, hi = end(d, u)
            lo, hi = max(lo, 0), min(hi, n_in - 1)
            unit.append(u)
            regions.append([int(lo), int(hi)] if lo <= hi else None)
        out.append((tuple(unit), (regions, any(
            not d.whole and (end(d, u)[0] < 0 or end(d, u)[1] > n_in - 1)
            for d, u, n_in in zip(rf.dims, unit, in_sizes)))))
    return out


def _judge_period(r: Any, node: Any, seen: list, dtype: torch.dtype) -> CheckRow:
    """The row of a layer with uneven (windowed) units: each unit probed is judged as
    one unit is (:func:`_judge`); the row shows the first mismatching unit, else the
    one of the largest analytic extent (the size the field reports), region against
    measured extent."""
    verdicts = [_judge(r, node, key, measured, lo_hi, clipped, False, dtype)
                for key, measured, (lo_hi, clipped) in seen]

    def extent(v: CheckRow) -> int:
        return sum(x[1] - x[0] + 1 for x in v.analytic if isinstance(x, list))
    bad = next((v for v in verdicts if v.verdict == MISMATCH), None)
    shown = bad or max(verdicts, key=extent)
    period = [None if d.whole else d.period for d in r.rf.dims]
    note = f"uneven units (period {period}): " + (
        f"{len(seen)} units of a period compared, each exactly; shown: {shown.rule}"
        if len(seen) > 1 else f"the one of the largest extent compared: {shown.rule}")
    return CheckRow(r.name, node.type, "rf", shown.analytic, shown.torch,
                    MISMATCH if bad else MATCH, note, node.mark.line)
