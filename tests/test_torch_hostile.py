"""Hostile input on the torch side (issue 11): `verify`, `profile` and `check --torch`
answer one line with the right blame and exit code, never a traceback or `<spec>`;
the meta-device fallback respects the memory this process can really get."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

import netcalc  # noqa: E402
from netcalc.cli import app  # noqa: E402
from netcalc.errors import SpecError  # noqa: E402
from netcalc.layers import REGISTRY  # noqa: E402
from netcalc.layers.base import TensorInfo  # noqa: E402
from netcalc.torch import crosscheck as cc  # noqa: E402
from netcalc.torch import guard  # noqa: E402
from netcalc.torch.build import prepare  # noqa: E402

from conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.torch
CUDA = torch.cuda.is_available()
HUGE = 10**20  # beyond int64

TINY = "name: tiny\ninput: [8]\nlayers:\n  - {name: fc, Linear: 4}\n  - ReLU\n"


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def cli(*args: str, headroom: int | None = None) -> subprocess.CompletedProcess:
    """The real command in a fresh interpreter (tracebacks would reach stderr), optionally
    under an address-space limit (RLIMIT_AS, as `ulimit -v`) of ``headroom`` bytes beyond
    what the interpreter maps once torch is loaded (CUDA builds map gigabytes)."""
    code = "from netcalc.cli import app; app(prog_name='netcalc')"
    if headroom is not None:
        code = ("import os, resource, netcalc.torch.crosscheck; "
                "mapped = int(open('/proc/self/statm').read().split()[0]) * "
                "os.sysconf('SC_PAGE_SIZE'); "
                f"resource.setrlimit(resource.RLIMIT_AS, (mapped + {headroom}, "
                "resource.getrlimit(resource.RLIMIT_AS)[1])); " + code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=120)


def one_line_error(text: str, start: str) -> None:
    """The answer is exactly one line, starting with ``start`` (a file or an option)."""
    assert "Traceback" not in text and "<spec>" not in text and "frame #" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), text


# ---------------------------------------------------------------- values torch cannot take
HOSTILE = {
    "padding": f"input: [3, 8, 8]\nlayers:\n  - Conv2d: {{out_channels: 4, kernel_size: 3, "
               f"padding: {HUGE}}}\n",
    "stride": f"input: [3, 8, 8]\nlayers:\n  - Conv2d: {{out_channels: 4, kernel_size: 3, "
              f"stride: {HUGE}}}\n",
    "nan_dropout": "input: [8]\nlayers:\n  - Dropout: .nan\n",
}


@pytest.mark.parametrize("command", [["verify"], ["check", "--torch"], ["profile"]])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_values_beyond_torch_are_one_located_line(tmp_path, command, case):
    spec = write(tmp_path, "name: h\n" + HOSTILE[case])
    out = cli(*command, str(spec))
    assert out.returncode == 2, out.stdout + out.stderr
    if command[0] == "check":  # the report names the file, then the located error
        assert "Traceback" not in out.stderr + out.stdout and f"{spec}:4:" in out.stdout
    else:
        one_line_error(out.stderr, f"{spec}:4:")


@pytest.mark.parametrize("attr, value, why", [("padding", (HUGE, 0), "beyond int64"),
                                              ("stride", (1, -HUGE), "beyond int64")])
def test_domain_guard_without_the_core(attr, value, why):
    """Defence in depth: values the core let through are refused before torch runs."""
    spec = netcalc.parse("name: d\ninput: [3, 8, 8]\nlayers:\n"
                         "  - {name: c, Conv2d: {out_channels: 4, kernel_size: 3}}\n", "d.yaml")
    graph, _ = prepare(spec)
    setattr(graph.by_name["c"].layer, attr, value)
    with pytest.raises(SpecError, match=f"argument {attr} is {why}") as err:
        guard.check_domain(graph, 1)
    assert err.value.mark is not None


def test_tensor_too_large_to_index_blames_the_layer_or_the_input():
    spec = netcalc.parse("name: w\ninput: [8]\nlayers:\n  - {name: up, Linear: 4}\n", "w.yaml")
    graph, _ = prepare(spec)
    graph.by_name["up"].layer.outputs[0] = TensorInfo((1, 2**40, 2**40))  # one sample too big
    with pytest.raises(SpecError, match="up: its output would hold more than 2\\*\\*63-1"):
        guard.check_domain(graph, 1)
    with pytest.raises(SpecError, match="input 'input'") as err:
        guard.check_domain(prepare(spec, input_shapes={"input": (2**63,)})[0], 1,
                           {"input": (2**63,)})
    assert str(err.value).startswith("--input:")


@pytest.mark.parametrize("command", [["verify"], ["profile"]])
def test_batch_beyond_int64_names_the_option(tmp_path, command):
    out = cli(*command, str(write(tmp_path, TINY)), "--batch", str(HUGE))
    assert out.returncode == 2, out.stdout + out.stderr
    one_line_error(out.stderr, "--batch: must be an int from 1 to 2**63 - 1")  # the core's


def test_dtype_option_is_named(runner, tmp_path):
    r = runner.invoke(app, ["shapes", str(write(tmp_path, TINY)), "--dtype", "float128"])
    assert r.exit_code == 2
    one_line_error(r.stderr, "--dtype: unknown dtype 'float128'")
    p = runner.invoke(app, ["profile", str(write(tmp_path, TINY)), "--dtype", "float128"])
    assert p.exit_code == 2
    one_line_error(p.stderr, "--dtype:")


# ---------------------------------------------------------------- devices
@pytest.mark.skipif(CUDA, reason="checks the behaviour without CUDA")
@pytest.mark.parametrize("command", ["verify", "profile"])
def test_cuda_unavailable_is_said_not_blamed_on_a_layer(runner, tmp_path, command):
    r = runner.invoke(app, [command, str(write(tmp_path, TINY)), "--device", "cuda"])
    assert r.exit_code == 2
    one_line_error(r.stderr, "--device cuda: CUDA is not available")


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_verify_on_cuda(runner, tmp_path):
    r = runner.invoke(app, ["verify", str(write(tmp_path, TINY)), "--device", "cuda", "--no-rf"])
    assert r.exit_code == 0, r.output


def test_unknown_device(runner, tmp_path):
    r = runner.invoke(app, ["verify", str(write(tmp_path, TINY)), "--device", "tpu"])
    assert r.exit_code == 2
    one_line_error(r.stderr, "--device: expected cpu, cuda or meta, got 'tpu'")


# ---------------------------------------------------------------- blame and exit codes
def test_same_output_listed_twice_is_no_mismatch(runner, tmp_path):
    """Refused by the core, located, before torch could report a false MISMATCH."""
    spec = write(tmp_path, TINY + "outputs: [fc, fc]\n")
    r = runner.invoke(app, ["verify", str(spec), "--no-rf"])
    assert r.exit_code == 2, r.output
    assert "output 'fc' is listed twice" in r.output and "MISMATCH" not in r.output


class Raises(torch.nn.Module):
    def __init__(self, message: str):
        super().__init__()
        self.message = message

    def forward(self, x):
        raise RuntimeError(self.message)


def test_a_layer_torch_cannot_run_is_a_mismatch_at_that_layer(runner, tmp_path, monkeypatch):
    """The analysis accepted it, torch refuses it: a disagreement (exit 1), not bad input."""
    monkeypatch.setattr(REGISTRY["ReLU"], "torch_module",
                        lambda self: Raises("shapes cannot be multiplied\nException raised "
                                            "from foo at bar.cpp:1\nframe #0: baz"))
    result = cc.crosscheck(netcalc.parse(TINY, "t.yaml"), rf=False)
    [row] = result.mismatches
    assert (row.layer, row.metric, row.line) == ("relu_1", "shape", 5)
    assert row.torch == "raises RuntimeError: shapes cannot be multiplied"
    r = runner.invoke(app, ["verify", str(write(tmp_path, TINY))])
    assert r.exit_code == 1 and "Traceback" not in r.output and "frame #" not in r.output
    c = runner.invoke(app, ["check", "--torch", str(write(tmp_path, TINY))])
    assert c.exit_code == 1 and "relu_1 (ReLU) shape" in c.output


def test_a_module_torch_cannot_build_is_one_located_line(runner, tmp_path, monkeypatch):
    def refuse(self):
        raise RuntimeError("value cannot be converted\nException raised from x\nframe #0: y")

    monkeypatch.setattr(REGISTRY["Linear"], "torch_module", refuse)
    spec = write(tmp_path, TINY)
    for command in (["verify"], ["profile"]):
        r = runner.invoke(app, [*command, str(spec)])
        assert r.exit_code == 2
        one_line_error(r.stderr, f"{spec}:4:")
    c = runner.invoke(app, ["check", "--torch", str(spec)])
    assert c.exit_code == 2 and "frame #" not in c.output and f"{spec}:4:" in c.output


def test_any_other_torch_error_is_one_line_exit_2(runner, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("empty(): argument 'size' failed\nException raised from z")

    monkeypatch.setattr(cc, "inputs_for", broken)
    spec = write(tmp_path, TINY)
    r = runner.invoke(app, ["verify", str(spec)])
    assert r.exit_code == 2
    one_line_error(r.stderr, f"{spec}: torch cannot check this spec: empty()")
    c = runner.invoke(app, ["check", "--torch", str(spec)])
    assert c.exit_code == 2 and "Exception raised" not in c.output


# ---------------------------------------------------------------- memory
def test_cgroup_limits_v2_and_v1(tmp_path, monkeypatch):
    def files(limit: str, usage: str, tag: str) -> tuple[Path, Path]:
        (tmp_path / f"{tag}.limit").write_text(limit + "\n")
        (tmp_path / f"{tag}.usage").write_text(usage + "\n")
        return tmp_path / f"{tag}.limit", tmp_path / f"{tag}.usage"

    monkeypatch.setattr(guard, "CGROUP_FILES", (files("1000000", "400000", "v2"),))
    assert guard._cgroup_left() == 600_000
    assert guard.allocatable() == (600_000, "the container's memory limit (cgroup)")
    monkeypatch.setattr(guard, "CGROUP_FILES", (files("max", "5", "v2"),
                                                files("2000", "3000", "v1")))
    assert guard._cgroup_left() is None  # v2 says: no limit
    monkeypatch.setattr(guard, "CGROUP_FILES", ((tmp_path / "absent", tmp_path / "absent"),
                                                files("2000", "3000", "v1")))
    assert guard._cgroup_left() == 0  # over the limit already


def test_small_limit_falls_back_to_meta(monkeypatch):
    monkeypatch.setattr(guard, "allocatable",
                        lambda: (10, "the container's memory limit (cgroup)"))
    result = cc.crosscheck(netcalc.parse(TINY, "t.yaml"))
    assert result.ok and result.device == "meta"
    assert "the container's memory limit (cgroup) leaves" in result.skipped[0]


def test_running_out_of_memory_retries_on_meta(monkeypatch):
    real = cc.inputs_for

    def starved(graph, *, device, **kw):
        if device != "meta":
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to "
                               "allocate 6400000000 bytes.\nException raised from x")
        return real(graph, device=device, **kw)

    monkeypatch.setattr(cc, "inputs_for", starved)
    result = cc.crosscheck(netcalc.parse(TINY, "t.yaml"))
    assert result.ok and result.device == "meta"
    assert result.skipped[0].startswith("device: cpu ran out of memory (DefaultCPUAllocator")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
def test_verify_under_ulimit_v_falls_back_instead_of_dying(tmp_path):
    """A 6.4 GB Linear with 3 GiB of address space left: checked on meta, exit 0."""
    spec = write(tmp_path, "name: big\ninput: [40000]\nlayers:\n  - Linear: 40000\n")
    out = cli("verify", str(spec), "--no-rf", headroom=3 * 2**30)
    assert out.returncode == 0, out.stdout + out.stderr
    # the smallest room names itself: the ulimit here, unless free RAM is scarcer still
    # (a loaded machine; torch's CUDA builds also map more address space at import)
    assert re.search(r"the float32 model needs about [0-9.]+ GB and .+ leaves", out.stdout)
    assert "Traceback" not in out.stderr


def test_one_line():
    assert guard.one_line(RuntimeError("first\nException raised from\nframe #0")) == "first"
    assert guard.one_line(RuntimeError("")) == "RuntimeError"
    assert len(guard.one_line(ValueError("x" * 1000))) == 300


# ---------------------------------------------------------------- output that cannot be forged
FORGED_NAME = 'name: "a\\n::error file=README.md::x\\e[31m\\u202e[bold]b[/bold]"\n'


def test_verify_table_escapes_the_spec_name(runner, tmp_path):
    """The cross-check table's title prints the name as text: no new line, no escape
    sequence, no bidirectional override, no rich markup read from it."""
    r = runner.invoke(app, ["verify", str(write(tmp_path, FORGED_NAME + TINY[11:])), "--no-rf"])
    assert r.exit_code == 0, r.output
    assert "a\\n::error file=README.md::x\\x1b[31m\\u202e[bold]b[/bold]" in r.output
    for bad in ("\n::error", "\x1b", "\u202e"):
        assert bad not in r.output


# ---------------------------------------------------------------- bounded cost
@pytest.mark.parametrize("name", ["TransformerEncoderLayer", "TransformerDecoderLayer",
                                  "MultiheadAttention", "Linear"])
def test_a_layer_counts_toward_the_limit_as_the_modules_torch_builds(name):
    """Layer.MODULES, what a layer weighs against graph.MAX_NODES, is torch's own count of
    the modules it builds for that layer (itself included)."""
    from netcalc.layers import REGISTRY

    module = {"TransformerEncoderLayer": lambda: torch.nn.TransformerEncoderLayer(8, 2, 16),
              "TransformerDecoderLayer": lambda: torch.nn.TransformerDecoderLayer(8, 2, 16),
              "MultiheadAttention": lambda: torch.nn.MultiheadAttention(8, 2),
              "Linear": lambda: torch.nn.Linear(8, 4)}[name]()
    assert REGISTRY[name].MODULES == len(list(module.modules()))
