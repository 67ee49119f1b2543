"""Spec format v1: the validated top level of a YAML spec.

The format (documented in README.md, "Spec format")::

    name: ResNet-18
    input: [3, 224, 224]                 # per-sample shape, batch added as dim 0
    inputs: {tokens: {shape: [128], dtype: int64}}   # or several named inputs
    blocks: {Name: {args: {...}, inputs: [input], layers: [...]}}
    layers: [...]                        # entries, see parse_entry
    outputs: [layer, ...]                # default: the last layer
    tokens: decoder_input_ids            # the token-id input of a sequence model
    expect: {...}                        # checked by `netcalc check`
    budget: {...}

Layer entries are parsed lazily by the graph builder (after block arguments are
substituted) with :func:`parse_entry`.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import yamlsafe
from .errors import Mark, SpecError, did_you_mean
from .layers.base import FLOAT, INT
from .torch_names import BLOCK_RESERVED
from .torch_names import RESERVED as TORCH_RESERVED
from .yamlsafe import LList, LMap

TOP_KEYS = ("name", "description", "input", "inputs", "tokens", "blocks", "layers", "outputs",
            "expect", "budget")
RESERVED = ("name", "from", "repeat", "tie", "trainable", "sparsity")
BLOCK_KEYS = ("args", "inputs", "layers", "numbered")
DTYPES = {"float": FLOAT, "float32": FLOAT, "float16": FLOAT, "bfloat16": FLOAT,
          "float64": FLOAT, "int64": INT, "long": INT, "int32": INT, "int": INT}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # fullmatch: "$" would accept "fc\n"
MAX_REPEAT = 20_000  # = graph.MAX_NODES: see README, "Limits"
MAX_FILE_BYTES = 4_000_000  # the default of --max-file-size
MAX_NAME = 64  # characters: every layer's path repeats the names above it


@dataclass(frozen=True)
class InputSpec:
    """One input of the spec: per-sample shape and dtype, where it is declared."""

    name: str
    shape: tuple[int, ...]  # per sample, without the batch
    dtype: str
    mark: Mark


@dataclass
class BlockDef:
    """A block of ``blocks:``: its arguments with their defaults, inputs and layers."""

    name: str
    args: dict[str, Any]  # default, or None when required (~)
    inputs: list[str]
    layers: LList
    mark: Mark
    arg_marks: dict[str, Mark] = field(default_factory=dict)
    #: children named by position (0, 1, ...; repeats continue the count), as in
    #: nn.Sequential, so that report paths are torch's module paths (layer1.0.conv1)
    numbered: bool = False


@dataclass
class Spec:
    """A parsed spec: inputs, blocks, the layer list (located YAML), outputs, expect, budget."""

    file: str
    name: str
    inputs: dict[str, InputSpec]
    blocks: dict[str, BlockDef]
    layers: LList
    outputs: list[tuple[str, Mark]] | None
    expect: LMap | None
    budget: LMap | None
    raw: LMap
    #: the input named by ``tokens:`` (an integer input), or None when not given
    tokens: str | None = None


@dataclass
class Entry:
    """One item of a ``layers:`` list, after block-argument substitution."""

    type: str
    args: Any  # LMap of arguments, a scalar for the primary argument, or None
    mark: Mark
    type_mark: Mark
    name: str | None = None
    sources: list[tuple[str, Mark]] | None = None
    repeat: int | None = None
    tie: tuple[str, Mark] | None = None
    trainable: bool = True
    sparsity: float | None = None


def check_name(name: Any, mark: Mark, what: str = "name") -> str:
    if isinstance(name, str) and len(name) > MAX_NAME:
        raise SpecError(f"{what} of {len(name):,} characters (at most {MAX_NAME})", mark)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise SpecError(f"{what} {name!r} must be an identifier (letters, digits, _)", mark)
    return name


def check_module_name(name: Any, mark: Mark, what: str = "name", in_block: bool = False) -> str:
    """An identifier that torch can use as a submodule or input name (``in_block``: of a
    block's container, which lacks the root module's own attributes)."""
    check_name(name, mark, what)
    if name in (BLOCK_RESERVED if in_block else TORCH_RESERVED):
        raise SpecError(f"{what} {name!r} is an attribute of torch.nn.Module: torch cannot "
                        "build a module with this name", mark)
    return name


def parse_entry(raw: Any, mark: Mark, known_types: set[str], in_block: bool = False) -> Entry:
    """Parse a bare type name or a mapping with one type key plus reserved keys
    (``in_block``: an entry of a block's body)."""
    if isinstance(raw, str):
        _check_type(raw, mark, known_types)
        return Entry(raw, None, mark, mark)
    if not isinstance(raw, LMap):
        raise SpecError(f"a layer entry is a type name or a mapping, got {raw!r}", mark)
    types = [k for k in raw if k not in RESERVED]
    _check_misspelt_reserved(raw, types, known_types)
    if not types:
        raise SpecError("layer entry has no layer type (keys: "
                        f"{', '.join(map(str, raw)) or 'none'})", raw.mark)
    if len(types) > 1:
        raise SpecError(f"layer entry has several types {types}: one type key plus "
                        f"{', '.join(RESERVED)} only", raw.key_mark(types[1]))
    type_name = types[0]
    _check_type(type_name, raw.key_mark(type_name), known_types)
    entry = Entry(type_name, raw[type_name], raw.mark, raw.key_mark(type_name))
    if "name" in raw:
        entry.name = check_module_name(raw["name"], raw.value_mark("name"), in_block=in_block)
    if "from" in raw:
        entry.sources = _refs(raw["from"], raw.value_mark("from"))
    if "repeat" in raw:
        n = raw["repeat"]
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise SpecError(f"repeat must be an int >= 0, got {n!r}", raw.value_mark("repeat"))
        if n > MAX_REPEAT:
            raise SpecError(f"repeat {n:,} exceeds the limit of {MAX_REPEAT:,}",
                            raw.value_mark("repeat"))
        entry.repeat = n
    if "tie" in raw:
        if not isinstance(raw["tie"], str):
            raise SpecError("tie names another layer", raw.value_mark("tie"))
        entry.tie = (raw["tie"], raw.value_mark("tie"))
    if "trainable" in raw:
        if not isinstance(raw["trainable"], bool):
            raise SpecError("trainable must be true or false", raw.value_mark("trainable"))
        entry.trainable = raw["trainable"]
    if "sparsity" in raw:
        s = raw["sparsity"]
        if not isinstance(s, (int, float)) or isinstance(s, bool) or not 0 <= s < 1:
            raise SpecError(f"sparsity must be a fraction in [0, 1), got {s!r}",
                            raw.value_mark("sparsity"))
        entry.sparsity = float(s)
    return entry


def _check_misspelt_reserved(raw: LMap, types: list[Any], known: set[str]) -> None:
    """``reapeat: 2`` beside a type would read as a second type: name the reserved key."""
    for key in types:
        if isinstance(key, str) and key not in known:
            hint = did_you_mean(key, RESERVED)
            if hint:
                raise SpecError(f"unknown key {key!r} in a layer entry{hint}", raw.key_mark(key))


def _check_type(name: Any, mark: Mark, known: set[str]) -> None:
    if not isinstance(name, str) or name not in known:
        raise SpecError(f"unknown layer type {name!r}{did_you_mean(str(name), known)}", mark)


def _refs(value: Any, mark: Mark) -> list[tuple[str, Mark]]:
    items = value if isinstance(value, LList) else [value]
    marks = value.marks if isinstance(value, LList) else [mark]
    out = []
    for item, m in zip(items, marks):
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            item = str(item)  # a child of a numbered block
        if not isinstance(item, str) or not item:
            raise SpecError(f"`from` names layers, got {item!r}", m)
        out.append((item, m))
    if not out:
        raise SpecError("`from` is empty", mark)
    return out


def _shape(value: Any, mark: Mark, what: str) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise SpecError(f"{what} must be a list of positive ints, got {value!r}", mark)
    return tuple(value)


def _parse_inputs(raw: LMap) -> dict[str, InputSpec]:
    if "input" in raw and "inputs" in raw:
        raise SpecError("give either `input` or `inputs`, not both", raw.key_mark("inputs"))
    if "input" in raw:
        m = raw.value_mark("input")
        value = raw["input"]
        if isinstance(value, LMap):
            return {"input": _one_input("input", value, m)}
        return {"input": InputSpec("input", _shape(value, m, "input"), FLOAT, m)}
    if "inputs" in raw:
        items = raw["inputs"]
        if not isinstance(items, LMap) or not items:
            raise SpecError("inputs must map names to shapes", raw.value_mark("inputs"))
        return {check_module_name(k, items.key_mark(k), "input name"):
                _one_input(k, v, items.value_mark(k)) for k, v in items.items()}
    raise SpecError("the spec needs `input: [C, H, W]` (per-sample shape) or `inputs:`",
                    raw.mark)


def _one_input(name: str, value: Any, mark: Mark) -> InputSpec:
    if not isinstance(value, LMap):
        return InputSpec(name, _shape(value, mark, f"input {name!r}"), FLOAT, mark)
    for k in value:
        if k not in ("shape", "dtype"):
            raise SpecError(f"input {name!r}: unknown key {k!r} (shape, dtype)", value.key_mark(k))
    if "shape" not in value:
        raise SpecError(f"input {name!r} needs a shape", mark)
    dtype = value.get("dtype", "float32")
    if dtype not in DTYPES:
        raise SpecError(f"input {name!r}: unknown dtype {dtype!r} "
                        f"({', '.join(DTYPES)})", value.value_mark("dtype"))
    return InputSpec(name, _shape(value["shape"], value.value_mark("shape"), f"input {name!r}"),
                     DTYPES[dtype], mark)


def _parse_blocks(raw: Any, mark: Mark, layer_types: set[str]) -> dict[str, BlockDef]:
    if raw is None:
        return {}
    if not isinstance(raw, LMap):
        raise SpecError("blocks must map block names to definitions", mark)
    blocks = {}
    for name, body in raw.items():
        bmark = raw.key_mark(name)
        check_name(name, bmark, "block name")
        if name in layer_types:
            raise SpecError(f"block {name!r} has the name of a built-in layer", bmark)
        if isinstance(body, LList):  # shorthand: a block is just its layers
            body_map = LMap({"layers": body})
            body_map.mark, body_map.key_marks, body_map.value_marks = bmark, {}, {"layers": body.mark}
            body = body_map
        if not isinstance(body, LMap):
            raise SpecError(f"block {name!r} needs `layers:`", raw.value_mark(name))
        for k in body:
            if k not in BLOCK_KEYS:
                raise SpecError(f"block {name!r}: unknown key {k!r} ({', '.join(BLOCK_KEYS)})"
                                f"{did_you_mean(str(k), BLOCK_KEYS)}", body.key_mark(k))
        numbered = body.get("numbered", False)
        if not isinstance(numbered, bool):
            raise SpecError(f"block {name!r}: numbered must be true or false",
                            body.value_mark("numbered"))
        args = body.get("args") or LMap()
        if not isinstance(args, LMap):
            raise SpecError(f"block {name!r}: args must be a mapping", body.value_mark("args"))
        for a in args:
            check_name(a, args.key_mark(a), "block argument")
        inputs = body.get("inputs", ["input"])
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            raise SpecError(f"block {name!r}: inputs must be a list of names",
                            body.value_mark("inputs"))
        for i in inputs:
            check_module_name(i, body.value_mark("inputs"), "block input")
        layers = body.get("layers")
        if not isinstance(layers, LList) or not layers:
            raise SpecError(f"block {name!r} needs a non-empty `layers:` list", body.mark)
        blocks[name] = BlockDef(name, dict(args), list(inputs), layers, bmark,
                                {a: args.value_mark(a) for a in args}, numbered)
    return blocks


def parse(text: str, file: str = "<spec>") -> Spec:
    """Parse and validate the top level of a spec."""
    from .layers import REGISTRY

    raw = yamlsafe.load(text, file)
    try:
        if not isinstance(raw, LMap):
            raise SpecError("a spec is a mapping with `input` and `layers`", getattr(raw, "mark", Mark(1, 1)))
        for key in raw:
            if key not in TOP_KEYS:
                raise SpecError(f"unknown top-level key {key!r}{did_you_mean(str(key), TOP_KEYS)}",
                                raw.key_mark(key))
        name = raw.get("name") or Path(file).stem
        inputs = _parse_inputs(raw)
        blocks = _parse_blocks(raw.get("blocks"), raw.value_mark("blocks"), set(REGISTRY))
        layers = raw.get("layers")
        if not isinstance(layers, LList) or not layers:
            raise SpecError("the spec needs a non-empty `layers:` list", raw.value_mark("layers"))
        outputs = None
        if "outputs" in raw:
            outputs = _refs(raw["outputs"], raw.value_mark("outputs"))
            named = set()
            for ref, m in outputs:
                if ref in named:  # a model returns each output once
                    raise SpecError(f"output {ref!r} is listed twice", m)
                named.add(ref)
        for key in ("expect", "budget"):
            if key in raw and not isinstance(raw[key], LMap):
                raise SpecError(f"{key} must be a mapping", raw.value_mark(key))
        return Spec(file, str(name), inputs, blocks, layers, outputs,
                    raw.get("expect"), raw.get("budget"), raw, _tokens(raw, inputs))
    except SpecError as err:
        raise err.located(file) from None


def _tokens(raw: LMap, inputs: dict[str, InputSpec]) -> str | None:
    """``tokens: NAME``: the input holding the token ids (an int64 input)."""
    if "tokens" not in raw:
        return None
    name, mark = raw["tokens"], raw.value_mark("tokens")
    if not isinstance(name, str) or name not in inputs:
        raise SpecError(f"tokens: {name!r} is not an input (inputs: {', '.join(inputs)})"
                        f"{did_you_mean(str(name), inputs)}", mark)
    if inputs[name].dtype != INT:
        raise SpecError(f"tokens: input {name!r} is float, not int64: token ids are an "
                        "integer input (dtype: int64)", mark)
    return name


_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
          (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def read_text(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """The text of a regular file of at most ``max_bytes`` bytes, or a SpecError.

    Devices and FIFOs are refused before they are opened; the file is then opened
    without blocking (a FIFO swapped in would wait for a writer) and checked again on
    the open descriptor, so what is read is what was checked. The read stops at the
    limit plus one byte, since files such as /proc's report a size of 0.
    """
    file = str(path)
    try:
        _check_regular(os.stat(path).st_mode, file)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise SpecError("no such file", None, file) from None
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", None, file) from None
    with open(fd, "rb") as f:
        st = os.fstat(fd)
        _check_regular(st.st_mode, file)
        if st.st_size > max_bytes:
            raise SpecError(f"{st.st_size:,} bytes, more than the limit of {max_bytes:,} "
                            "(--max-file-size)", None, file)
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise SpecError(f"cannot read: {exc.strerror}", None, file) from None
    if len(data) > max_bytes:
        raise SpecError(f"more than the limit of {max_bytes:,} bytes (--max-file-size)",
                        None, file)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start:,})",
                        None, file) from None


def _check_regular(mode: int, file: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((what for test, what in _KINDS if test(mode)), "not a file")
        raise SpecError(f"not a regular file ({kind})", None, file)


def load(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> Spec:
    """Read and parse a spec file (a regular file of at most ``max_bytes`` bytes)."""
    return parse(read_text(path, max_bytes), str(path))
