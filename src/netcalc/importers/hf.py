"""``netcalc import --hf-config``: a local Hugging Face ``config.json`` as a readable spec.

:func:`spec_text` maps the config by its ``model_type`` to a spec written as the
transformers model of the task is built (module names are transformers' attribute
names, so the built model's state_dict keys are the transformers model's; repeated
decoder layers are one block definition used with ``repeat:``). It imports neither
torch nor transformers, reads the file as JSON data only, never downloads anything and
never runs code from the config (there is no ``trust_remote_code``).

:func:`verify` (torch and transformers, imported when called) builds the transformers
model from the same config on the meta device (no weights allocated) and the spec's
module on the meta device, and compares their parameter counts and state_dict keys and
shapes.

Tasks and the class each writes (``--task``; the first is the family's default):

=========  ================================================  ==========================
task       families                                          transformers class
=========  ================================================  ==========================
causal-lm  gpt2, llama, mistral, mixtral, qwen2, gemma,      ``GPT2LMHeadModel``,
           phi, opt                                          ``*ForCausalLM``
encoder    bert                                              ``BertModel`` (with pooler)
seq2seq    t5, whisper                                       ``*ForConditionalGeneration``
=========  ================================================  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import Mark, SpecError
from ..textsafe import printable
from .hf_decoders import SeqTooLong, gpt2, llama_like, opt, phi
from .hf_encoders import bert, t5, whisper
from .hfconfig import HFConfig
from .hfmapped import Mapped
from .yamltext import comment, value

TASKS = ("causal-lm", "seq2seq", "encoder")
#: --seq-len when none is given: the model's context length, at most this
DEFAULT_SEQ_LEN = 4096


@dataclass(frozen=True)
class Family:
    task: str  # the one task the family maps (its default)
    #: (config, model_type, seq_len) -> Mapped; seq2seq: (..., seq_len, decoder_seq_len),
    #: both as given (None: the mapping's default)
    mapper: Callable[..., Mapped]
    context_key: str | None  # the config key holding the context length
    context_default: int


FAMILIES: dict[str, Family] = {
    "gpt2": Family("causal-lm", gpt2, "n_positions", 1024),
    "llama": Family("causal-lm", llama_like, "max_position_embeddings", 2048),
    "mistral": Family("causal-lm", llama_like, "max_position_embeddings", 131072),
    "mixtral": Family("causal-lm", llama_like, "max_position_embeddings", 131072),
    "qwen2": Family("causal-lm", llama_like, "max_position_embeddings", 32768),
    "gemma": Family("causal-lm", llama_like, "max_position_embeddings", 8192),
    "phi": Family("causal-lm", phi, "max_position_embeddings", 2048),
    "opt": Family("causal-lm", opt, "max_position_embeddings", 2048),
    "bert": Family("encoder", bert, "max_position_embeddings", 512),
    "t5": Family("seq2seq", t5, None, 0),
    "whisper": Family("seq2seq", whisper, None, 0),
}


def _family(cfg: HFConfig, task: str | None) -> tuple[str, Family, str]:
    model_type = cfg.data.get("model_type")
    if model_type is None:
        raise SpecError("not a Hugging Face config: it has no \"model_type\"", Mark(1, 1),
                        cfg.path)
    if not isinstance(model_type, str) or model_type not in FAMILIES:
        shown = value(model_type) if isinstance(model_type, str) else repr(model_type)
        raise cfg.fail("model_type", f"unknown model type {shown[:60]} (the importer maps "
                                     f"{', '.join(sorted(FAMILIES))})")
    family = FAMILIES[model_type]
    if task is not None and task not in TASKS:
        raise SpecError(f"{printable(task)[:60]!r} is not a task ({' | '.join(TASKS)})",
                        file="--task")
    if task is not None and task != family.task:
        raise SpecError(f"a {model_type} config maps to the {family.task} task only "
                        f"(got {task})", file="--task")
    return model_type, family, family.task


def spec_text(path: str, *, task: str | None = None, seq_len: int | None = None,
              decoder_seq_len: int | None = None) -> str:
    """The complete YAML text of the spec for the config at ``path`` (see the module
    docstring). Raises SpecError, located in the file, for anything it cannot map."""
    import netcalc

    cfg = HFConfig.read(path)
    model_type, family, task = _family(cfg, task)
    if decoder_seq_len is not None and task != "seq2seq":
        raise SpecError(f"only for seq2seq models (this is {task})", file="--decoder-seq-len")
    for option, n in (("--seq-len", seq_len), ("--decoder-seq-len", decoder_seq_len)):
        if n is not None and not 1 <= n <= 1 << 24:
            raise SpecError(f"{n} is out of range (1..{1 << 24:,})", file=option)
    try:
        if task == "seq2seq":  # the mapping knows its lengths' defaults and limits
            mapped = family.mapper(cfg, model_type, seq_len, decoder_seq_len)
        else:
            context = (cfg.int(family.context_key, family.context_default)
                       if family.context_key else family.context_default)
            length = seq_len if seq_len is not None else min(context, DEFAULT_SEQ_LEN)
            mapped = family.mapper(cfg, model_type, length)
            mapped.lengths = f"--seq-len {length}" + (
                f" (by default the context length, at most {DEFAULT_SEQ_LEN})"
                if seq_len is None else "")
    except SeqTooLong as exc:
        raise SpecError(f"{seq_len if exc.option == '--seq-len' else decoder_seq_len} tokens, "
                        f"more than the model's {exc.limit:,} learned positions",
                        file=exc.option) from None
    body = _body(mapped, model_type)
    try:
        report = netcalc.analyze(netcalc.parse(body, cfg.path))
    except SpecError as err:  # the config passed every check above but netcalc refuses it
        raise SpecError(f"the imported spec is refused: {err.message}", None, cfg.path) from None
    header = _header(cfg, model_type, task, mapped)
    return header + body + _expect(report)


def _header(cfg: HFConfig, model_type: str, task: str, mapped: Mapped) -> str:
    import textwrap

    import netcalc

    lines = ["# yaml-language-server: $schema=../netcalc.schema.json",
             f"# Imported by netcalc {netcalc.__version__} from a Hugging Face config "
             "(netcalc import --hf-config):",
             comment(f"  {cfg.path}"),
             f"#   model_type {model_type}, task {task}: transformers' {mapped.head}",
             f"#   {mapped.lengths}",
             "#   Module names are transformers', so are the state_dict keys: --verify builds",
             "#   the transformers model on the meta device and compares params, keys, shapes."]
    for note in mapped.notes:
        lines += [comment(f"  {line}") for line in textwrap.wrap(note, 86)]
    return "\n".join(lines) + "\n"


def _body(mapped: Mapped, model_type: str) -> str:
    lines = [f"name: {value(mapped.head)}", "inputs:"]
    lines += [f"  {name}: {{shape: {value(shape)}, dtype: {dtype}}}" if dtype != "float32"
              else f"  {name}: {value(shape)}" for name, (shape, dtype) in mapped.inputs.items()]
    if mapped.tokens:
        lines.append(f"tokens: {mapped.tokens}")
    lines.append("blocks:")
    lines += mapped.blocks
    lines.append("layers:")
    lines += [f"  - {line}" for line in mapped.layers]
    if mapped.outputs:
        lines.append(f"outputs: {value(mapped.outputs)}")
    return "\n".join(lines) + "\n"


def _expect(report: Any) -> str:
    outputs = report.outputs
    if len(outputs) == 1:
        [shape] = outputs.values()
        output = f"  output: {value(list(shape[1:]))}"
    else:
        output = "  output: {" + ", ".join(f"{n}: {value(list(s[1:]))}"
                                          for n, s in outputs.items()) + "}"
    totals = report.totals
    active = (f"  active_params: {totals.active_params}\n"
              if totals.active_params != totals.params else "")
    return ("expect:                         # measured by netcalc at import\n"
            f"{output}\n  params: {totals.params}\n{active}  macs: {totals.macs}\n")


# ---------------------------------------------------------------------------- verify
def verify(path: str, spec_text: str, *, task: str | None = None) -> Any:
    """Build the transformers model of the config and the spec's module, both on the meta
    device, and compare params, state_dict keys and state_dict shapes. Returns a
    :class:`netcalc.torch.crosscheck.CrossCheckResult` (``.ok``, ``.message``)."""
    from .hfverify import compare

    cfg = HFConfig.read(path)
    model_type, family, task = _family(cfg, task)
    return compare(cfg, model_type, task, spec_text)
