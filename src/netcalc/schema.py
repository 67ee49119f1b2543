"""The JSON Schema of the spec format and the layer reference, from the layer registry.

``netcalc schema`` prints :func:`spec_schema`; ``netcalc layers`` prints
:func:`layers_text`. Both are generated from :data:`netcalc.layers.REGISTRY` (each
layer's ``Arg`` declarations, ``PRIMARY``, formulas) and from the top-level keys of
:mod:`netcalc.spec` and :mod:`netcalc.check`, so they cannot drift from the code: a
test compares the committed ``netcalc.schema.json`` with the generated one.

Editors use the schema through a first-line comment in the spec::

    # yaml-language-server: $schema=../netcalc.schema.json

Layer entries inside ``blocks:`` may use block arguments, ``$name`` and
``${expression}``, anywhere a value goes: there every value also accepts such a
string (the block's arguments are checked when it is expanded).

Draft-07, because it is the draft editors (yaml-language-server, VS Code) support
best.
"""

from __future__ import annotations

import inspect

import json
from typing import Any

from .args import REQUIRED, schema_for
from .check import BUDGET_KEYS, DTYPES, EXPECT_KEYS, KEY_DOCS, SETTINGS
from .spec import DTYPES as INPUT_DTYPES
from .spec import MAX_REPEAT, RESERVED, TOP_KEYS

SCHEMA_ID = "https://github.com/netcalc/netcalc/netcalc.schema.json"
IDENT = "^[A-Za-z_][A-Za-z0-9_]*$"
#: a block-argument substitution: "$planes", "${planes * 4}", "conv${i}"
TEMPLATE_DEF = {"type": "string", "pattern": r"\$(?:[A-Za-z_]|\{)",
                "description": "block argument: $name or ${expression}"}
TEMPLATE = {"$ref": "#/definitions/template"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/definitions/{name}"}


def _templated(schema: Any, wrap: bool = True) -> Any:
    """The same schema, also accepting ``$arg``/``${expr}`` strings at every value.

    ``wrap`` adds the template alternative at this level; branches of an
    anyOf/oneOf get it once, at the level of the anyOf/oneOf, so that a template
    string never matches two branches of a oneOf.
    """
    if not isinstance(schema, dict) or "$ref" in schema:
        return schema
    out = dict(schema)
    for key in ("anyOf", "oneOf"):
        if key in out:
            out[key] = [_templated(s, wrap=False) for s in out[key]]
            if wrap:
                out[key].append(TEMPLATE)
            return out
    kind = out.get("type")
    if kind == "object":
        if "properties" in out:
            out["properties"] = {k: _templated(v) for k, v in out["properties"].items()}
        if isinstance(out.get("additionalProperties"), dict):
            out["additionalProperties"] = _templated(out["additionalProperties"])
        return out
    if kind == "array" and "items" in out:
        out["items"] = _templated(out["items"])
    if wrap and (kind is not None or "enum" in out or "const" in out):
        return {"anyOf": [out, TEMPLATE]}
    return out


def _layer_value(cls: type) -> dict:
    """What may follow ``Conv2d:`` in an entry: the argument mapping, the primary
    argument alone, or nothing (every argument defaulted)."""
    args = list(cls.args.values())
    mapping = schema_for(args)
    summary = cls.summary()
    options: list[dict] = [mapping]
    if cls.PRIMARY is not None:
        primary = next(a for a in args if a.name == cls.PRIMARY)
        options.append(dict(primary.type.schema()))
    if not any(a.required for a in args):
        options.append({"type": "null"})
    schema: dict = {"anyOf": options} if len(options) > 1 else mapping
    if summary:
        schema = {"description": summary, **schema}
    return schema


def _reserved(templated: bool) -> dict:
    """The keys an entry may carry besides its one type key."""
    props = {
        "name": {"type": "string", "pattern": IDENT,
                 "description": "layer name (default: <type>_<index>)"},
        "from": {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0},
                           {"type": "array", "items": {"anyOf": [{"type": "string"},
                                                                 {"type": "integer", "minimum": 0}]},
                            "minItems": 1}],
                 "description": "earlier layer(s) or input(s) this layer takes; "
                                "'layer:h_n' or 'layer:1' picks an output"},
        "repeat": {"type": "integer", "minimum": 0, "maximum": MAX_REPEAT,
                   "description": "stack this entry N times (instances name.0, name.1, ...); "
                                  "0 removes it (its first input passes through)"},
        "tie": {"type": "string", "description": "share the weight of this earlier layer"},
        "trainable": {"type": "boolean", "description": "false freezes the layer's params"},
        "sparsity": {"type": "number", "minimum": 0, "exclusiveMaximum": 1,
                     "description": "fraction of the weight pruned to zero; reports "
                                    "nonzero_params and nonzero_macs"},
    }
    assert set(props) == set(RESERVED), "schema.py: reserved entry keys changed in spec.py"
    if templated:
        props = {k: _templated(v) for k, v in props.items()}
        props["name"] = {"type": "string", "description": props["name"]["anyOf"][0]["description"]}
    return props


