"""Proof of an imported Hugging Face spec: the transformers model against the spec's module.

Both are built on the meta device (shapes only, no weights allocated, nothing
downloaded): the transformers model with ``AutoModel*.from_config`` of the config
read as data (``trust_remote_code`` is never set), the spec with
:func:`netcalc.torch.build.build_module`. Compared: the parameter count (tied weights
once, as ``parameters()`` counts them), the state_dict key sets and the shape of every
key. Transformers' ``Conv1D`` (GPT-2) stores its weight as (in, out) where a Linear
stores (out, in): such a pair is reported as the ``hf.conv1d`` convention, not a
mismatch; Mixtral's per-expert checkpoint names are compared as transformers loads them
(:func:`as_loaded`); a key transformers registers as one more name of a tied tensor the
spec already holds (T5's ``shared.weight``) is the ``hf.alias`` convention. Buffers are
not compared: transformers holds one rotary ``inv_freq`` per
model, a spec one per ``RotaryEmbedding`` layer (neither is in the state_dict).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

from ..errors import SpecError
from .hfconfig import HFConfig

#: task -> the transformers auto class whose from_config builds the task's model
AUTO = {"causal-lm": "AutoModelForCausalLM", "encoder": "AutoModel",
        "seq2seq": "AutoModelForSeq2SeqLM"}
SPEECH = {"whisper"}  # seq2seq models built by AutoModelForSpeechSeq2Seq
MAX_ROWS = 20  # key rows listed; the totals count them all
ALIAS_RULE = ("hf.alias: another name of a tied tensor the spec holds under one of its "
              "other names")
CONV1D_RULE = "hf.conv1d: transformers' Conv1D stores the weight (in, out), a Linear (out, in)"


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers warns about token ids outside small vocabularies: not ours to print."""
    from transformers.utils import logging

    before = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(before)


def transformers_model(cfg: HFConfig, model_type: str, task: str) -> Any:
    """The transformers model of ``task`` built from the config on the meta device."""
    import torch
    import transformers

    data = {k: v for k, v in cfg.data.items() if k not in ("model_type", "auto_map")}
    auto = "AutoModelForSpeechSeq2Seq" if model_type in SPEECH else AUTO[task]
    with _quiet_transformers():
        try:
            config = transformers.AutoConfig.for_model(model_type, **data)
            with torch.device("meta"):
                return getattr(transformers, auto).from_config(config)
        except Exception as exc:  # transformers refuses the config: say so in one line
            from ..torch.guard import one_line

            raise SpecError(f"transformers cannot build it: {one_line(exc)}", None,
                            cfg.path) from None


def as_loaded(ours: dict[str, tuple[int, ...]],
              theirs: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The spec's state_dict keys as transformers loads a checkpoint holding them.

    Mixtral's spec keeps the checkpoint's names (``block_sparse_moe.experts.N.w1``);
    transformers 5 renames ``block_sparse_moe`` to ``mlp`` and stacks the experts into
    ``experts.gate_up_proj`` (E, 2*ffn, d: w1 then w3) and ``experts.down_proj`` (E, d,
    ffn) (``transformers.conversion_mapping``, "mixtral"). Older transformers keep the
    checkpoint's names: then nothing is converted."""
    if any(".block_sparse_moe." in k for k in theirs) or \
            not any(".block_sparse_moe." in k for k in ours):
        return ours
    converted: dict[str, tuple[int, ...]] = {}
    stacked: dict[str, dict[int, list[tuple[int, ...]]]] = {}
    for key, shape in ours.items():
        key = key.replace(".block_sparse_moe.", ".mlp.")
        m = re.fullmatch(r"(.*\.experts)\.(\d+)\.(w[123])\.weight", key)
        if m is None:
            converted[key] = shape
            continue
        target = f"{m[1]}.down_proj" if m[3] == "w2" else f"{m[1]}.gate_up_proj"
        stacked.setdefault(target, {}).setdefault(int(m[2]), []).append(shape)
    for target, experts in stacked.items():
        first = experts[min(experts)]
        converted[target] = (len(experts), sum(s[0] for s in first), first[0][1])
    return converted


def compare(cfg: HFConfig, model_type: str, task: str, spec_text: str) -> Any:
    import netcalc
    from ..torch.build import build_module
    from ..torch.crosscheck import CONVENTION, MATCH, MISMATCH, CheckRow, CrossCheckResult

    theirs = transformers_model(cfg, model_type, task)
    spec = netcalc.parse(spec_text, cfg.path)
    ours = build_module(spec, device="meta")
    rows: list[CheckRow] = []
    t_state = theirs.state_dict(keep_vars=True)
    t_sd = {k: tuple(v.shape) for k, v in t_state.items()}
    a_sd = as_loaded({k: tuple(v.shape) for k, v in ours.state_dict().items()}, t_sd)
    # transformers' aliases of one tied tensor (T5's shared.weight): equal when the spec
    # holds the tensor under another of its names
    owners: dict[int, list[str]] = {}
    for k, v in t_state.items():
        owners.setdefault(id(v), []).append(k)
    aliases = {k for k in t_sd.keys() - a_sd.keys()
               if any(other in a_sd for other in owners[id(t_state[k])])}
    for key in sorted(aliases):
        rows.append(CheckRow(key, "", "state_dict key", False, True, CONVENTION, ALIAS_RULE))
    t_sd = {k: v for k, v in t_sd.items() if k not in aliases}
    conv1d = {f"{n}.weight" for n, m in theirs.named_modules() if type(m).__name__ == "Conv1D"}
    for key in sorted(a_sd.keys() ^ t_sd.keys()):
        rows.append(CheckRow(key, "", "state_dict key", key in a_sd, key in t_sd, MISMATCH))
    shape_rows = []
    for key in sorted(a_sd.keys() & t_sd.keys()):
        a, t = a_sd[key], t_sd[key]
        if a == t:
            continue
        if key in conv1d and a == t[::-1]:
            shape_rows.append(CheckRow(key, "Conv1D", "shape", list(a), list(t), CONVENTION,
                                       CONV1D_RULE))
        else:
            shape_rows.append(CheckRow(key, "", "shape", list(a), list(t), MISMATCH))
    rows += shape_rows
    count = (lambda m: sum(p.numel() for p in m.parameters()))
    a_params, t_params = count(ours), count(theirs)
    keys_ok = a_sd.keys() == t_sd.keys()
    shapes_bad = sum(r.verdict == MISMATCH for r in shape_rows)
    totals = [CheckRow("TOTAL", "", "params", a_params, t_params,
                       MATCH if a_params == t_params else MISMATCH),
              CheckRow("TOTAL", "", "state_dict keys", len(a_sd), len(t_sd),
                       MATCH if keys_ok else MISMATCH),
              CheckRow("TOTAL", "", "state_dict shapes differing", shapes_bad, 0,
                       MATCH if not shapes_bad else MISMATCH)]
    import torch
    import transformers

    return CrossCheckResult(
        name=f"{spec.name} against transformers' {type(theirs).__name__}: params, "
             f"{len(a_sd)} state_dict keys and shapes", file=cfg.path,
        batch=1, device="meta", convention="netcalc",
        rows=rows[:MAX_ROWS],
        totals=totals,
        skipped=["buffers: transformers holds one rotary inv_freq per model, a spec one per "
                 "RotaryEmbedding layer (neither in the state_dict)"],
        versions={"torch": torch.__version__, "transformers": transformers.__version__})
