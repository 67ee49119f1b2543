"""`netcalc check`: expectations, budgets, exit codes and every output format."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from netcalc import check as check_mod
from netcalc.check import Expected, parse_expected
from netcalc.cli import app
from netcalc.errors import Mark, SpecError

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = sorted((ROOT / "specs").glob("*.yaml"))

# 3@8x8 -> conv 4@6x6 (112 params, 3,888 MACs) -> flatten 144 -> linear 10 (1,450 params, 1,440 MACs)
MODEL = """\
name: tiny
input: [3, 8, 8]
layers:
  - {name: conv, Conv2d: {out_channels: 4, kernel_size: 3}}
  - {name: relu, ReLU: ~}
  - {name: flat, Flatten: ~}
  - {name: fc, Linear: 10}
"""
PARAMS = 3 * 4 * 9 + 4 + 144 * 10 + 10  # 1,562
MACS = 6 * 6 * 4 * 27 + 144 * 10  # 5,328

PASSING = MODEL + f"""\
expect:
  output: [10]
  params: {PARAMS}
  macs: 5.3k ±1%
  receptive_field: 3
budget:
  params: 2k
  weight_bytes: 7kB
"""
# line numbers below are those of the spec text (1-based)
FAILING_EXPECT = MODEL + """\
expect:
  output: [10]
  params: 1600
  macs: 5328
"""  # `params: 1600` is line 10
FAILING_BUDGET = MODEL + """\
budget:
  macs: 1M
  params: 1.5k
"""  # `params: 1.5k` is line 10
INVALID = """\
name: broken
input: [3, 8, 8]
layers:
  - {name: conv, Conv2d: {out_channels: 4, kernel_size: 9}}
