"""Hostile specs (issue 11): every fault found by attacking `netcalc check` as a stranger's
pull request would, kept as a regression case.

Each case runs the real command (``python -m netcalc``) in a fresh process under a 4 GB
address-space limit and a timeout, as the attack did, and states its exit code, a
fragment of what it prints and what must not appear; never a traceback. The cases
that need a file system set-up (FIFOs, devices, symbolic links, odd file names) and
the pipes and signals follow the table; a hypothesis test ends the file.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from netcalc.torch_names import NETCALC_MODULE, RESERVED, TORCH_MODULE

ROOT = Path(__file__).resolve().parent.parent
AS_LIMIT = 4 * 2**30
TIMEOUT = 20
OK = "input: [8]\nlayers: [ReLU]\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def netcalc(*args: str, cwd: Path, timeout: float = TIMEOUT, **kw) -> subprocess.CompletedProcess:
    """Run the command as CI would, bounded; stdout and stderr decoded (UTF-8)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p))
    kw.setdefault("capture_output", True)
    proc = subprocess.run([sys.executable, "-m", "netcalc", *args], cwd=cwd, env=env,
                          timeout=timeout, preexec_fn=_limit_memory, **kw)
    for name in ("stdout", "stderr"):
        if isinstance(getattr(proc, name), bytes):
            setattr(proc, name, getattr(proc, name).decode("utf-8"))
    return proc


def _distinct_instances(levels: int) -> str:
    """2**levels block instances with different arguments (${a*2}, ${a*2+1})."""
    lines = ["input: [8]", "blocks:"]
    for i in range(levels):
        body = (f"[{{B{i + 1}: {{a: '${{a*2}}'}}}}, {{B{i + 1}: {{a: '${{a*2+1}}'}}}}]"
                if i + 1 < levels else "[{Linear: 8}]")
        lines += [f"  B{i}:", "    args: {a: 1}", f"    layers: {body}"]
    return "\n".join(lines) + "\nlayers: [B0]\n"


@dataclass
class Case:
    id: str
    spec: str
    args: tuple[str, ...] = ("check", "s.yaml")
    code: int = 2
    says: str = ""
    never: tuple[str, ...] = ()
    seconds: float = 10.0


CONV1D = "input: [4, 8]\nlayers:\n  - Conv1d: {out_channels: 2, kernel_size: 1, %s}\n"

