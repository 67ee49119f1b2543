"""`netcalc import`'s options: inputs, kwargs, the -o rules, one line and exit 2 on bad input."""

from __future__ import annotations

import pytest

from netcalc.cli import app
from netcalc.cli_convert import parse_import_inputs
from netcalc.errors import SpecError


def test_input_option_forms():
    assert parse_import_inputs(["3x224x224"]) == [("", (3, 224, 224), "float32")]
    assert parse_import_inputs(["ids=128:int64", "mask=128"]) == [
        ("ids", (128,), "int64"), ("mask", (128,), "float32")]


@pytest.mark.parametrize("values, message", [
    (["3x0"], "expected sizes"), (["ids=8:int8"], "unknown dtype 'int8'"),
    (["3x32x32", "ids=8"], "name each one"), (["a=3", "a=4"], "given twice"),
    (["1a=3"], "identifier"),
])
def test_bad_inputs(values, message):
    with pytest.raises(SpecError, match=message):
        parse_import_inputs(values)


@pytest.mark.parametrize("args, message", [
    ([], "give one of TARGET"),
    (["a:b", "--hf-config", "c.json"], "give one of TARGET"),
    (["a:b", "--kwargs", "{"], "--kwargs: not JSON"),
    (["a:b", "--kwargs", "[1]"], "expected a JSON object"),
    (["a:b", "--task", "encoder"], "are for --hf-config"),
    (["--hf-config", "c.json", "--input", "3x4"], "are for TARGET"),
])
def test_bad_options_one_line_exit_2(runner, args, message):
    result = runner.invoke(app, ["import", *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
