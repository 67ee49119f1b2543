"""The table for people, like torchinfo's summary but from a spec.

Drawn here rather than with rich's Table: rich measures every cell's markup and
wraps, which took ~15 s for 10,000 rows; this is one format call per row, so the
table costs about what the JSON costs. Cells are plain text (never markup).
"""

from __future__ import annotations

from ..analysis import Report
from ..textsafe import text
from ..units import human, human_bytes
from .view import collapse, columns, metric_text, shape_text


def _line(left: str, fill: str, mid: str, right: str, widths: list[int]) -> str:
    return left + mid.join(fill * (w + 2) for w in widths) + right


def _row(cells: list[str], widths: list[int], right: list[bool], bar: str) -> str:
    parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
    return bar + " " + f" {bar} ".join(parts) + " " + bar


def render_table(report: Report, depth: int | None) -> str:
    cols = columns(report)
    rows = [[c.human(r) for c in cols] for r in collapse(report, depth)]
    footer = ["Total"] + [metric_text(c.metric, getattr(report.totals, c.metric.key))
                          if c.metric else "" for c in cols[1:]]
    titles = [c.title for c in cols]
    widths = [max(len(t), len(f)) for t, f in zip(titles, footer)]
    for cells in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, cells)]
    right = [c.numeric for c in cols]
    inputs = ", ".join(shape_text(v) if k == "input" else f"{k} {shape_text(v)}"
                       for k, v in report.inputs.items())
    out = [f"{text(report.name)}  ·  input {inputs}  ·  {report.dtypes.label()}",
           _line("┏", "━", "┳", "┓", widths),
           _row(titles, widths, [c.numeric for c in cols], "┃"),
           _line("┡", "━", "╇", "┩", widths)]
    out += [_row(cells, widths, right, "│") for cells in rows]
    out += [_line("├", "─", "┼", "┤", widths), _row(footer, widths, right, "│"),
            _line("└", "─", "┴", "┘", widths)]
    return "\n".join(out) + "\n" + "\n".join(summary_lines(report)) + "\n"


def summary_lines(report: Report) -> list[str]:
    t = report.totals
    outputs = ", ".join(f"{k} {shape_text(v)}" for k, v in report.outputs.items())
    lines = [
        f"Outputs: {outputs}",
        f"Params: {t.params:,} ({human(t.params)}); "
        + (f"active per token {t.active_params:,} ({human(t.active_params)}); "
           if t.active_params != t.params else "")
        + f"trainable {t.trainable_params:,}; buffers {t.buffers:,}",
        _macs_line(report),
        f"Memory at {report.dtypes.label()}: weights {human_bytes(t.weight_bytes)}, activations "
        f"{human_bytes(t.activation_bytes)} (all layer outputs), inference peak "
        f"{human_bytes(t.peak_activation_bytes)}, input {human_bytes(t.input_bytes)}",
    ]
    if t.nonzero_params != t.params:
        lines.append(f"After pruning: {t.nonzero_params:,} non-zero params, "
                     f"{t.nonzero_macs:,} MACs")
    lines += _expert_lines(report)
    training = report.sections.get("training")
    if training:
        lines += training_lines(report, training)
    seq = report.sections.get("sequence")
    if seq:
        lines += _sequence_lines(seq, report.batch)
    conv = report.sections.get("convention")
    if conv:  # netcalc.conventions.apply: MACs and FLOPs follow another tool's rules
        reported = "unknown" if conv["total"] is None else f"{conv['total']:,}"
        lines.append(f"Convention {conv['name']}: MACs and FLOPs as {conv['rule']}; the tool "
                     f"reports {reported} {conv['unit']} in total")
    return lines


def _expert_lines(report: Report) -> list[str]:
    """One line per kind of MixtureOfExperts layer: its router and experts' parameters."""
    kinds: dict[tuple, int] = {}
    for r in report.layers:
        if "params_per_expert" in r.extra:
            e = r.extra
            key = (e["router_params"], e["num_experts"], e["params_per_expert"], e["top_k"])
            kinds[key] = kinds.get(key, 0) + 1
    return [f"Mixture of experts: {n} layer{'s' * (n != 1)} × (router {router:,} + {experts} "
            f"experts × {each:,} params), {k} expert{'s' * (k != 1)} per token"
            for (router, experts, each, k), n in kinds.items()]