CASES = [
    # One line hangs CI: quantities are bounded before a number is built
    Case("budget-1e99999999", OK + "budget: {params: 1e99999999}\n",
         says="s.yaml:3:18: budget.params: '1e99999999' is beyond the range of quantities"),
    Case("tolerance-1e99999999%", OK + "expect: {params: '0 ±1e99999999%'}\n",
         says="s.yaml:3:18: expect.params: cannot read the tolerance '1e99999999%'"),
    Case("expect-1e-99999999", OK + "expect: {params: 1e-99999999}\n",
         says="expect.params: '1e-99999999' is beyond the range of quantities"),
    # Accepted specs that cost minutes and gigabytes: the limits refuse them at once
    Case("repeat-1000000", "input: [8]\nlayers: [{ReLU: ~, repeat: 1000000}]\n",
         says="s.yaml:2:28: repeat 1,000,000 exceeds the limit of 20,000", seconds=3),
    Case("nested-repeats", "input: [8]\nblocks:\n  A: [{ReLU: ~, repeat: 1000}]\n"
         "  B: [{A: ~, repeat: 1000}]\nlayers: [{B: ~, repeat: 1000}]\n",
         says="s.yaml:4:7: the spec expands to more than 20,000 layers", seconds=3),
    Case("block-of-1000-used-1000-times",
         "input: [8]\nblocks:\n  B:\n" + "    - ReLU\n" * 1000
         + "layers: [{B: ~, repeat: 1000}]\n",
         says="the spec expands to more than 20,000 layers", seconds=3),
    Case("2^20-distinct-block-instances", _distinct_instances(20),
         says="the spec expands to more than 20,000 layers", seconds=5),
    Case("200000-layers-on-one-line", "input: [8]\nlayers: [" + ", ".join(["ReLU"] * 200_000)
         + "]\n", says="the spec expands to more than 20,000 layers", seconds=8),
    Case("transformer-layers-count-as-their-modules",
         "inputs: {x: [4, 8], m: [4, 8]}\nlayers:\n  - {name: t, TransformerDecoderLayer: "
         "{nhead: 2, dim_feedforward: 16}, from: [x, m], repeat: 1429}\n",
         says="s.yaml:3:5: the spec expands to more than 20,000 layers (a "
              "TransformerDecoderLayer counts as 14: the modules torch builds)", seconds=3),
    Case("long-names-in-every-instance", "input: [8]\nblocks:\n  B: [{name: " + "a" * 100_000
         + ", ReLU: ~}]\nlayers: [{B: ~, repeat: 20000}]\n",
         says="s.yaml:3:14: name of 100,000 characters (at most 64)", seconds=3),
    Case("long-block-argument", "input: [8]\nblocks:\n  B: {args: {s: " + "x" * 100_000
         + "}, layers: [ReLU]}\nlayers: [" + ", ".join(["B"] * 20_000) + "]\n",
         says="block B argument 's': a number, a string of at most 256 characters", seconds=3),
    Case("substitutions-multiplied", "input: [8]\nblocks:\n  B:\n    args: {s: " + "x" * 256
         + "}\n    layers: [{name: '" + "$s" * 50_000 + "', ReLU: ~}]\nlayers: [B]\n",
         says="more than 8 substitutions ($) in one string", seconds=3),
    Case("cubic-regex-in-a-quantity", OK + "budget: {params: '1" + " " * 3000 + "x'}\n",
         says="budget.params: cannot read '1 ", seconds=3),
    # Quadratic analysis: broadcasting N inputs is linear
    Case("add-of-10000-inputs", "input: [8]\nlayers:\n  - {name: r, ReLU: ~}\n"
         "  - {Add: ~, from: [" + ", ".join(["r"] * 10_000) + "]}\n",
         code=0, says="1 spec: 1 passed", seconds=4),
    # The YAML node limit applies while reading, and says what it is
    Case("2000000-lines-over-the-size-cap", "input: [8]\nlayers:\n" + "- ReLU\n" * 2_000_000,
         says="s.yaml: 14,000,019 bytes, more than the limit of 4,000,000 (--max-file-size)",
         seconds=3),
    Case("2000000-lines", "input: [8]\nlayers:\n" + "- ReLU\n" * 2_000_000,
         args=("check", "s.yaml", "--max-file-size", "100MB"),
         says="s.yaml:499997:3: the document has more than 500,000 YAML nodes",
         never=("alias bomb",), seconds=12),
    # Tracebacks: big integers, deep nesting, huge dims, batch beyond int64
    Case("int-of-5000-digits", "input: [" + "9" * 5000 + "]\nlayers: [ReLU]\n",
         says="s.yaml:1:9: an integer of 5,000 digits (at most 30)"),
    Case("int-of-5000-digits-in-expect", OK + "expect: {params: " + "9" * 5000 + "}\n",
         says="s.yaml:3:18: an integer of 5,000 digits"),
    Case("dims-10**400", f"input: [{10**400}]\nlayers: [ReLU]\n",
         says="an integer of 401 digits"),
    Case("dims-beyond-torch-storage", f"input: [{10**20}]\nlayers: [ReLU]\n",
         says="s.yaml:1:8: input 'input' [1, 100000000000000000000] has more than 2**60 "
              "elements"),
    Case("blocks-nested-400-deep", "input: [8]\nblocks:\n"
         + "".join(f"  B{i}: [B{i + 1}]\n" for i in range(400)) + "  B400: [ReLU]\nlayers: [B0]\n",
         says="s.yaml:52:9: blocks nested more than 50 deep"),
    Case("lists-nested-990-deep", OK + "description: " + "[" * 990 + "]" * 990 + "\n",
         says="s.yaml:3:113: YAML nested more than 100 deep"),
    Case("shapes-batch-10**20", OK, args=("shapes", "s.yaml", "--batch", str(10**20)),
         says="--batch"),
    Case("expect-batch-10**20", OK + f"expect: {{batch: {10**20}, params: 0}}\n",
         says="s.yaml:3:17: expect.batch must be an int from 1 to 2**63 - 1"),
    Case("huge-percentage", OK + "expect: {flops: 1e-30}\n", code=1,
         says="expect.flops: expected 1e-30 (1e-30), got 8 (+8, +8e+32%)"),
    # check accepts, torch refuses: refused by the analytic core, located
    Case("dropout-nan", "input: [8]\nlayers: [{Dropout: .nan}]\n",
         says="s.yaml:2:11: dropout_0: argument p: expected a number, got nan"),
    Case("stride-10**21", CONV1D % f"stride: {10**21}",
         says="s.yaml:3:55: conv1d_0: argument stride: values must fit in int64"),
    Case("padding-10**21", CONV1D % f"padding: {10**21}",
         says="s.yaml:3:56: conv1d_0: argument padding"),
    Case("layer-named-forward", "input: [8]\nlayers: [{name: forward, ReLU: ~}]\n",
         says="s.yaml:2:17: name 'forward' is an attribute of torch.nn.Module"),
    Case("layer-named-__class__", "input: [8]\nlayers: [{name: __class__, ReLU: ~}]\n",
         says="name '__class__' is an attribute of torch.nn.Module"),
    Case("block-instance-named-training", "input: [8]\nblocks: {B: [ReLU]}\n"
         "layers: [{name: training, B: ~}]\n", says="name 'training' is an attribute"),
    Case("input-named-parameters", "inputs: {parameters: [8]}\nlayers: [ReLU]\n",
         says="s.yaml:1:10: input name 'parameters' is an attribute of torch.nn.Module"),
    Case("block-input-named-self", "input: [8]\nblocks:\n  B: {inputs: [self], layers: [ReLU]}\n"
         "layers: [B]\n", says="block input 'self' is an attribute"),
    Case("name-with-trailing-newline", 'input: [8]\nlayers: [{name: "fc\\n", ReLU: ~}]\n',
         says="s.yaml:2:17: name 'fc\\n' must be an identifier"),
    # Wrong blame
    Case("outputs-listed-twice", "input: [8]\nlayers: [{name: r, ReLU: ~}]\noutputs: [r, r]\n",
         says="s.yaml:3:14: output 'r' is listed twice"),
    Case("dtype-float128", OK, args=("shapes", "s.yaml", "--dtype", "float128"),
         says="--dtype: unknown dtype 'float128'", never=("<spec>",)),
    # No tags at all; timestamps stay strings
    Case("tag-binary", OK + "description: !!binary aGk=\n",
         says="s.yaml:3:14: YAML tag 'tag:yaml.org,2002:binary' is not allowed"),
    Case("tag-int", "input: [!!int '3']\nlayers: [ReLU]\n",
         says="s.yaml:1:9: YAML tag 'tag:yaml.org,2002:int' is not allowed"),
    Case("timestamp-is-a-string", "name: 2024-01-01\n" + OK,
         args=("shapes", "s.yaml", "-f", "json"), code=0, says='"name": "2024-01-01"'),
    # Output that cannot be forged
    Case("rich-markup-in-name", 'name: "[/oops] x"\n' + OK, args=("shapes", "s.yaml"), code=0,
         says="[/oops] x  ·  input [1, 8]"),
    Case("rich-style-in-name", 'name: "[bold]b[/bold] :smile:"\n' + OK,
         args=("shapes", "s.yaml"), code=0, says="[bold]b[/bold] :smile:  ·"),
    Case("controls-and-bidi-in-name",
         'name: "a\\n::error file=README.md::x\\e[31m\\u202eb"\n' + OK,
         args=("shapes", "s.yaml"), code=0,
         says="a\\n::error file=README.md::x\\x1b[31m\\u202eb  ·  input",
         never=("\n::error", "\x1b", "\u202e")),
    Case("markdown-row-injection", 'name: "x\\n| injected | row |"\n' + OK,
         args=("shapes", "s.yaml", "-f", "markdown"), code=0,
         says="### x\\n\\| injected \\| row \\|", never=("\n| injected",)),
    Case("control-in-expect-value", OK + 'expect: {params: "5\\x1f ±10%"}\n', code=1,
         says="expect.params: expected 5\\x1f ±10% (4.5 to 5.5), got 0", never=("\x1f",)),
    # Training and fit: the new outputs and options
    Case("controls-in-name-fit", 'name: "a\\n::error x\\e[31m"\n' + OK,
         args=("fit", "s.yaml", "--memory", "1GB"), code=0,
         says="a\\n::error x\\x1b[31m: batch", never=("\n::error", "\x1b")),
    Case("controls-in-name-train", 'name: "a\\n::error x\\e[31m"\ninput: [8]\nlayers: [{Linear: 4}]\n',
         args=("shapes", "s.yaml", "--train"), code=0,
         says="a\\n::error x\\x1b[31m  ·", never=("\n::error", "\x1b")),
    Case("fit-memory-beyond-limits", OK, args=("fit", "s.yaml", "--memory", "1e99999999GB"),
         says="--memory: "),
    Case("checkpoint-control-chars", "input: [8]\nlayers: [{Linear: 4}]\n",
         args=("shapes", "s.yaml", "--train", "--checkpoint", "a\x1b[31m"),
         says="--checkpoint: 'a\\x1b[31m' names no", never=("\x1b",)),
    # Messages quote the offending token, never a whole file
    Case("long-token-quoted-in-part", "input: [8]\nlayers: [" + "x" * 1_000_000 + "]\n",
         says="s.yaml:2:10: unknown layer type 'xxxx", never=("x" * 1000,)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_spec(case: Case, tmp_path: Path):
    (tmp_path / "s.yaml").write_text(case.spec, encoding="utf-8")
    t0 = time.perf_counter()
    proc = netcalc(*case.args, cwd=tmp_path)
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == case.code, out[-2000:]
    assert "Traceback" not in out
    assert case.says in out, out[-2000:]
    for text in case.never:
        assert text not in out
    assert seconds < case.seconds * 3, f"{seconds:.1f} s"  # x3: CI machines share CPUs


# --------------------------------------------------------------------------- files
def _one_line_error(proc: subprocess.CompletedProcess, says: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and says in proc.stderr, proc.stderr


def test_fifo_and_devices_are_refused_not_read(tmp_path: Path):
    os.mkfifo(tmp_path / "f.yaml")
    for command in ("shapes", "check"):  # a FIFO without a writer would block a reader
        proc = netcalc(command, "f.yaml", cwd=tmp_path, timeout=10)
        assert proc.returncode == 2 and "f.yaml: not a regular file (a FIFO)" in proc.stdout + proc.stderr
    for device in ("/dev/zero", "/dev/urandom"):
        _one_line_error(netcalc("shapes", device, cwd=tmp_path),
                        f"{device}: not a regular file (a device)")


def test_reads_stop_at_the_cap_even_when_stat_says_0_bytes(tmp_path: Path):
    proc = netcalc("shapes", "/proc/self/maps", "--max-file-size", "100", cwd=tmp_path)
    _one_line_error(proc, "/proc/self/maps: more than the limit of 100 bytes (--max-file-size)")


def test_a_big_regular_file_is_refused_by_its_size(tmp_path: Path):
    with open(tmp_path / "big.yaml", "wb") as f:
        f.truncate(8 * 10**9)  # sparse: costs no disk
    _one_line_error(netcalc("shapes", "big.yaml", cwd=tmp_path),
                    "big.yaml: 8,000,000,000 bytes, more than the limit of 4,000,000")
    ok = netcalc("shapes", str(ROOT / "specs" / "lenet5.yaml"), "--max-file-size", "64MiB",
                 cwd=tmp_path)
    assert ok.returncode == 0


def test_check_does_not_follow_symbolic_links(tmp_path: Path):
    tree, outside = tmp_path / "specs", tmp_path / "outside"
    (tree / "sub").mkdir(parents=True)
    outside.mkdir()
    (tree / "ok.yaml").write_text(OK)
    (tree / "sub" / "b.yaml").write_text(OK)
    (outside / "x.yaml").write_text(OK)
    with open(outside / "huge.yaml", "wb") as f:
        f.truncate(8 * 10**9)
    (tree / "passwd.yaml").symlink_to("/etc/passwd")
    (tree / "huge.yaml").symlink_to(outside / "huge.yaml")
    (tree / "out").symlink_to(outside)
    (tree / "in").symlink_to("sub")
    proc = netcalc("check", "specs", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    for link in ("passwd.yaml", "huge.yaml", "out", "in"):
        assert f"  specs/{link}: a symbolic link: not followed" in proc.stdout
    assert "root:" not in proc.stdout and "PASS specs/ok.yaml" in proc.stdout
    assert proc.stdout.endswith("6 specs: 2 passed, 4 invalid (" + proc.stdout.split("(")[-1])

    proc = netcalc("check", "specs", "--follow-symlinks", cwd=tmp_path)
    for link in ("passwd.yaml", "huge.yaml", "out"):
        assert f"  specs/{link}: a symbolic link out of specs: not followed" in proc.stdout
    assert "PASS specs/in/b.yaml" in proc.stdout and "sub/b.yaml" not in proc.stdout  # once
    assert "root:" not in proc.stdout

    # `shapes` reads the one file it is given, links and all: the size cap still holds
    _one_line_error(netcalc("shapes", "specs/huge.yaml", cwd=tmp_path), "more than the limit")


def test_an_explicit_symbolic_link_is_reported_too(tmp_path: Path):
    (tmp_path / "a.yaml").write_text(OK)
    (tmp_path / "link.yaml").symlink_to("a.yaml")
    (tmp_path / "etc.yaml").symlink_to("/etc/hostname")
    proc = netcalc("check", "link.yaml", cwd=tmp_path)
    assert proc.returncode == 2 and "link.yaml: a symbolic link: not followed" in proc.stdout
    proc = netcalc("check", "link.yaml", "--follow-symlinks", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout
    proc = netcalc("check", "etc.yaml", "--follow-symlinks", cwd=tmp_path)
    assert proc.returncode == 2 and "a symbolic link out of its folder" in proc.stdout


def test_a_forged_file_name_cannot_start_a_workflow_command(tmp_path: Path):
    forged = "x\n::error file=README.md,line=1::forged\n.yaml"
    (tmp_path / forged).write_text("input: [8]\nlayers: [Nope]\n")
    (tmp_path / "::warning::y.yaml").write_text(OK)
    for fmt in ("text", "github"):
        proc = netcalc("check", ".", "--format", fmt, cwd=tmp_path)
        assert proc.returncode == 2
        for line in proc.stdout.splitlines():
            assert not line.lstrip().startswith("::") or line.startswith("::error file=x%0A"), line
        assert "\\n::error file=README.md" in proc.stdout or "%0A%3A%3Aerror" in proc.stdout


def test_junit_is_well_formed_for_any_file_name(tmp_path: Path):
    names = [b"bad\xff\xfe.yaml", b"esc\x1b[31m.yaml", b"unit\x1fsep.yaml"]
    for raw in names:
        (tmp_path / os.fsdecode(raw)).write_text(OK + 'expect: {params: "0\\x1f"}\n')
    (tmp_path / "inv.yaml").write_text("input: [8]\nlayers: [{name: \"a\\x1b\", ReLU: ~}]\n")
    proc = netcalc("check", ".", "--format", "junit", "--output", "out.xml", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    xml = (tmp_path / "out.xml").read_bytes()
    root = ET.fromstring(xml)  # raises if not well-formed
    assert root.get("tests") == "4" and b"\x1b" not in xml and b"\x1f" not in xml
    assert "bad\\udcff\\udcfe.yaml" in xml.decode("utf-8")
    stdout = netcalc("check", ".", "--format", "junit", cwd=tmp_path).stdout
    ET.fromstring(stdout.encode("utf-8"))


# --------------------------------------------------------------------------- limits per run
def test_per_run_caps_end_the_run_with_one_line(tmp_path: Path):
    for i in range(3):
        (tmp_path / f"s{i}.yaml").write_text(OK)
    _one_line_error(netcalc("check", ".", "--max-files", "2", cwd=tmp_path),
                    "more than 2 spec files (--max-files)")
    _one_line_error(netcalc("check", ".", "--max-seconds", "0", cwd=tmp_path),
                    "at the time limit (--max-seconds)")
    assert netcalc("check", ".", "--max-files", "3", cwd=tmp_path).returncode == 0


# --------------------------------------------------------------------------- pipes, signals
@pytest.fixture
def big_spec(tmp_path: Path) -> Path:
    path = tmp_path / "big.yaml"
    path.write_text("input: [8]\nlayers:\n" + "  - ReLU\n" * 2000)  # outputs > a pipe's 64 kB
    return path


def test_a_closed_pipe_ends_quietly(big_spec: Path):
    for fmt in ("table", "csv"):
        head = subprocess.Popen(["head", "-n", "2"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL)
        proc = netcalc("shapes", str(big_spec), "-f", fmt, cwd=big_spec.parent,
                       stdout=head.stdin, stderr=subprocess.PIPE, capture_output=False)
        head.stdin.close()
        head.wait()
        assert proc.returncode in (-signal.SIGPIPE, 0), proc.stderr  # 0: head was late
        assert proc.stderr == ""


def test_a_full_disk_is_one_line_and_exit_74(big_spec: Path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    for args in (["shapes", str(big_spec)], ["shapes", str(ROOT / "specs" / "lenet5.yaml")]):
        with open("/dev/full", "w") as full:
            proc = netcalc(*args, cwd=big_spec.parent, stdout=full, stderr=subprocess.PIPE,
                           capture_output=False)
        assert proc.returncode == 74
        assert proc.stderr == "netcalc: cannot write the output: No space left on device\n"


def test_ctrl_c_exits_130_quietly(tmp_path: Path):
    for i in range(50):  # half a minute of work: still running when Ctrl-C comes
        (tmp_path / f"s{i}.yaml").write_text("input: [8]\nlayers: [{ReLU: ~, repeat: 20000}]\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen([sys.executable, "-m", "netcalc", "check", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    time.sleep(2.0)  # past start-up, into the run
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130 and b"Traceback" not in err


# --------------------------------------------------------------------------- torch names
def test_reserved_names_cover_every_attribute_torch_and_the_builder_use():
    torch = pytest.importorskip("torch")
    from netcalc.torch.build import _RESERVED, Container

    assert set(dir(torch.nn.Module())) <= TORCH_MODULE
    assert _RESERVED | set(dir(Container)) <= RESERVED
    assert not NETCALC_MODULE & TORCH_MODULE and "self" in RESERVED


# --------------------------------------------------------------------------- hypothesis
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: raw YAML fragments an attacker would try, written as they would appear in a spec
NASTY = [
    "1e99999999", "-1e99999999", "1e-99999999", "'1G ±1e99999999%'", ".nan", ".inf", "-.inf",
    "9" * 5000, str(10**21), str(2**63), "-1", "0", "0x" + "f" * 40, "1:30", "2024-01-01",
    "!!binary aGk=", "!!int '3'", "!foo x", "&a [1, 2]", "*a", "*nope", "<<: {a: 1}",
    "[" * 200 + "]" * 200, "{" * 50 + "}" * 50, "'${a*a*a*a*a*a}'", "'${" + "9" * 150 + "}'",
    "'$nope'", "~", "''", "'\\x1b[31m'", '"\\u202e"', '"a\\nb"', "'[/oops]'", "forward",
    "__class__", "self", "training", "'fc\\n'", "[x, x, x]", "{a: 1, a: 2}", "=", "? [a]\n: 1",
]
SCALAR = st.one_of(st.sampled_from(NASTY), st.integers(-10**40, 10**40).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(
                       lambda x: ".nan" if x != x else ".inf" if x == float("inf")
                       else "-.inf" if x == float("-inf") else repr(x)),
                   st.text(st.characters(codec="utf-8"), max_size=12).map(json.dumps))
LAYER = st.sampled_from(["ReLU", "Linear", "Conv1d", "Dropout", "Add", "Concat", "B",
                         "MaxPool1d", "Flatten", "Reshape", "Embedding", "LSTM"])
KEY = st.sampled_from(["out_features", "out_channels", "kernel_size", "stride", "padding",
                       "p", "dim", "shape", "num_embeddings", "hidden_size", "a"])


@st.composite
def hostile_spec(draw) -> str:
    """A spec that is almost right, with hostile values where values go."""
    lines = [f"name: {draw(SCALAR)}"] if draw(st.booleans()) else []
    lines.append(f"input: [{draw(SCALAR)}, 8]" if draw(st.booleans()) else "input: [4, 8]")
    if draw(st.booleans()):
        lines += ["blocks:", "  B:", f"    args: {{a: {draw(SCALAR)}}}",
                  f"    layers: [{{{draw(LAYER)}: {{{draw(KEY)}: '$a'}}}}]"]
    lines.append("layers:")
    for i in range(draw(st.integers(1, 4))):
        entry = f"{draw(LAYER)}: {{{draw(KEY)}: {draw(SCALAR)}}}"
        extra = draw(st.sampled_from(["", f", name: {draw(SCALAR)}", f", repeat: {draw(SCALAR)}",
                                      f", from: [{draw(SCALAR)}]", ", from: [input, input]"]))
        lines.append(f"  - {{{entry}{extra}}}")
    for section in ("expect", "budget"):
        if draw(st.booleans()):
            lines.append(f"{section}: {{{draw(st.sampled_from(['params', 'macs', 'batch', 'output']))}"
                         f": {draw(SCALAR)}}}")
    return "\n".join(lines) + "\n"


@settings(max_examples=int(os.environ.get("NETCALC_HOSTILE_EXAMPLES", "120")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=hostile_spec())
def test_any_hostile_spec_ends_with_0_1_or_2_and_no_traceback(text, tmp_path, runner):
    from netcalc.cli import app

    path = tmp_path / "h.yaml"
    path.write_text(text, encoding="utf-8")
    for args in (["check", str(path), "--format", "junit"], ["shapes", str(path), "-f", "markdown"]):
        t0 = time.perf_counter()
        result = runner.invoke(app, args)
        assert time.perf_counter() - t0 < 10
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            text, result.exception)
        assert result.exit_code in (0, 1, 2), (text, result.output)
        assert "Traceback" not in result.output
        out = result.stdout + result.stderr
        assert "\x1b" not in out and "\u202e" not in out, text
        if args[0] == "check":
            ET.fromstring(result.stdout.encode("utf-8"))


def test_profile_and_crosscheck_tables_print_names_as_text():
    """The profile and cross-check renderers (typed results, no torch) escape every name
    and message they print: no new line, escape sequence, bidi override or rich markup."""
    from netcalc.hardware import Hardware, Roof
    from netcalc.memory import LayerBytes
    from netcalc.render.crosscheck import render_crosscheck
    from netcalc.render.profile import render_profile_table
    from netcalc.results import (
        MISMATCH, CheckRow, ConfigResult, CrossCheckResult, CrossCheckSummary, LayerTiming,
        PerLayer, ProfileOptions, ProfileResult, Stats,
    )

    bad = "a\n::error file=README.md::x\x1b[31m\u202e[bold]b[/bold]"
    shown = "a\\n::error file=README.md::x\\x1b[31m\\u202e[bold]b[/bold]"
    roof = Roof(macs_per_s=1e9, fraction_of_peak=0.5, fraction_of_roofline=0.5, bound="memory")
    layer = LayerTiming(bad, bad, 1, Stats([1e-3, 2e-3]), 10, LayerBytes(1, 2, 3), 1.0, roof)
    cfg = ConfigResult("cpu", 1, latency=Stats([1e-3, 2e-3]), macs=10, roof=roof,
                       per_layer=PerLayer(Stats([2e-3]), [layer], [bad], 0.0, 0.0, 0.0),
                       notes=[bad], error=bad)
    hw = Hardware("cpu", bad, "float32", 2, 1e9, 1e9, 1, 1, "2", 0.0)
    row = CheckRow(bad, bad, "params", 1, 2, MISMATCH)
    cc = CrossCheckSummary(ran=True, ok=False, rows=1, mismatches=[row])
    result = ProfileResult(bad, bad, ProfileOptions(), {}, {"cpu": hw}, [cfg],
                           [{"device": "cuda", "reason": bad}], cc, warnings=[bad])
    check = CrossCheckResult(bad, bad, 1, "cpu", "netcalc", [row], [], skipped=[bad])
    for out in (render_profile_table(result), render_crosscheck(check, "table")):
        assert shown in out
        for never in ("\n::error", "\x1b", "\u202e"):
            assert never not in out
