"""Output formats of ``netcalc check``: text, json, github and junit.

* ``text``: one line per spec (``PASS``/``FAIL``/``INVALID``), one indented line per
  failed expectation (``FILE:LINE:COL: message``), and a summary.
* ``json``: every spec with every check, exact values, and the exit code.
* ``github``: GitHub Actions workflow commands, ``::error file=F,line=L,col=C::msg``,
  one per failure and per invalid spec, so they show on the pull request's diff;
  then the text summary.
* ``junit``: JUnit XML (one testsuite per spec, one testcase per expectation or
  budget entry) for CI dashboards.

No rich, no torch: checking is meant to be fast. File names and messages (which
quote the spec) go through :mod:`netcalc.textsafe` wherever they are printed.
"""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree as ET

from ..check import Check, CheckRun, SpecResult
from ..textsafe import github_data, github_property, text

CHECK_FORMATS = ("text", "json", "github", "junit")
JSON_VERSION = 1


def render_check(run: CheckRun, fmt: str) -> str:
    return {"text": render_text, "json": render_json, "github": render_github,
            "junit": render_junit}[fmt](run)


# --------------------------------------------------------------------------- text
def _place(file: str, mark: Any) -> str:
    return f"{text(file)}:{mark.line}:{mark.col}" if mark is not None else text(file)


def spec_lines(r: SpecResult) -> list[str]:
    """The text lines of one spec's result."""
    if r.error is not None:
        return [f"INVALID {text(r.file)}", f"  {text(r.error)}"]
    n_expect = sum(c.section == "expect" for c in r.checks)
    n_budget = sum(c.section == "budget" for c in r.checks)
    n_torch = sum(c.section == "torch" for c in r.checks)
    parts = [f"{n_expect} expectation{'s' * (n_expect != 1)}",
             f"{n_budget} budget{'s' * (n_budget != 1)}"]
    if n_torch:
        parts.append("torch cross-check")
    head = f"{'PASS' if r.status == 'passed' else 'FAIL'} {text(r.file)} ({', '.join(parts)})"
    return [head] + [f"  {_place(r.file, c.mark)}: {text(c.message)}" for c in r.failures]


def summary_line(run: CheckRun) -> str:
    n = len(run.results)
    parts = [f"{run.count('passed')} passed"]
    if run.count("failed"):
        parts.append(f"{run.count('failed')} failed")
    if run.count("invalid"):
        parts.append(f"{run.count('invalid')} invalid")
    return f"{n} spec{'s' * (n != 1)}: {', '.join(parts)} ({run.seconds:.2f} s)"


def render_text(run: CheckRun) -> str:
    lines = [line for r in run.results for line in spec_lines(r)]
    lines.append(summary_line(run))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- json
def check_dict(c: Check) -> dict[str, Any]:
    return {
        "section": c.section,
        "key": c.key,
        "line": c.mark.line,
        "col": c.mark.col,
        "expected": c.expected,
        "actual": c.actual,
        "expected_value": c.expected_value,
        "actual_value": c.actual_value,
        "passed": c.passed,
        "message": c.message,
    }


def result_dict(r: SpecResult) -> dict[str, Any]:
    d: dict[str, Any] = {
        "file": r.file,
        "name": r.name,
        "status": r.status,
        "seconds": round(r.seconds, 6),
        "error": None,
        "checks": [check_dict(c) for c in r.checks],
    }
    if r.error is not None:
        d["error"] = {
            "file": r.error.file or r.file,
            "line": r.error.mark.line if r.error.mark else None,
            "col": r.error.mark.col if r.error.mark else None,
            "message": r.error.message,
            "text": str(r.error),
        }
    d.update(r.extra)
    return d


def render_json(run: CheckRun) -> str:
    data = {
        "format_version": JSON_VERSION,
        "exit_code": run.exit_code,
        "summary": {"specs": len(run.results), "passed": run.count("passed"),
                    "failed": run.count("failed"), "invalid": run.count("invalid"),
                    "seconds": round(run.seconds, 6)},
        "specs": [result_dict(r) for r in run.results],
    }
    return json.dumps(data, indent=2) + "\n"


# --------------------------------------------------------------------------- github
def annotation(file: str, mark: Any, message: str, title: str, level: str = "error") -> str:
    props = [f"file={github_property(file)}"]
    if mark is not None:
        props += [f"line={mark.line}", f"col={mark.col}"]
    props.append(f"title={github_property(title)}")
    return f"::{level} {','.join(props)}::{github_data(message)}"


def github_lines(r: SpecResult) -> list[str]:
    if r.error is not None:
        return [annotation(r.error.file or r.file, r.error.mark, r.error.message,
                           "netcalc: invalid spec")]
    return [annotation(r.file, c.mark, c.message, f"netcalc {c.section}: {c.key}")
            for c in r.failures]


def render_github(run: CheckRun) -> str:
    lines = [line for r in run.results for line in github_lines(r)]
    lines += [line for r in run.results for line in spec_lines(r)[:1]]
    lines.append(summary_line(run))
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- junit
def _classname(file: str) -> str:
    stem = file[:-5] if file.endswith(".yaml") else file[:-4] if file.endswith(".yml") else file
    return stem.replace("\\", "/").strip("./").replace("/", ".") or file


def render_junit(run: CheckRun) -> str:
    suites = ET.Element("testsuites", name="netcalc check")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for r in run.results:
        file = text(r.file)  # no character XML forbids (controls, lone surrogates)
        suite = ET.SubElement(suites, "testsuite", name=file)
        cls = _classname(file)
        cases = 0
        failures = errors = 0
        if r.error is not None:
            case = ET.SubElement(suite, "testcase", classname=cls, name="parse",
                                 file=file, time=f"{r.seconds:.6f}")
            if r.error.mark is not None:
                case.set("line", str(r.error.mark.line))
            err = ET.SubElement(case, "error", message=text(r.error.message), type="SpecError")
            err.text = text(r.error)
            cases, errors = 1, 1
        elif not r.checks:
            ET.SubElement(suite, "testcase", classname=cls, name="analyze", file=file,
                          time=f"{r.seconds:.6f}")
            cases = 1
        else:
            each = r.seconds / len(r.checks)
            for c in r.checks:
                case = ET.SubElement(suite, "testcase", classname=cls, name=text(c.name),
                                     file=file, line=str(c.mark.line), time=f"{each:.6f}")
                cases += 1
                if not c.passed:
                    failures += 1
                    fail = ET.SubElement(case, "failure", message=text(c.message),
                                         type=c.section)
                    fail.text = (f"{file}:{c.mark.line}:{c.mark.col}: {text(c.message)}\n"
                                 f"expected: {text(c.expected)}\nactual: {text(c.actual)}")
        suite.set("tests", str(cases))
        suite.set("failures", str(failures))
        suite.set("errors", str(errors))
        suite.set("skipped", "0")
        suite.set("time", f"{r.seconds:.6f}")
        totals["tests"] += cases
        totals["failures"] += failures
        totals["errors"] += errors
    for k, v in totals.items():
        suites.set(k, str(v))
    suites.set("time", f"{run.seconds:.6f}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"
