"""`netcalc schema`: generated from the layer registry, committed, and it accepts the
spec library and rejects what the loader rejects.

The schema is validated here with a small draft-07 validator covering the keywords
netcalc's schema uses (so the test needs no extra package); when the ``jsonschema``
package is installed the same specs are checked with it too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from netcalc.cli import app
from netcalc.layers import REGISTRY
from netcalc.schema import layers_dict, layers_text, schema_json, spec_schema

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_FILE = ROOT / "netcalc.schema.json"
SPECS = sorted((ROOT / "specs").glob("*.yaml"))


# --------------------------------------------------------------------------- a small validator
def _type_ok(value, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return {
        "string": lambda v: isinstance(v, str),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }[kind](value)


def errors(schema, value, root, path="$"):
    """Draft-07 errors of ``value`` (a list of 'path: problem'), for the keywords we use."""
    if schema is True or schema == {}:
        return []
    if schema is False:
        return [f"{path}: not allowed"]
    if "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/definitions/"), ref
        return errors(root["definitions"][ref[len("#/definitions/"):]], value, root, path)
    out: list[str] = []
    known = {"$schema", "$id", "title", "description", "default", "type", "enum", "const",
             "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
             "minItems", "minProperties", "properties", "additionalProperties", "required",
             "propertyNames", "items", "anyOf", "oneOf", "allOf", "if", "then", "else", "not",
             "definitions"}
    unknown = set(schema) - known
    assert not unknown, f"validator does not know {unknown}"
    if "type" in schema and not _type_ok(value, schema["type"]):
        return [f"{path}: expected {schema['type']}, got {value!r}"]
    if "enum" in schema and value not in schema["enum"]:
        out.append(f"{path}: {value!r} not in {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        out.append(f"{path}: {value!r} != {schema['const']!r}")
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        out.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if _type_ok(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            out.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            out.append(f"{path}: {value} > {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            out.append(f"{path}: {value} <= {schema['exclusiveMinimum']}")
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            out.append(f"{path}: {value} >= {schema['exclusiveMaximum']}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            out.append(f"{path}: fewer than {schema['minItems']} items")
        if "items" in schema:
            for i, item in enumerate(value):
                out += errors(schema["items"], item, root, f"{path}[{i}]")
    if isinstance(value, dict):
        if len(value) < schema.get("minProperties", 0):
            out.append(f"{path}: fewer than {schema['minProperties']} keys")
        for key in schema.get("required", []):
            if key not in value:
                out.append(f"{path}: missing {key!r}")
        props = schema.get("properties", {})
        for key, item in value.items():
            if "propertyNames" in schema:
                out += errors(schema["propertyNames"], key, root, f"{path} key {key!r}")
            if key in props:
                out += errors(props[key], item, root, f"{path}.{key}")
            elif "additionalProperties" in schema:
                out += errors(schema["additionalProperties"], item, root, f"{path}.{key}")
    if "allOf" in schema:
        for s in schema["allOf"]:
            out += errors(s, value, root, path)
    if "anyOf" in schema:
        results = [errors(s, value, root, path) for s in schema["anyOf"]]
        if all(results):
            out.append(f"{path}: no anyOf branch matches: {min(results, key=len)}")
    if "oneOf" in schema:
        results = [errors(s, value, root, path) for s in schema["oneOf"]]
        matches = sum(not r for r in results)
        if matches != 1:
            out.append(f"{path}: {matches} oneOf branches match")
    if "if" in schema:
        branch = "then" if not errors(schema["if"], value, root, path) else "else"
        if branch in schema:
            out += errors(schema[branch], value, root, path)
    if "not" in schema and not errors(schema["not"], value, root, path):
        out.append(f"{path}: matches a 'not' schema")
    return out


@pytest.fixture(scope="module")
def schema():
    return spec_schema()


def validate(schema, text: str) -> list[str]:
    return errors(schema, yaml.safe_load(text), schema)


# --------------------------------------------------------------------------- committed file
def test_committed_schema_is_the_generated_one():
    assert SCHEMA_FILE.exists(), "run: netcalc schema > netcalc.schema.json"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_json(), (
        "netcalc.schema.json is stale: run `netcalc schema > netcalc.schema.json`")


def test_schema_command_prints_it(runner):
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == spec_schema()


def test_every_layer_type_is_in_the_schema(schema):
    entry = schema["definitions"]["entry"]["anyOf"][1]
    for name, cls in REGISTRY.items():
        assert f"layer.{name}" in schema["definitions"]
        assert f"templatedLayer.{name}" in schema["definitions"]
        assert name in entry["properties"]
        for arg in cls.args:
            text = json.dumps(schema["definitions"][f"layer.{name}"])
            assert f'"{arg}"' in text, (name, arg)


def test_schema_is_valid_draft7(schema):
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft7Validator.check_schema(schema)


# --------------------------------------------------------------------------- the library
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_library_spec_validates(schema, path: Path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=../netcalc.schema.json\n"), (
        f"{path.name}: first line must point editors at the schema")
    assert validate(schema, text) == []
    try:
        import jsonschema
    except ImportError:
        return
    jsonschema.validate(yaml.safe_load(text), schema)


def test_library_is_there():
    names = {p.stem for p in SPECS}
    for mine in ("yolov3_tiny", "ssd300", "dcgan_generator", "dcgan_discriminator",
                 "conv_autoencoder", "multitask_resnet18", "lenet5_pruned"):
        assert mine in names


# --------------------------------------------------------------------------- accepts / rejects
GOOD = """
input: [3, 32, 32]
blocks:
  Block:
    args: {planes: ~, stride: 1}
    layers:
      - {Conv2d: {out_channels: $planes, kernel_size: [3, "${stride + 2}"], stride: $stride, padding: 1}}
      - {name: "conv${stride}", BatchNorm2d: ~}
      - ReLU
  Short:
    - {Linear: "${4 * 2}"}