def _entry(registry: dict[str, type], templated: bool) -> dict:
    """A ``layers:`` item: a bare type name, or a mapping with one type key."""
    layer = "templatedLayer" if templated else "layer"
    props = _reserved(templated)
    for name in registry:
        props[name] = _ref(f"{layer}.{name}")
    one_type = [
        {"if": {"required": [name]},
         "then": {"propertyNames": {"enum": [name, *RESERVED]}}}
        for name in registry
    ]
    mapping = {
        "type": "object",
        "minProperties": 1,
        "properties": props,
        # a user block's name is a key too; its arguments are checked on expansion
        "additionalProperties": True,
        "allOf": one_type,
    }
    # inside a block, a type may be a block argument: `- $act` or `- {$act: ~}`
    type_name = r"^\$?[A-Za-z_][A-Za-z0-9_]*$" if templated else IDENT
    mapping["propertyNames"] = {"pattern": type_name}
    return {
        "anyOf": [
            {"type": "string", "pattern": type_name,
             "description": "a layer type (or block) with every argument defaulted"},
            mapping,
        ],
    }


def _shape() -> dict:
    return {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1}


def _input() -> dict:
    return {
        "anyOf": [
            _shape(),
            {"type": "object", "properties": {"shape": _shape(),
                                              "dtype": {"enum": list(INPUT_DTYPES)}},
             "required": ["shape"], "additionalProperties": False},
        ],
        "description": "per-sample shape (the batch is added as dim 0)",
    }


def _quantity(tolerance: bool) -> dict:
    text = r"^\s*[0-9][0-9_,]*(\.[0-9]+)?([eE][+-]?[0-9]+)?\s*(Ki|Mi|Gi|Ti|[kKMGTP])?\s*(B|bytes?)?\s*"
    if tolerance:
        text += r"((±|\+/-|\+-)\s*[0-9][0-9_,]*(\.[0-9]+)?([eE][+-]?[0-9]+)?\s*(%|(Ki|Mi|Gi|Ti|[kKMGTP])?\s*(B|bytes?)?)\s*)?"
    return {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": text + "$"}]}


def _settings() -> dict:
    from .conventions import NAMES
    from .training import DEVICES, OPTIMIZERS, PRECISIONS

    settings = {
        "batch": {"type": "integer", "minimum": 1, "description": KEY_DOCS["batch"]},
        "dtype": {"enum": list(DTYPES), "description": KEY_DOCS["dtype"]},
        **{k: {"enum": list(DTYPES), "description": KEY_DOCS[k]}
           for k in ("weight_dtype", "activation_dtype", "kv_dtype")},
        "quant_group_size": {"type": "integer", "minimum": 1,
                             "description": KEY_DOCS["quant_group_size"]},
        "convention": {"enum": list(NAMES), "description": KEY_DOCS["convention"]},
        "device": {"enum": list(DEVICES), "description": KEY_DOCS["device"]},
        "optimizer": {"enum": list(OPTIMIZERS), "description": KEY_DOCS["optimizer"]},
        "precision": {"enum": list(PRECISIONS), "description": KEY_DOCS["precision"]},
        "checkpoint": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                       "description": KEY_DOCS["checkpoint"]},
    }
    assert set(settings) == set(SETTINGS), "schema.py: settings changed in check.py"
    return settings


