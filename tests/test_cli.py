"""`netcalc shapes` through typer's CliRunner: every format, the JSON contract, options
and exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

import netcalc
from netcalc.cli import app
from netcalc.render import FORMATS

SPEC = """\
name: Tiny
input: [3, 32, 32]
blocks:
  Unit:
    args: {c: ~}
    layers:
      - {name: conv, Conv2d: {out_channels: $c, kernel_size: 3, padding: 1}}
      - ReLU
layers:
  - {name: stem, Conv2d: {out_channels: 8, kernel_size: 3, stride: 2, padding: 1}}
  - {name: units, Unit: {c: 8}, repeat: 2}
  - {name: pool, AdaptiveAvgPool2d: 1}
  - Flatten
  - {name: fc, Linear: 10}
"""
# stem: 8 * 16*16 outputs * 3*3*3; units: 2 * 8*16*16 * 8*3*3; fc: 8*10
MACS = 8 * 16 * 16 * 27 + 2 * 8 * 16 * 16 * 8 * 9 + 8 * 10
PARAMS = (8 * 27 + 8) + 2 * (8 * 8 * 9 + 8) + (8 * 10 + 10)


@pytest.fixture
def spec_file(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(SPEC)
    return p


def test_every_format_renders_the_same_totals(spec_file, runner):
    for fmt in FORMATS:
        result = runner.invoke(app, ["shapes", str(spec_file), "--format", fmt])
        assert result.exit_code == 0, (fmt, result.output)
        out = result.stdout
        if fmt == "json":
            data = json.loads(out)
            assert data["totals"]["macs"] == MACS and data["totals"]["params"] == PARAMS
        elif fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(out)))
            assert rows[-1]["Layer"] == "TOTAL" and int(rows[-1]["MACs"]) == MACS
            assert sum(int(r["Params"]) for r in rows[:-1]) == PARAMS
        elif fmt == "markdown":
            assert f"| macs | {MACS} |" in out and "| units.0.conv | Conv2d |" in out
        else:  # table: human units
            assert "Total" in out and f"{PARAMS:,}" in out and "units.1.conv" in out


def test_json_contract(spec_file, runner):
    data = json.loads(runner.invoke(app, ["shapes", str(spec_file), "-f", "json", "-b", "4"]).stdout)
    assert {"name", "batch", "inputs", "layers", "outputs", "totals"} <= set(data)
    assert data["name"] == "Tiny" and data["batch"] == 4
    assert data["inputs"] == {"input": [4, 3, 32, 32]}
    assert data["outputs"] == {"fc": [4, 10]}
    layer = data["layers"][0]
    assert {"name", "type", "from", "shape", "params", "macs", "flops", "receptive_field",
            "activation_bytes"} <= set(layer)
    assert layer["receptive_field"] == {"size": [3, 3], "stride": [2, 2], "start": [0, 0],
                                        "global": False, "aligned": True}
    assert data["layers"][-1]["receptive_field"]["global"] is True
    assert {"params", "trainable_params", "buffers", "macs", "flops", "weight_bytes",
            "activation_bytes"} <= set(data["totals"])
    assert data["totals"]["macs"] == 4 * MACS


@pytest.mark.parametrize("depth", [None, 1])
def test_json_is_the_report_dict_exactly(depth):
    # the JSON renderer assembles the document line by line: it must parse back to the
    # same data, escapes included
    from netcalc.render import render
    from netcalc.render.view import report_dict

    report = netcalc.analyze(netcalc.parse(
        'name: "Ünïcode ✓ \\"q\\" \\\\"\ninput: [3, 8, 8]\nblocks:\n  B: [ReLU]\n'
        "layers:\n  - {name: b, B: ~, repeat: 2}\n  - Flatten\n", "u.yaml"))
    text = render(report, "json", depth)
    assert text.isascii() and json.loads(text) == report_dict(report, depth)


def test_depth_collapses_blocks(spec_file, runner):
    data = json.loads(runner.invoke(app, ["shapes", str(spec_file), "-f", "json", "--depth", "1"]).stdout)
    assert [l["name"] for l in data["layers"]] == ["stem", "units", "pool", "flatten_3", "fc"]
    assert data["layers"][1]["type"] == "Unit×2"
    assert sum(l["macs"] for l in data["layers"]) == MACS


def test_input_override(spec_file, runner):
    data = json.loads(runner.invoke(app, ["shapes", str(spec_file), "-f", "json", "--input", "3x64x64"]).stdout)
    assert data["layers"][0]["shape"] == [1, 8, 32, 32]
    assert data["outputs"] == {"fc": [1, 10]}


@pytest.mark.parametrize("args, message", [
    (["--input", "3xAx4"], "--input: --input '3xAx4': expected sizes like 3x224x224"),
    (["--input", "image=3x8x8"], "the spec has no input 'image'"),
    (["--format", "yaml"], "--format: unknown format 'yaml'"),
    (["--dtype", "float8"], "unknown dtype 'float8'"),
    (["--input", "3x32"], "Conv2d needs a 4-d input"),
])
def test_bad_options_exit_2_with_one_line(spec_file, runner, args, message):
    result = runner.invoke(app, ["shapes", str(spec_file), *args])
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1


def test_missing_file_exits_2(runner, tmp_path):
    result = runner.invoke(app, ["shapes", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2 and "nope.yaml: no such file" in result.stderr


def test_shapes_never_imports_torch(spec_file):
    code = (
        "import sys; from netcalc.cli import app\n"
        f"try:\n    app(['shapes', {str(spec_file)!r}, '-f', 'table'])\n"
        "except SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "Total" in proc.stdout


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("netcalc ")


def test_the_process_ends_without_teardown_yet_writes_everything(tmp_path):
    """shapes hands its results to keep_until_exit, and main() ends the process with
    os._exit after flushing: the whole output arrives (far more than a pipe's buffer),
    with the exit status sys.exit would give."""
    spec = tmp_path / "chain.yaml"
    spec.write_text("input: [4, 8, 8]\nlayers:\n" + "  - {Conv2d: {out_channels: 4, "
                    "kernel_size: 3, padding: 1}}\n  - ReLU\n" * 1000)
    run = [sys.executable, "-m", "netcalc", "shapes", str(spec), "-f", "json"]
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["layers"]) == 2000
    bad = subprocess.run(run[:4] + [str(tmp_path / "missing.yaml")], capture_output=True,
                         text=True)
    assert bad.returncode == 2 and bad.stdout == ""
