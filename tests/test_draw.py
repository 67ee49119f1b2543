"""`netcalc draw` and the static plots: DOT that Graphviz's `dot` accepts, SVG that
parses as XML and names every layer, folding of big graphs, hostile names as text,
and the one-line exits without `dot` or matplotlib."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

import netcalc
from netcalc.analysis import analyze_graph
from netcalc.cli import app
from netcalc.graph import Ref
from netcalc.render.dot import NODE_LIMIT, DotError, picture, run_dot, to_dot
from netcalc.render.view import collapse
from netcalc.textsafe import text

from conftest import ROOT, SPECS

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = ["<script>alert(1)</script>", "say \"hi\" & 'bye'", "two\nlines",
           "\u202eevil\u202c", "back\\slash\\N"]
HOSTILE_SPEC = """\
name: "<script>alert(2)</script> \\"q\\" \\u202e"
input: [3, 8, 8]
layers:
  - {name: a, Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}
  - {name: b, ReLU: ~}
  - {name: c, Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}, from: a}
  - {name: d, Add: ~, from: [b, c]}
  - {name: e, Flatten: ~}
outputs: [d, e]
"""


def hostile_report() -> netcalc.Report:
    """A report whose layers carry hostile names (the spec format allows only
    identifiers, an importer or the Python API may not): renamed in the graph, then
    analysed, so every renderer sees them everywhere a name goes."""
    graph = netcalc.build(netcalc.parse(HOSTILE_SPEC, "t.yaml"), 1)
    names = {n.name: HOSTILE[i] for i, n in enumerate(graph.nodes)}
    for n in graph.nodes:
        n.name = names[n.name]
        n.sources = [Ref(names.get(s.node, s.node), s.out) for s in n.sources]
    graph.by_name = {n.name: n for n in graph.nodes}
    graph.outputs = [(names[o], Ref(names[r.node], r.out)) for o, r in graph.outputs]
    return analyze_graph(graph)


def svg_texts(svg: bytes) -> list[str]:
    root = ET.fromstring(svg)  # raises unless well-formed XML
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_svg_at_full_depth_parses_and_names_every_layer(tmp_path, runner):
    out = tmp_path / "net.svg"
    result = runner.invoke(app, ["draw", str(SPECS / "resnet18.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    texts = set(svg_texts(out.read_bytes()))
    report = netcalc.analyze(SPECS / "resnet18.yaml")
    assert {r.name for r in report.layers} <= texts
    assert {"Conv2d", "[1, 64, 56, 56]", "layer1.0: Basic", "layer1: Basic×2"} <= texts  # type, shape, clusters


def test_dot_text_is_accepted_by_dot_with_every_option(tmp_path, runner):
    out = tmp_path / "net.dot"
    result = runner.invoke(app, ["draw", str(SPECS / "multitask_resnet18.yaml"), "-o", str(out),
                                 "--depth", "2", "--rankdir", "LR", "--params", "--macs"])
    assert result.exit_code == 0, result.output
    dot = out.read_text()
    assert "rankdir=LR" in dot
    texts = svg_texts(run_dot(dot, "svg"))
    report = netcalc.analyze(SPECS / "multitask_resnet18.yaml")
    rows = collapse(report, 2)
    assert {r.name for r in rows} <= set(texts)
    assert sum(t.startswith("params ") for t in texts) == sum(1 for r in rows if r.params)
    assert sum(t.startswith("MACs ") for t in texts) == sum(1 for r in rows if r.macs)
    # both outputs are drawn as their own nodes; merges (the residual Adds) are shaded
    assert {"attributes", "landmarks"} <= set(texts)
    pic = picture(report)
    merges = {i for i in range(len(pic.rows)) if len({s for s, d, _ in pic.edges if d == i}) > 1}
    assert merges == {i for i, r in enumerate(pic.rows) if r.type == "Add"}
    assert to_dot(report).count('fillcolor="#fff4d6"') == len(merges)


def test_png_is_a_png(tmp_path, runner):
    out = tmp_path / "net.png"
    result = runner.invoke(app, ["draw", str(SPECS / "lenet5.yaml"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_edges_carry_the_tensor_shapes():
    report = netcalc.analyze(SPECS / "lenet5.yaml")
    pic = picture(report)
    shapes = {r.name: r.shape for r in report.layers}
    for src, dst, label in pic.edges:
        if isinstance(src, int):
            assert label == "[" + ", ".join(map(str, shapes[pic.rows[src].name])) + "]"
    assert len(pic.edges) == len(report.layers) + 1  # a chain: input -> ... -> output


def test_big_graphs_fold_repeat_groups_and_keep_the_sums():
    report = netcalc.analyze(SPECS / "llama2_7b.yaml")
    assert len(report.layers) > NODE_LIMIT
    pic = picture(report)
    names = [r.name for r in pic.rows]
    assert len(pic.rows) <= NODE_LIMIT and pic.folded_repeats
    assert "blocks.1-31" in names and any(n.startswith("blocks.0.") for n in names)
    assert sum(r.params for r in pic.rows) == report.totals.params
    assert sum(r.macs for r in pic.rows) == report.totals.macs
    texts = svg_texts(run_dot(to_dot(report), "svg"))
    assert "Decoder ×31" in texts and any("repeat groups folded" in t for t in texts)


def test_fold_lowers_the_depth_when_repeats_are_not_enough():
    report = netcalc.analyze(SPECS / "resnet50.yaml")
    pic = picture(report, limit=20)
    assert len(pic.rows) <= 20 and pic.depth == 1
    assert sum(r.macs for r in pic.rows) == report.totals.macs


def test_hostile_names_are_text_in_dot_and_svg():
    report = hostile_report()
    dot = to_dot(report)
    for line in dot.splitlines():  # no name can add a line or end a quoted string early
        assert "\u202e" not in line and "<script>" not in line.split('label="')[0]
    texts = svg_texts(run_dot(dot, "svg"))
    for name in HOSTILE:
        assert text(name) in texts  # visible escapes: \n, \u202e; quotes and < as text
    assert any(t.startswith("<script>alert(2)</script>") for t in texts)  # the title
    assert not any("\n" in t or "\u202e" in t for t in texts)


def _without(tool: str, tmp_path) -> dict[str, str]:
    """An environment whose PATH has python but not ``tool``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(sys.executable, bin_dir / "python")
    assert tool != "python"
    return {**os.environ, "PATH": str(bin_dir), "PYTHONPATH": str(ROOT / "src")}