def _expect() -> dict:
    shape = {"anyOf": [{"type": "integer", "minimum": 1}, _shape()]}
    outputs = {"anyOf": [shape, {"type": "object", "additionalProperties": shape}]}
    rf_size = {"anyOf": [_ref("tolerantQuantity"), {"type": "array", "items": _ref("tolerantQuantity")},
                         {"const": "global"}]}
    props: dict[str, Any] = {}
    for key in EXPECT_KEYS:
        if key in ("output", "outputs"):
            props[key] = {**outputs, "description": KEY_DOCS[key]}
        elif key == "receptive_field":
            props[key] = {"anyOf": [rf_size, {"type": "object", "additionalProperties": rf_size}],
                          "description": KEY_DOCS[key]}
        elif key in SETTINGS:
            props[key] = _settings()[key]
        else:
            props[key] = {"allOf": [_ref("tolerantQuantity")], "description": KEY_DOCS[key]}
    return {"type": "object", "properties": props, "additionalProperties": False,
            "description": "values the spec must produce: exact, or within a tolerance "
                           "such as '4.09G ±1%'"}


def _budget() -> dict:
    props = {key: (_settings()[key] if key in SETTINGS
                   else {"allOf": [_ref("quantity")], "description": KEY_DOCS[key]})
             for key in BUDGET_KEYS}
    return {"type": "object", "properties": props, "additionalProperties": False,
            "description": "ceilings the spec must stay within, e.g. params: 5M"}


def spec_schema() -> dict:
    """The JSON Schema (draft-07) of a spec file."""
    from .layers import REGISTRY
    from . import __version__

    registry = dict(sorted(REGISTRY.items()))
    definitions: dict[str, Any] = {
        "template": TEMPLATE_DEF,
        "quantity": _quantity(False),
        "tolerantQuantity": _quantity(True),
    }
    for name, cls in registry.items():
        value = _layer_value(cls)
        definitions[f"layer.{name}"] = value
        definitions[f"templatedLayer.{name}"] = _templated(value)
    definitions["entry"] = _entry(registry, templated=False)
    definitions["templatedEntry"] = _entry(registry, templated=True)
    block = {
        "type": "object",
        "properties": {
            "args": {"type": "object", "propertyNames": {"pattern": IDENT},
                     "description": "block arguments and their defaults (~ = required); "
                                    "used as $name or ${expression} in the layers"},
            "inputs": {"anyOf": [{"type": "string", "pattern": IDENT},
                                 {"type": "array", "items": {"type": "string", "pattern": IDENT},
                                  "minItems": 1}],
                       "description": "names of the block's inputs (default: [input])"},
            "layers": {"type": "array", "items": _ref("templatedEntry"), "minItems": 1},
            "numbered": {"type": "boolean",
                         "description": "name the layers by position (0, 1, ...; repeats "
                                        "continue the count), as nn.Sequential does"},
        },
        "required": ["layers"],
        "additionalProperties": False,
    }
    props: dict[str, Any] = {
        "name": {"type": "string", "description": "model name (default: the file name)"},
        "description": {"type": "string"},
        "input": _input(),
        "inputs": {"type": "object", "propertyNames": {"pattern": IDENT},
                   "additionalProperties": _input(), "minProperties": 1,
                   "description": "several named inputs"},
        "tokens": {"type": "string", "pattern": IDENT,
                   "description": "the int64 input holding the token ids of a sequence model "
                                  "(default: the only int64 input, or the first of several)"},
        "blocks": {"type": "object", "propertyNames": {"pattern": IDENT},
                   "additionalProperties": {"anyOf": [
                       block, {"type": "array", "items": _ref("templatedEntry"), "minItems": 1}]},
                   "description": "reusable blocks: name -> {args, inputs, layers, numbered}"},
        "layers": {"type": "array", "items": _ref("entry"), "minItems": 1},
        "outputs": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"},
                                                   "minItems": 1}],
                    "description": "the model's outputs (default: the last layer)"},
        "expect": _expect(),
        "budget": _budget(),
    }
    assert set(props) == set(TOP_KEYS), "schema.py: top-level keys changed in spec.py"
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "netcalc spec",
        "description": f"A netcalc {__version__} model spec (generated by `netcalc schema` "
                       "from the layer registry; do not edit).",
        "type": "object",
        "properties": props,
        "required": ["layers"],
        "oneOf": [{"required": ["input"]}, {"required": ["inputs"]}],
        "additionalProperties": False,
        "definitions": definitions,
    }