"""  # a 9x9 kernel on 8x8: line 4


@pytest.fixture
def specs(tmp_path):
    def write(**files: str) -> Path:
        for name, text in files.items():
            (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text))
        return tmp_path
    return write


def invoke(runner, *args: str):
    return runner.invoke(app, ["check", *map(str, args)])


# --------------------------------------------------------------------------- exit codes, text
def test_passing_spec_exits_0(runner, specs):
    d = specs(ok=PASSING)
    result = invoke(runner, d / "ok.yaml")
    assert result.exit_code == 0, result.output
    assert f"PASS {d / 'ok.yaml'} (4 expectations, 2 budgets)" in result.stdout
    assert "1 spec: 1 passed" in result.stdout


def test_failed_expectation_exits_1_naming_line_expected_and_actual(runner, specs):
    d = specs(bad=FAILING_EXPECT)
    result = invoke(runner, d / "bad.yaml")
    assert result.exit_code == 1, result.output
    assert f"FAIL {d / 'bad.yaml'}" in result.stdout
    line = next(x for x in result.stdout.splitlines() if "expect.params" in x).strip()
    assert line == (f"{d / 'bad.yaml'}:10:3: expect.params: expected 1,600, got 1,562 "
                    "(-38, -2.38%)")
    assert "expect.macs" not in result.stdout  # passing checks are not listed
    assert "1 failed" in result.stdout


def test_failed_budget_exits_1(runner, specs):
    d = specs(fat=FAILING_BUDGET)
    result = invoke(runner, d / "fat.yaml")
    assert result.exit_code == 1, result.output
    assert (f"{d / 'fat.yaml'}:10:3: budget.params: 1,562 exceeds the budget of 1.5k (1,500) "
            "by 62, +4.13%") in result.stdout
    assert "budget.macs" not in result.stdout


def test_invalid_spec_exits_2_with_its_location(runner, specs):
    d = specs(broken=INVALID)
    result = invoke(runner, d / "broken.yaml")
    assert result.exit_code == 2, result.output
    assert f"INVALID {d / 'broken.yaml'}" in result.stdout
    assert re.search(rf"^  {re.escape(str(d / 'broken.yaml'))}:4:\d+: conv: kernel extent",
                     result.stdout, re.M), result.stdout
    assert "Traceback" not in result.output


def test_invalid_beats_failed_beats_passed(runner, specs):
    d = specs(a=PASSING, b=FAILING_BUDGET)
    assert invoke(runner, d).exit_code == 1
    specs(c=INVALID)
    result = invoke(runner, d)
    assert result.exit_code == 2
    assert "3 specs: 1 passed, 1 failed, 1 invalid" in result.stdout


def test_folders_are_searched_recursively_and_sorted(runner, tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "z.yml").write_text(PASSING)
    (tmp_path / "a.yaml").write_text(PASSING)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.yaml").write_text(INVALID)
    (tmp_path / "notes.txt").write_text("not a spec")
    result = invoke(runner, tmp_path)
    assert result.exit_code == 0, result.output
    files = re.findall(r"^PASS (\S+)", result.stdout, re.M)
    assert files == [str(tmp_path / "a.yaml"), str(tmp_path / "sub" / "deeper" / "z.yml")]


def test_default_path_is_specs(runner, tmp_path, monkeypatch):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "m.yaml").write_text(PASSING)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "PASS specs/m.yaml" in result.stdout


def test_missing_path_and_empty_folder_exit_2(runner, tmp_path):
    result = invoke(runner, tmp_path / "nope.yaml")
    assert result.exit_code == 2
    assert f"{tmp_path / 'nope.yaml'}: no such file or folder" in result.stdout
    (tmp_path / "empty").mkdir()
    result = invoke(runner, tmp_path / "empty")
    assert result.exit_code == 2
    assert "no spec files" in result.stdout


def test_bad_format_exits_2(runner, specs):
    d = specs(ok=PASSING)
    result = runner.invoke(app, ["check", str(d), "--format", "xml"])
    assert result.exit_code == 2
    assert "unknown format 'xml'" in result.stderr


# --------------------------------------------------------------------------- json
def test_json_format(runner, specs):
    d = specs(a=PASSING, b=FAILING_EXPECT, c=INVALID)
    result = runner.invoke(app, ["check", str(d), "--format", "json"])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["exit_code"] == 2
    assert data["summary"] == {**data["summary"], "specs": 3, "passed": 1, "failed": 1,
                               "invalid": 1}
    by_file = {Path(s["file"]).stem: s for s in data["specs"]}
    assert by_file["a"]["status"] == "passed"
    failed = [c for c in by_file["b"]["checks"] if not c["passed"]]
    assert failed == [{
        "section": "expect", "key": "params", "line": 10, "col": 3, "expected": "1600",
        "actual": "1,562", "expected_value": 1600, "actual_value": 1562, "passed": False,
        "message": "expect.params: expected 1,600, got 1,562 (-38, -2.38%)",
    }]
    err = by_file["c"]["error"]
    assert by_file["c"]["status"] == "invalid"
    assert (err["line"], err["file"]) == (4, str(d / "c.yaml"))
    assert "kernel extent" in err["message"]


# --------------------------------------------------------------------------- github
ANNOTATION = re.compile(r"^::error file=(?P<file>[^,]+),line=(?P<line>\d+),col=(?P<col>\d+),"
                        r"title=(?P<title>[^:]+)::(?P<message>.*)$")


def test_github_annotations(runner, specs):
    d = specs(a=PASSING, b=FAILING_EXPECT, c=FAILING_BUDGET, d=INVALID)
    result = runner.invoke(app, ["check", str(d), "--format", "github"])
    assert result.exit_code == 2
    found = [ANNOTATION.match(x) for x in result.stdout.splitlines() if x.startswith("::")]
    assert all(found), result.stdout
    got = {(Path(m["file"]).name, int(m["line"]), int(m["col"])): m for m in found}
    invalid_col = error_col(d / "d.yaml")
    assert set(got) == {("b.yaml", 10, 3), ("c.yaml", 10, 3), ("d.yaml", 4, invalid_col)}
    assert got[("b.yaml", 10, 3)]["message"] == \
        "expect.params: expected 1,600, got 1,562 (-38, -2.38%25)"  # % escaped as %25
    assert got[("b.yaml", 10, 3)]["title"] == "netcalc expect%3A params"
    assert "exceeds the budget" in got[("c.yaml", 10, 3)]["message"]
    invalid = next(m for k, m in got.items() if k[0] == "d.yaml")
    assert "kernel extent" in invalid["message"]
    assert invalid["file"] == str(d / "d.yaml")
    assert "4 specs: 1 passed, 2 failed, 1 invalid" in result.stdout


def error_col(path: Path) -> int:
    """The column of the spec error the loader reports for ``path``."""
    r = check_mod.check_file(path)
    assert r.error is not None and r.error.mark is not None
    return r.error.mark.col


def test_github_escapes_properties_and_newlines():
    from netcalc.render.check import annotation

    line = annotation("a,b:c.yaml", Mark(3, 5), "50% off\nnext", "t")
    assert line == "::error file=a%2Cb%3Ac.yaml,line=3,col=5,title=t::50%25 off%0Anext"


# --------------------------------------------------------------------------- junit
def test_junit_xml(runner, specs, tmp_path):
    d = specs(a=PASSING, b=FAILING_EXPECT, c=INVALID)
    result = runner.invoke(app, ["check", str(d), "--format", "junit"])
    assert result.exit_code == 2
    root = ET.fromstring(result.stdout.split("\n", 1)[1])
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("10", "1", "1")
    suites = {Path(s.get("name")).stem: s for s in root.findall("testsuite")}
    assert suites["a"].get("failures") == "0" and len(suites["a"].findall("testcase")) == 6
    fail = suites["b"].find("testcase/failure")
    assert fail is not None and fail.get("type") == "expect"
    assert "expected 1,600, got 1,562" in fail.get("message")
    case = next(c for c in suites["b"].findall("testcase") if c.find("failure") is not None)
    assert (case.get("name"), case.get("line")) == ("expect.params", "10")
    err = suites["c"].find("testcase/error")
    assert err is not None and "kernel extent" in err.get("message")
    assert err.text.startswith(f"{d / 'c.yaml'}:4:")


def test_junit_output_file(runner, specs, tmp_path):
    d = specs(a=PASSING, b=FAILING_BUDGET)
    out = tmp_path / "reports" / "netcalc.xml"
    result = runner.invoke(app, ["check", str(d), "--format", "junit", "--output", str(out)])
    assert result.exit_code == 1
    root = ET.parse(out).getroot()
    assert root.get("failures") == "1"
    assert "2 specs: 1 passed, 1 failed" in result.stdout  # a text summary on stdout
    assert not result.stdout.startswith("<?xml")


# --------------------------------------------------------------------------- expectations
def run_text(tmp_path, text: str):
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent(text))
    return check_mod.check_file(p)


@pytest.mark.parametrize("value, ok", [
    (f"{MACS}", True), ("5328", True), ("5_328", True), ("5,328", True), ("5.3k", False),
    ("5.3k ±1%", True), ("5.3k ± 0.6%", True), ("5.3k ±0.5%", False), ("5.3k ±0.1%", False), ("5.3k +- 30", True),
    ("5.3k +/- 27", False), ("5.4k ±1.5%", True),
])
def test_tolerances(tmp_path, value, ok):
    r = run_text(tmp_path, MODEL + f"expect:\n  macs: {value}\n")
    assert r.error is None, r.error
    assert r.checks[0].passed is ok, r.checks[0].message


def test_parse_expected_units():
    m = Mark(1, 1)
    assert parse_expected("4.09G ±1%", m, "x") == Expected("4.09G ±1%", 4_090_000_000,
                                                          40_900_000, parse_expected(
                                                              "1G ±1%", m, "x").relative)
    assert parse_expected("20MB", m, "x").value == 20_000_000
    assert parse_expected("1.5 GiB", m, "x").value == 3 * 2**29
    assert parse_expected(25557032, m, "x").value == 25557032
    with pytest.raises(SpecError, match="cannot read 'lots'"):
        parse_expected("lots", m, "expect.params")
    with pytest.raises(SpecError, match="takes no tolerance"):
        parse_expected("5M ±1%", m, "budget.params", tolerance=False)
    with pytest.raises(SpecError, match="tolerance"):
        parse_expected("5M ±lots", m, "expect.params")


def test_outputs_mapping_and_multiple_outputs(tmp_path):
    spec = MODEL + """\