def test_without_dot_draw_exits_2_and_report_still_renders(tmp_path):
    env = _without("dot", tmp_path)
    svg = tmp_path / "net.svg"
    done = subprocess.run([sys.executable, "-m", "netcalc", "draw", str(SPECS / "lenet5.yaml"),
                           "-o", str(svg)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and not svg.exists()
    assert done.stderr.count("\n") == 1 and "apt-get install graphviz" in done.stderr
    page = tmp_path / "r.html"
    done = subprocess.run([sys.executable, "-m", "netcalc", "report", str(SPECS / "lenet5.yaml"),
                           "-o", str(page)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    html = page.read_text()
    assert "Graph left out: Graphviz" in html and "<svg" not in html


def test_dot_runs_under_a_timeout(tmp_path, monkeypatch):
    slow = tmp_path / "bin"
    slow.mkdir()
    (slow / "dot").write_text("#!/bin/sh\nexec /bin/sleep 30\n")
    (slow / "dot").chmod(0o755)
    monkeypatch.setenv("PATH", str(slow))
    with pytest.raises(DotError, match="more than 0.5 s"):
        run_dot("digraph {}", "svg", timeout=0.5)


def test_draw_refuses_unknown_formats_and_options(tmp_path, runner):
    spec = str(SPECS / "lenet5.yaml")
    for args, message in ((["-o", str(tmp_path / "x.jpg")], "--output: unknown picture format"),
                          (["-o", str(tmp_path / "x.svg"), "--rankdir", "BT"], "--rankdir")):
        result = runner.invoke(app, ["draw", spec, *args])
        assert result.exit_code == 2 and result.output.startswith(message), result.output


def test_shapes_plot_writes_the_cost_bars(tmp_path, runner):
    pytest.importorskip("matplotlib")
    out = tmp_path / "costs.png"
    result = runner.invoke(app, ["shapes", str(SPECS / "resnet18.yaml"), "--depth", "2",
                                 "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    spec = tmp_path / "hostile.yaml"  # mathtext in a name is text, not markup nor an error
    spec.write_text(HOSTILE_SPEC.replace("name: \"", "name: \"$\\\\frac{$ "))
    assert netcalc.load(spec).name.startswith("$\\frac{$ <script>")
    result = runner.invoke(app, ["shapes", str(spec), "--plot", str(out)])
    assert result.exit_code == 0, result.output


def test_profile_plot_draws_every_run_under_its_roofs(tmp_path):
    pytest.importorskip("matplotlib")
    from netcalc.render.plots import PlotError, roofline_plot
    from netcalc.results import load_profile

    from test_report import fake_profile

    out = tmp_path / "roofline.png"
    profile = load_profile(fake_profile(netcalc.analyze(SPECS / "lenet5.yaml")))
    roofline_plot(profile, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    profile.configs[0].per_layer = None  # a run without --per-layer: nothing to plot
    with pytest.raises(PlotError, match="no run with per-layer timings"):
        roofline_plot(profile, tmp_path / "none.png")


@pytest.mark.parametrize("command", ["shapes", "profile"])
def test_plot_without_matplotlib_is_one_line(command, tmp_path):
    code = ("import sys; sys.modules['matplotlib'] = None; sys.argv = ['netcalc', "
            f"'{command}', {str(SPECS / 'lenet5.yaml')!r}, '--plot', 'x.png']; "
            "from netcalc.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, env={**os.environ,
                                                         "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 2
    assert done.stderr == "--plot needs matplotlib: pip install 'netcalc-nn[plots]'\n"
    assert not (tmp_path / "x.png").exists()


def test_max_nodes_draws_every_layer_of_a_big_graph(tmp_path, runner):
    out = tmp_path / "net.dot"
    spec = str(SPECS / "gpt2.yaml")
    assert runner.invoke(app, ["draw", spec, "-o", str(out), "--max-nodes", "300"]).exit_code == 0
    report = netcalc.analyze(SPECS / "gpt2.yaml")
    assert out.read_text().count("\\nLinear\\n") == sum(r.type == "Linear" for r in report.layers)


def test_a_graph_too_big_to_fold_is_refused_not_laid_out(tmp_path, runner):
    spec = tmp_path / "chain.yaml"
    spec.write_text("input: [8]\nlayers:\n" + "  - ReLU\n" * 300)
    result = runner.invoke(app, ["draw", str(spec), "-o", str(tmp_path / "x.svg")])
    assert result.exit_code == 2
    assert result.output == "300 nodes after folding every block: more than --max-nodes 250\n"
    page = tmp_path / "r.html"
    assert runner.invoke(app, ["report", str(spec), "-o", str(page)]).exit_code == 0
    assert "Graph left out: 300 nodes" in page.read_text()


def test_any_hostile_spec_draws_or_fails_in_one_line(tmp_path, runner, monkeypatch):
    """The hostile-spec generator of test_hostile.py through `draw` (DOT) and `report`
    (without dot: the layout is tested above): exit 0 or 2, no traceback, and nothing
    that a name could smuggle (controls, bidi overrides) in what is written."""
    from hypothesis import HealthCheck, given, settings

    from test_hostile import hostile_spec

    monkeypatch.setenv("PATH", "")

    @settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(spec=hostile_spec())
    def run(spec: str) -> None:
        path = tmp_path / "h.yaml"
        path.write_text(spec, encoding="utf-8")
        for out in ("x.dot", "x.html"):
            target = tmp_path / out
            target.unlink(missing_ok=True)
            command = "draw" if out.endswith("dot") else "report"
            result = runner.invoke(app, [command, str(path), "-o", str(target)])
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                spec, result.exception)
            assert result.exit_code in (0, 2) and "Traceback" not in result.output, spec
            if result.exit_code == 0:
                written = target.read_text(encoding="utf-8")
                assert "\x1b" not in written and "\u202e" not in written, spec

    run()
