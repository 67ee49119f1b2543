"""`netcalc report` opened in headless Chromium (Debian's chromium + chromedriver, driven
by selenium): no console error, no network request, one table row per layer at the
chosen depth, every chart drawn, a screenshot in the test's tmp dir; hostile names as
text; the profile part; rendering without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

import netcalc
from netcalc.cli import app
from netcalc.render.html import render_html
from netcalc.render.view import collapse
from netcalc.textsafe import text

from conftest import ROOT, SPECS

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1280,2000")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Chromium and chromedriver are not installed")
    options = webdriver.ChromeOptions()
    for arg in ARGS:
        options.add_argument(arg)
    profile = tempfile.TemporaryDirectory()
    options.add_argument(f"--user-data-dir={profile.name}")
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    profile.cleanup()


def open_page(browser, path, shot):
    """Load the page; assert no console message, no fetched resource; save a screenshot."""
    browser.get(path.as_uri())
    assert browser.execute_script("return document.documentElement.dataset.drawn") == "1"
    assert browser.get_log("browser") == []
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def charts(browser) -> dict[str, int]:
    """Each chart's title -> the number of marks it drew (bars, lines, points)."""
    return browser.execute_script("""
        const out = {};
        document.querySelectorAll('.chart').forEach(c => {
          const svg = c.querySelector('svg');
          out[c.querySelector('h3').textContent] =
            svg ? svg.querySelectorAll('rect, polyline, circle').length : 0;
        });
        return out;""")


def fake_profile(report: netcalc.Report) -> dict:
    """The JSON that `netcalc profile --format json` writes for ``report``'s network,
    made with netcalc.results' own types and roofline (torch-free), with made-up timings
    (the report plots what it is given; timing itself is tested in test_profile.py):
    layer i takes (i + 1) ms on a device of 100 GFLOP/s and 10 GB/s."""
    from netcalc.hardware import Hardware, roofline
    from netcalc.memory import LayerBytes
    from netcalc.results import (ConfigResult, LayerTiming, PerLayer, ProfileOptions,
                                 ProfileResult, Stats)

    hw = Hardware("cpu", "Test CPU", "float32", 2, 1e11, 1e10, 1024, 2**28, "none", 0.0)
    layers = []
    for i, r in enumerate(report.layers):
        moved = LayerBytes(r.weight_bytes, r.activation_bytes, r.activation_bytes)
        seconds = (i + 1) / 1000
        layers.append(LayerTiming(r.name, r.type, 1, Stats([seconds]), r.macs, moved, 0.0,
                                  roofline(r.macs, moved.bytes_moved, seconds, hw)))
    per_layer = PerLayer(Stats([0.1]), layers, [], 0.0, 0.0, 0.0)
    result = ProfileResult(report.name, report.file, ProfileOptions(), {}, {"cpu": hw},
                           [ConfigResult("cpu", 1, per_layer=per_layer)])
    return json.loads(json.dumps(result.to_dict()))


@pytest.mark.parametrize("depth", [None, 2])
def test_resnet50_report_in_a_browser(browser, tmp_path, runner, depth):
    page = tmp_path / "report.html"
    args = ["report", str(SPECS / "resnet50.yaml"), "-o", str(page)]
    result = runner.invoke(app, args + (["--depth", str(depth)] if depth else []))
    assert result.exit_code == 0, result.output
    open_page(browser, page, tmp_path / "report.png")
    report = netcalc.analyze(SPECS / "resnet50.yaml")
    rows = collapse(report, depth)
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#layers tbody tr')].map(r => r.cells[0].textContent)")
    assert cells == [r.name for r in rows]
    drawn = charts(browser)
    assert set(drawn) == {"MACs per layer", "Params per layer", "Activation bytes per layer",
                          "Receptive field to output fc (input pixels, largest dim)",
                          "Inference: live activation bytes after each layer"}
    assert drawn["MACs per layer"] == sum(1 for r in rows if r.macs)
    assert all(drawn.values())
    nodes = browser.execute_script("return document.querySelectorAll('#graph svg g.node').length")
    assert nodes == len(rows) + 2  # every row, the input and the output