outputs: [conv, fc]
expect:
  output: {conv: [4, 6, 6], fc: [1, 10]}
"""
    r = run_text(tmp_path, spec)
    assert r.error is None
    assert [(c.key, c.passed) for c in r.checks] == [("output.conv", True), ("output.fc", True)]
    r = run_text(tmp_path, MODEL + "outputs: [conv, fc]\nexpect:\n  output: [10]\n")
    assert r.error is not None and "give a mapping" in r.error.message
    r = run_text(tmp_path, MODEL + "outputs: [conv, fc]\nexpect:\n  output: {fcc: [10]}\n")
    assert r.error is not None and "no output 'fcc'" in r.error.message
    assert "did you mean fc?" in r.error.message and r.error.mark.line == 10


def test_output_shape_mismatch_message(tmp_path):
    r = run_text(tmp_path, MODEL + "expect:\n  output: [100]\n")
    assert r.checks[0].message == "expect.output: expected shape [100], got [10]"
    assert r.checks[0].mark == Mark(9, 3)


def test_receptive_field_of_last_or_named_layer(tmp_path):
    spec = MODEL.replace("  - {name: relu", "  - {name: conv2, Conv2d: {out_channels: 4, kernel_size: 3}}\n"
                                           "  - {name: relu")
    spec = spec.replace("Linear: 10", "Linear: 10").replace("[3, 8, 8]", "[3, 9, 9]")
    r = run_text(tmp_path, spec + "expect:\n  receptive_field: 5\n")
    assert [c.passed for c in r.checks] == [True], r.checks[0].message
    assert r.checks[0].message == "expect.receptive_field: relu sees 5"
    r = run_text(tmp_path, spec + "expect:\n  receptive_field: {conv: 3, conv2: [5, 5], fc: global}\n")
    assert [c.passed for c in r.checks] == [True, True, True], [c.message for c in r.checks]
    r = run_text(tmp_path, spec + "expect:\n  receptive_field: {conv: 4}\n")
    assert r.checks[0].message == "expect.receptive_field.conv: expected 4 at conv, got 3"
    r = run_text(tmp_path, spec + "expect:\n  receptive_field: {cnv: 4}\n")
    assert r.error is not None and "no layer 'cnv'" in r.error.message


def test_budget_dtype_and_batch(tmp_path):
    r = run_text(tmp_path, MODEL + "budget:\n  dtype: int8\n  weight_bytes: 1562B\n")
    assert r.checks[0].passed, r.checks[0].message
    r = run_text(tmp_path, MODEL + "budget:\n  batch: 2\n  macs: 10k\n")
    assert not r.checks[0].passed  # 2 * 5,328
    assert "10,656 exceeds the budget of 10k (10,000)" in r.checks[0].message
    r = run_text(tmp_path, MODEL + "budget:\n  dtype: int3\n  params: 1\n")
    assert r.error is not None and "budget.dtype" in r.error.message


@pytest.mark.parametrize("block, message, line", [
    ("expect:\n  parms: 10\n", "expect: unknown key 'parms' (did you mean params?)", 9),
    ("expect:\n  params: lots\n", "expect.params: cannot read 'lots'", 9),
    ("budget:\n  params: 5M ±1%\n", "takes no tolerance", 9),
    ("expect:\n  output: [10]\n  outputs: [10]\n", "either output or outputs", 10),
    ("expect:\n  output: [ten]\n", "a shape is a list of positive ints", 9),
])
def test_malformed_blocks_are_invalid(tmp_path, block, message, line):
    r = run_text(tmp_path, MODEL + block)
    assert r.status == "invalid"
    assert message in r.error.message and r.error.mark.line == line


def test_sparsity_reports_nonzero_counts(tmp_path):
    spec = MODEL.replace("{name: fc, Linear: 10}", "{name: fc, Linear: 10, sparsity: 0.5}")
    r = run_text(tmp_path, spec + "expect:\n  nonzero_params: 842\n  nonzero_macs: 4608\n")
    assert [c.passed for c in r.checks] == [True, True], [c.message for c in r.checks]


BN_MODEL = MODEL.replace("  - {name: relu", "  - {name: bn, BatchNorm2d: ~}\n  - {name: relu")


def test_convention_in_the_block_and_on_the_command_line(runner, tmp_path):
    # fvcore counts an eval-mode affine BatchNorm as 2 per element: 2 * 4*6*6 = 288
    r = run_text(tmp_path, BN_MODEL + f"expect:\n  convention: fvcore\n  macs: {MACS + 288}\n")
    assert [c.passed for c in r.checks] == [True], r.checks[0].message
    p = tmp_path / "bn.yaml"
    p.write_text(BN_MODEL + f"expect:\n  macs: {MACS}\n")
    assert runner.invoke(app, ["check", str(p)]).exit_code == 0
    result = runner.invoke(app, ["check", str(p), "--convention", "fvcore"])
    assert result.exit_code == 1
    assert f"expected {MACS:,}, got {MACS + 288:,}" in result.stdout
    result = runner.invoke(app, ["check", str(p), "--convention", "thop"])
    assert result.exit_code == 2
    assert "unknown convention 'thop'" in result.stderr
    r = run_text(tmp_path, BN_MODEL + "budget:\n  convention: thop\n  macs: 1M\n")
    assert r.error is not None and "budget.convention must be one of" in r.error.message


# --------------------------------------------------------------------------- torch
def test_torch_missing_exits_2_with_a_clear_message(runner, specs, monkeypatch):
    monkeypatch.setattr(check_mod, "torch_available", lambda: False)
    result = runner.invoke(app, ["check", str(specs(a=PASSING)), "--torch"])
    assert result.exit_code == 2
    assert "pip install torch fvcore" in result.stderr and "netcalc[" not in result.stderr


# --------------------------------------------------------------------------- speed, library
def test_checking_never_imports_torch(tmp_path):
    (tmp_path / "a.yaml").write_text(PASSING)
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom netcalc.cli import app\n"
            f"r = CliRunner().invoke(app, ['check', {str(tmp_path)!r}, {str(ROOT / 'specs')!r}])\n"
            "assert r.exit_code in (0, 1), r.output\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'fvcore', 'rich'))\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.stem)
def test_library_spec_passes_its_expectations(path):
    r = check_mod.check_file(path)
    assert r.error is None, str(r.error)
    assert r.checks, f"{path.name} has no expectations"
    assert any(c.section == "expect" for c in r.checks)
    assert not r.failures, "\n".join(c.message for c in r.failures)


def test_library_cites_its_sources():
    for path in LIBRARY:
        comments = [x for x in path.read_text().splitlines()[1:6] if x.startswith("#")]
        assert comments, f"{path.name}: cite the published source in a comment"


def test_pre_commit_hooks():
    import yaml

    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    ids = {h["id"]: h for h in hooks}
    assert {"netcalc-check", "netcalc-check-all", "netcalc-check-torch"} <= set(ids)
    for h in hooks:
        assert h["entry"].startswith("netcalc check") and h["language"] == "python"
        assert re.search(h["files"], "specs/resnet50.yaml")
        assert re.search(h["files"], "models/specs/gan.yml")
        assert not re.search(h["files"], ".github/workflows/ci.yml")
    assert ids["netcalc-check-all"]["pass_filenames"] is False


def test_reports_at_several_batches_share_one_expansion_and_keep_their_own_shapes(tmp_path):
    """An expectation at batch 2 and a budget at batch 3: the spec is expanded once
    (netcalc.graph.rebatched) and each report keeps its own batch's figures."""
    p = tmp_path / "s.yaml"
    p.write_text(MODEL + f"expect: {{batch: 2, macs: {2 * MACS}}}\n"
                         f"budget: {{batch: 3, macs: {3 * MACS}, activation_bytes: 1}}\n")
    spec = __import__("netcalc.spec", fromlist=["load"]).load(p)
    reports = check_mod._Reports(spec, None)
    checks = check_mod.evaluate(spec, reports=reports)
    assert [c.passed for c in checks] == [True, True, False]
    two, three = reports.get(batch=2), reports.get(batch=3)
    assert (two.totals.macs, three.totals.macs) == (2 * MACS, 3 * MACS)
    assert two.graph.nodes[0].layer.inputs[0].shape == (2, 3, 8, 8)  # not the later batch's
    assert three.graph.nodes[0].layer.inputs[0].shape == (3, 3, 8, 8)
    assert two.graph.nodes[0].layer is not three.graph.nodes[0].layer