def schema_json() -> str:
    """The schema as committed in netcalc.schema.json."""
    return json.dumps(spec_schema(), indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- layers
def _default_text(arg: Any) -> str:
    return arg.describe_default()


def layers_text(name: str | None = None) -> str:
    """``netcalc layers``: every layer with its summary, or one layer in full."""
    from .layers import REGISTRY, Layer

    if name is None:
        width = max(len(n) for n in REGISTRY)
        lines = [f"{n:<{width}}  {REGISTRY[n].summary()}" for n in sorted(REGISTRY)]
        lines.append("")
        lines.append(f"{len(REGISTRY)} layer types; `netcalc layers NAME` shows one "
                     "with its arguments and formulas.")
        return "\n".join(lines) + "\n"
    cls = REGISTRY[name]
    lines = [f"{name}: {cls.summary()}", ""]
    args = list(cls.args.values())
    if args:
        rows = [(a.name + (" (primary)" if a.name == cls.PRIMARY else ""), a.type.name,
                 _default_text(a), a.doc) for a in args]
        w = [max(len(r[i]) for r in rows + [("argument", "type", "default", "")])
             for i in range(3)]
        lines.append(f"  {'argument':<{w[0]}}  {'type':<{w[1]}}  {'default':<{w[2]}}  meaning")
        for r in rows:
            lines.append(f"  {r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}".rstrip())
    else:
        lines.append("  no arguments")
    lines.append("")
    lo, hi = cls.ARITY
    arity = str(lo) if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
    lines.append(f"  inputs:  {arity}")
    if len(cls.OUTPUTS) > 1:
        lines.append(f"  outputs: {', '.join(cls.OUTPUTS)} (pick one with `from: layer:name`)")
    lines.append(f"  params:  {cls.PARAMS_FORMULA}")
    lines.append(f"  MACs:    {cls.MACS_FORMULA}")
    per_element = getattr(cls, "FLOPS", None)
    if getattr(cls, "FLOPS_FORMULA", None):
        lines.append(f"  FLOPs:   {cls.FLOPS_FORMULA}")
    elif isinstance(per_element, int):
        lines.append(f"  FLOPs:   2*MACs + numel(input) * {per_element} element-wise")
    for label, method in (("backward", cls.backward_macs), ("saved", cls.saved)):
        doc = inspect.cleandoc(method.__doc__ or "")  # the type's own rule, not the contract
        if doc and method not in (Layer.backward_macs, Layer.saved):
            lines.append(f"  {label + ':':<8} " + " ".join(doc.split("\n\n")[0].split()))
    if cls.PRIMARY is not None:
        lines.append(f"  short form: `- {name}: <{cls.PRIMARY}>`")
    return "\n".join(lines) + "\n"


def layers_dict() -> dict[str, Any]:
    """The layer reference as data (``netcalc layers --format json``)."""
    from .layers import REGISTRY

    out = {}
    for name in sorted(REGISTRY):
        cls = REGISTRY[name]
        out[name] = {
            "summary": cls.summary(),
            "primary": cls.PRIMARY,
            "inputs": list(cls.ARITY),
            "outputs": list(cls.OUTPUTS),
            "params": cls.PARAMS_FORMULA,
            "macs": cls.MACS_FORMULA,
            "args": {a.name: {"type": a.type.name,
                              "default": None if a.default is REQUIRED else
                              (list(a.default) if isinstance(a.default, tuple) else a.default),
                              "required": a.required, "inferred": a.inferred, "doc": a.doc}
                     for a in cls.args.values()},
        }
    return out