def test_table_sorts_and_filters(browser, tmp_path, runner):
    page = tmp_path / "report.html"
    assert runner.invoke(app, ["report", str(SPECS / "resnet18.yaml"), "-o", str(page)]).exit_code == 0
    open_page(browser, page, tmp_path / "report.png")
    report = netcalc.analyze(SPECS / "resnet18.yaml")
    macs = next(i for i, c in enumerate(browser.find_elements("css selector", "#layers th"))
                if c.text == "MACs")
    browser.find_elements("css selector", "#layers th")[macs].click()  # largest first
    first = browser.execute_script("return document.querySelector('#layers tbody tr').cells[0].textContent")
    assert first == max(report.layers, key=lambda r: r.macs).name
    box = browser.find_element("css selector", "#layers input")
    box.send_keys("downsample")
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#layers tbody tr')].filter(r => r.style.display !== 'none').length")
    assert shown == sum("downsample" in r.name for r in report.layers)


def test_training_report_with_a_profile(browser, tmp_path, runner):
    report = netcalc.analyze(SPECS / "lenet5.yaml")
    prof = tmp_path / "profile.json"
    prof.write_text(json.dumps(fake_profile(report)))
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(SPECS / "lenet5.yaml"), "-o", str(page), "--train",
                                 "--profile", str(prof)])
    assert result.exit_code == 0, result.output
    open_page(browser, page, tmp_path / "report.png")
    drawn = charts(browser)
    assert drawn["Saved for backward per layer (--train)"] > 0
    assert drawn["Training step: live bytes (forward, loss, backward, optimizer)"] == 1
    timed = sum(1 for r in report.layers if r.macs)
    assert drawn["cpu, batch 1: achieved FLOP/s per layer"] == timed + 1  # points + the roof


def test_profile_of_another_spec_or_run_is_refused(tmp_path, runner):
    prof = tmp_path / "profile.json"
    prof.write_text(json.dumps(fake_profile(netcalc.analyze(SPECS / "lenet5.yaml"))))
    spec = str(SPECS / "resnet18.yaml")
    out = str(tmp_path / "r.html")
    result = runner.invoke(app, ["report", spec, "-o", out, "--profile", str(prof)])
    assert result.exit_code == 2 and "profiles 'LeNet-5', not this spec's 'ResNet-18'" in result.output
    result = runner.invoke(app, ["report", str(SPECS / "lenet5.yaml"), "-o", out, "--profile",
                                 str(prof), "--profile-config", "3"])
    assert result.exit_code == 2 and "1 configuration(s)" in result.output
    prof.write_text("[1, 2")
    result = runner.invoke(app, ["report", spec, "-o", out, "--profile", str(prof)])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "not JSON" in result.output
    good = fake_profile(netcalc.analyze(SPECS / "lenet5.yaml"))
    hw = good["hardware"]["cpu"]
    broken = [{**good, "configs": {"a": 1}}, {**good, "configs": [7]}, {**good, "hardware": []},
              {**good, "hardware": {"cpu": {**hw, "peak_flops": "1e11"}}},
              {**good, "hardware": {"cpu": {**hw, "peak_bandwidth": -1}}},
              {**good, "name": 7}, {**good, "format_version": 2}, {**good, "kind": "shapes"},
              [good]]
    for data in broken:
        prof.write_text(json.dumps(data))
        result = runner.invoke(app, ["report", str(SPECS / "lenet5.yaml"), "-o", out,
                                     "--profile", str(prof)])
        assert result.exit_code == 2 and result.output.count("\n") == 1, (data, result.output)
    stranger = json.loads(json.dumps(good))
    stranger["configs"][0]["per_layer"]["layers"][0]["name"] = "conv9"  # another version
    prof.write_text(json.dumps(stranger))
    result = runner.invoke(app, ["report", str(SPECS / "lenet5.yaml"), "-o", out, "--profile",
                                 str(prof)])
    assert result.exit_code == 2 and "its layer 'conv9' is not in this spec" in result.output
    # NaN and infinite timings are left out, not written into the page
    cfg = good["configs"][0]["per_layer"]["layers"][0]
    cfg["flops_per_s"] = float("nan")
    good["configs"][0]["per_layer"]["layers"][1]["intensity_flop_per_byte"] = float("inf")
    prof.write_text(json.dumps(good))
    result = runner.invoke(app, ["report", str(SPECS / "lenet5.yaml"), "-o", out, "--profile",
                                 str(prof)])
    assert result.exit_code == 0, result.output