def _macs_line(report: Report) -> str:
    t = report.totals
    if t.macs is None or t.flops is None:  # an Opaque layer (netcalc.layers.opaque)
        unknown = [r.name for r in report.layers if r.macs is None or r.flops is None]
        return (f"MACs: unknown, FLOPs: unknown: they include {len(unknown)} layer(s) netcalc "
                f"cannot count ({text(', '.join(unknown[:3]))}"
                f"{', ...' if len(unknown) > 3 else ''})")
    return f"MACs: {t.macs:,} ({human(t.macs, 'MAC')}); FLOPs: {t.flops:,} ({human(t.flops, 'FLOP')})"


def training_lines(report: Report, tr: dict) -> list[str]:
    """The training-memory breakdown under the table."""
    t = report.totals
    lines = [
        f"Training ({tr['optimizer']}, {tr['precision']}, {tr['device']} kernels, batch "
        f"{report.batch}): backward {t.backward_macs:,} MACs ({human(t.backward_macs, 'MAC')})"
        + (f", recomputation {tr['recompute_macs']:,} MACs" if tr["recompute_macs"] else ""),
        f"  weights {human_bytes(tr['param_bytes'])} + buffers {human_bytes(tr['buffer_bytes'])}"
        f" + gradients {human_bytes(tr['gradient_bytes'])} + optimizer state "
        f"{human_bytes(tr['optimizer_bytes'])}"
        + (f" + autocast weight copies {human_bytes(tr['cast_cache_bytes'])}"
           if tr["cast_cache_bytes"] else ""),
        f"  saved activations {human_bytes(t.saved_activation_bytes)}, output gradients "
        f"{human_bytes(tr['output_gradient_bytes'])}, loss {human_bytes(tr['loss_bytes'])}",
        f"  peak {human_bytes(tr['peak_bytes'])} ({tr['peak_phase']})",
    ]
    return lines


def _sequence_lines(seq: dict, batch: int) -> list[str]:
    """The sequence-model summary: per-token cost beside Kaplan et al.'s rule of thumb."""
    lines = [
        f"Sequence: {seq['tokens']:,} token{'s' * (seq['tokens'] != 1)} "
        f"({batch} × {seq['n_ctx']:,}"
        + (f" of {text(seq['tokens_input'])}, the first int64 input: name another with "
           "`tokens:`" if seq.get("tokens_chosen_by") == "first" else "")
        + f"); non-embedding params {seq['non_embedding_params']:,}"
        + (f", active per token {seq['active_non_embedding_params']:,}"
           if seq["active_non_embedding_params"] != seq["non_embedding_params"] else ""),
        f"Per token: {human(seq['macs_per_token'], 'MAC')}, {human(seq['flops_per_token'], 'FLOP')} "
        f"exact; Kaplan et al. (2020) 2N + 2·n_layer·n_ctx·d_model = "
        f"{human(seq['kaplan_flops_per_token'], 'FLOP')}"
        + (f" ({seq['kaplan_ratio']:.2f}× of 2·MACs)" if seq["kaplan_ratio"] is not None else ""),
    ]
    if "causal_macs" in seq:
        lines.append(f"Causal attention: {seq['causal_macs']:,} MACs counting only the causal "
                     f"half of each L×L product (MACs above count the full L×L, as torch's counters do)")
    if "window_macs" in seq:
        lines.append(f"Sliding-window attention: {seq['window_macs']:,} MACs counting only the "
                     "products each window keeps")
    if "kv_cache_bytes_per_token" in seq:
        window = " (a sliding window caches only its last tokens)" if "window_macs" in seq else ""
        if "cross_attention_cache_bytes" in seq:
            length = seq.get("cross_attention_length")
            over = f"{length:,} encoder positions" if length else "the encoder's outputs"
            lines.append(
                f"KV cache: {human_bytes(seq['kv_cache_bytes_per_token'])} per token "
                f"(decoder self-attention), {human_bytes(seq['self_attention_cache_bytes'])} "
                f"for {seq['tokens']:,} tokens{window} + cross-attention "
                f"{human_bytes(seq['cross_attention_cache_bytes'])} over {over} "
                f"(computed once) = {human_bytes(seq['kv_cache_bytes'])}")
        else:
            lines.append(f"KV cache: {human_bytes(seq['kv_cache_bytes_per_token'])} per token; "
                         f"{human_bytes(seq['kv_cache_bytes'])} for {seq['tokens']:,} tokens"
                         + window)
    return lines