layers:
  - {name: c, Conv2d: 16}
  - {name: b, Block: {planes: 32, stride: 2}, repeat: 2}
  - {MaxPool2d: {kernel_size: 2, ceil_mode: true}}
  - {Conv2d: {out_channels: 8, kernel_size: 3, padding: same}, sparsity: 0.5, trainable: false}
  - {Add: ~, from: [conv2d_3, conv2d_3]}
  - Flatten
  - {Linear: 10, name: fc}
outputs: fc
expect:
  output: [10]
  params: 25_557_032
  macs: 4.09G ±1%
  weight_bytes: 20MB +- 1MB
  receptive_field: {b: [5, 5]}
budget:
  dtype: int8
  batch: 4
  convention: fvcore
  params: 5M
  activation_bytes: 1.5 GiB
"""


def test_schema_accepts_a_rich_spec(schema):
    assert validate(schema, GOOD) == []


@pytest.mark.parametrize("bad, why", [
    ("input: [3]\nlayers: [{Conv2d: {out_channels: 8, kernel: 3}}]\n", "unknown argument"),
    ("input: [3]\nlayers: [{Conv2d: {out_channels: 8}}]\n", "missing argument"),
    ("input: [3]\nlayers: [{Conv2d: {out_channels: 8, kernel_size: 3}, ReLU: ~}]\n", "two types"),
    ("input: [3]\nlayers: [{Conv2d: {out_channels: $c, kernel_size: 3}}]\n", "$arg outside a block"),
    ("input: [3]\nlayers: [{Linear: -1}]\n", "negative size"),
    ("input: [3]\nlayers: [ReLU]\nbogus: 1\n", "unknown top-level key"),
    ("layers: [ReLU]\n", "no input"),
    ("input: [3]\nlayers: []\n", "empty layers"),
    ("input: [3]\nlayers: [ReLU]\nexpect: {parms: 10}\n", "unknown expect key"),
    ("input: [3]\nlayers: [ReLU]\nexpect: {params: lots}\n", "not a quantity"),
    ("input: [3]\nlayers: [ReLU]\nbudget: {params: 5M ±1%}\n", "tolerance in a budget"),
    ("input: [3]\nlayers: [{ReLU: ~, sparsity: 1.5}]\n", "sparsity out of range"),
    ("input: [3]\nlayers: [{ReLU: ~, repeat: -1}]\n", "repeat -1"),
    ("input: [3]\nlayers: [{MaxPool2d: {kernel_size: 2, ceil_mode: yes please}}]\n", "bad bool"),
    ("input: [3]\nlayers: [ReLU]\nbudget: {dtype: int3}\n", "unknown dtype"),
    ("input: [3]\nlayers: [ReLU]\nexpect: {convention: thop}\n", "unknown convention"),
])
def test_schema_rejects(schema, bad: str, why: str):
    assert validate(schema, bad), why


# --------------------------------------------------------------------------- netcalc layers
def test_layers_lists_every_type(runner):
    result = runner.invoke(app, ["layers"])
    assert result.exit_code == 0
    for name in REGISTRY:
        assert re.search(rf"^{name}\s", result.stdout, re.M), name


def test_layers_shows_one_with_arguments_and_formulas(runner):
    result = runner.invoke(app, ["layers", "Conv2d"])
    assert result.exit_code == 0
    out = result.stdout
    cls = REGISTRY["Conv2d"]
    assert cls.PARAMS_FORMULA in out and cls.MACS_FORMULA in out
    for arg in cls.args.values():
        line = re.search(rf"^\s+{arg.name}\b.*$", out, re.M)
        assert line and arg.describe_default() in line[0], arg.name
    assert layers_text("Conv2d") == out


def test_layers_json(runner):
    result = runner.invoke(app, ["layers", "--format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data == json.loads(json.dumps(layers_dict()))
    assert data["Conv2d"]["args"]["kernel_size"]["required"] is True
    assert data["Conv2d"]["args"]["stride"]["default"] == 1


def test_layers_unknown_name_exits_2(runner):
    result = runner.invoke(app, ["layers", "Conv2D"])
    assert result.exit_code == 2
    assert "did you mean Conv2d?" in result.stderr