def test_hostile_names_are_text_in_the_page(browser, tmp_path):
    from test_draw import HOSTILE, hostile_report

    report = hostile_report()
    page = tmp_path / "report.html"
    page.write_text(render_html(report, None, None, "graph not drawn in this test"))
    open_page(browser, page, tmp_path / "report.png")
    assert browser.execute_script("return document.scripts.length") == 2  # data + ours
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#layers tbody tr')].map(r => r.cells[0].textContent)")
    assert cells == [text(n) for n in HOSTILE]
    title = browser.execute_script("return document.querySelector('header h1').textContent")
    assert title == text(report.name) and title.startswith("<script>alert(2)</script>")
    script = (ROOT / "src/netcalc/render/assets/report.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script  # the script sets text only as textContent


def test_hostile_spec_and_file_name_through_the_cli(browser, tmp_path, runner):
    from test_draw import HOSTILE_SPEC

    spec = tmp_path / "<img src=x onerror=alert(3)>\n.yaml"
    spec.write_text(HOSTILE_SPEC)
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(spec), "-o", str(page)])
    assert result.exit_code == 0, result.output
    open_page(browser, page, tmp_path / "report.png")
    assert browser.execute_script("return document.images.length") == 0
    header = browser.execute_script("return document.querySelector('header p').textContent")
    assert "<img src=x onerror=alert(3)>\\n.yaml" in header
    svg_title = browser.execute_script("return document.querySelector('#graph svg text').textContent")
    assert svg_title.startswith("<script>alert(2)</script>")


def test_report_renders_without_torch(tmp_path):
    """With only the core installed: torch cannot be imported, the page still renders,
    profile included."""
    prof = tmp_path / "profile.json"
    prof.write_text(json.dumps(fake_profile(netcalc.analyze(SPECS / "lenet5.yaml"))))
    code = ("import sys; sys.modules['torch'] = None; sys.argv = ['netcalc', 'report', "
            f"{str(SPECS / 'lenet5.yaml')!r}, '-o', 'r.html', '--profile', {str(prof)!r}]; "
            "from netcalc.cli import main; main()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=60, env={**os.environ,
                                                         "PYTHONPATH": str(ROOT / "src")})
    assert done.returncode == 0, done.stderr
    assert 'id="roofline-chart"' in (tmp_path / "r.html").read_text()


def test_receptive_field_growth_follows_the_widest_path():
    """report.rf_growth: a path of the graph from an input to each output, whose fields
    are the rows' own, growing, and wider at each merge than any other input's."""
    report = netcalc.analyze(SPECS / "resnet50.yaml")
    rows = {r.name: r for r in report.layers}
    path = report.rf_growth["fc"]
    assert [n for n, _ in path][-1] == "fc" and path[0][0] == "conv1"
    assert all(rf == rows[n].rf for n, rf in path)
    graph = report.graph
    for (prev, _), (name, _) in zip(path, path[1:]):
        sources = [s.node for s in graph.by_name[name].sources]
        assert prev in sources
        others = [rows[s].rf for s in sources if s != prev and s in rows]
        size = max(d.size for d in rows[prev].rf.dims) if not rows[prev].rf.global_ else None
        assert all(size is None or o.global_ or max(d.size for d in o.dims) <= size
                   for o in others)
    sizes = [max(d.size for d in rf.dims) for _, rf in path if not rf.global_]
    assert sizes == sorted(sizes) and sizes[-1] == 427  # derived in specs/resnet50.yaml, test_specs.py
    assert "downsample" not in " ".join(n for n, _ in path)  # 1x1 shortcuts are narrower
    # a token model has no spatial field: nothing to show
    assert netcalc.analyze(SPECS / "gpt2.yaml").rf_growth == {}
    # several outputs: a path each
    assert set(netcalc.analyze(SPECS / "multitask_resnet18.yaml").rf_growth) == {
        "attributes", "landmarks"}


def test_llama_page_stays_small(tmp_path, runner):
    """707 layers: the graph folds its repeat groups and is inlined once; the page
    stays under 2 MB (issue 14)."""
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(SPECS / "llama2_7b.yaml"), "-o", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert len(html.encode()) <= 2_000_000 and html.count("<svg") == 1
    assert "repeat groups folded after their first instance" in html


def test_a_network_without_layers_still_renders(browser, tmp_path, runner):
    """`repeat: 0` can remove every layer: the output is the input itself."""
    spec = tmp_path / "empty.yaml"
    spec.write_text("input: [8]\nlayers:\n  - {ReLU: ~, repeat: 0}\n")
    page = tmp_path / "report.html"
    result = runner.invoke(app, ["report", str(spec), "-o", str(page)])
    assert result.exit_code == 0, result.output
    open_page(browser, page, tmp_path / "report.png")
    assert browser.execute_script("return document.querySelectorAll('#layers tbody tr').length") == 0
    edges = browser.execute_script("return document.querySelectorAll('#graph svg g.edge').length")
    assert edges == 1  # input -> output
