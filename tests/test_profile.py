"""`netcalc profile`: structure and invariants of the timing engine, never timings.

Tiny specs and tiny repeat counts keep this fast. The calibration is seeded into a
per-test cache (NETCALC_CACHE_DIR) so no test pays for a real GEMM/copy benchmark,
except the one that checks a quick calibration's shape. CUDA paths run only where
CUDA is available.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from netcalc.cli import app  # noqa: E402
from netcalc.render.profile import (  # noqa: E402
    human_time, make_progress, render_profile_json, render_profile_table,
)
from netcalc.torch import calibrate, hardware  # noqa: E402
from netcalc.torch import profile as prof  # noqa: E402
from netcalc.results import (  # noqa: E402
    FORMAT_VERSION, MISMATCH, CheckRow, CrossCheckSummary, load_profile,
)
from netcalc.torch.hardware import Hardware, roofline  # noqa: E402
from netcalc.torch.profile import (  # noqa: E402
    Interrupted, LayerClock, ProfileError, ProfileOptions, Stats, layer_bytes, measure,
    parse_batches, profile_module, profile_spec, resolve_devices,
)

pytestmark = pytest.mark.torch
CUDA = torch.cuda.is_available()
def needs_cuda(test):
    return pytest.mark.cuda(pytest.mark.skipif(not CUDA, reason="needs a CUDA device")(test))


def no_cuda(test):
    return pytest.mark.cuda(pytest.mark.skipif(CUDA, reason="checks the behaviour without CUDA")(test))

TINY = """\
name: Tiny
input: [3, 8, 8]
layers:
  - {name: conv, Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}}
  - {name: bn, BatchNorm2d: ~}
  - {name: act, ReLU: ~}
  - {name: pool, AdaptiveAvgPool2d: 1}
  - {name: flat, Flatten: ~}
  - {name: fc, Linear: 5}
"""

BRANCHY = """\
name: Branchy
input: [4, 6, 6]
layers:
  - {name: a, Conv2d: {out_channels: 4, kernel_size: 1}}
  - {name: b, Conv2d: {out_channels: 4, kernel_size: 3, padding: 1}, from: input}
  - {name: sum, Add: ~, from: [a, b]}
  - {name: cat, Concat: ~, from: [sum, input]}
"""

FAST = ["--repeat", "2", "--warmup", "1"]


@pytest.fixture(autouse=True)
def seeded_cache(tmp_path, monkeypatch):
    """A cache holding this machine's calibration (fake figures) for every dtype."""
    monkeypatch.setenv("NETCALC_CACHE_DIR", str(tmp_path / "cache"))
    entries = {}
    for dtype in ("float32", "float16", "bfloat16"):
        hw = Hardware(device="cpu", name=hardware.cpu_name(), dtype=dtype,
                      threads=torch.get_num_threads(), peak_flops=100e9, peak_bandwidth=20e9,
                      gemm_n=1024, copy_bytes=1 << 28, torch_version=torch.__version__,
                      measured_at=0.0)
        d = hw.to_dict()
        for k in ("cached", "peak_macs", "ridge_flop_per_byte", "ridge_mac_per_byte"):
            d.pop(k)
        entries[hardware.cache_key("cpu", dtype)] = d
    hardware._write_cache(hardware.cache_dir() / hardware.CACHE_FILE, entries)
    return tmp_path / "cache"


def TINY_PATH(tmp_path):  # noqa: N802
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


@pytest.fixture
def tiny(tmp_path):
    return TINY_PATH(tmp_path)


def fast_options(**kw) -> ProfileOptions:
    base = dict(device="cpu", batches=(1, 2), warmup=1, repeat=2)
    base.update(kw)
    return ProfileOptions(**base)


# --------------------------------------------------------------------- statistics
def test_stats_match_the_standard_definitions():
    import statistics

    xs = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    s = Stats(xs, number=4)
    assert s.median == statistics.median(xs)
    assert s.min == 1.0 and s.max == 10.0 and s.runs == 6 and s.calls == 24
    q = statistics.quantiles(xs, n=4, method="inclusive")  # numpy's linear interpolation
    assert math.isclose(s.q1, q[0]) and math.isclose(s.q3, q[2])
    assert math.isclose(s.iqr, q[2] - q[0])
    assert math.isclose(s.total, sum(xs) * 4)
    assert Stats([2.0]).iqr == 0.0


def test_measure_takes_exactly_repeat_blocks_of_the_estimated_size():
    calls = []
    st = measure(lambda: calls.append(1), "cpu", repeat=3)
    assert st.runs == 3 and st.number >= 1
    assert all(t > 0 for t in st.times)
    # a block of a trivial function is grown until it is long enough to time
    assert st.number > 1


def test_measure_min_time_runs_until_enough_was_measured():
    st = measure(lambda: sum(range(2000)), "cpu", min_time=0.02)
    assert st.total >= 0.02 and st.runs >= 2


def test_measure_ctrl_c_keeps_the_blocks_taken():
    n = {"calls": 0}

    def fn():
        n["calls"] += 1
        if n["calls"] > 40:
            raise KeyboardInterrupt
        time.sleep(0.001)

    with pytest.raises(Interrupted) as info:
        measure(fn, "cpu", min_time=100, number=1)
    assert info.value.partial is not None and info.value.partial.runs >= 30


def _hooks_left(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_time_layers_takes_repeat_single_forwards_after_warm_up():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(4, 8)
    forwards = []
    model.register_forward_pre_hook(lambda m, a: forwards.append(1))
    with torch.inference_mode():
        hooked, clock = prof.time_layers(model, lambda: model(x), ["0", "1", "2", "nope"], "cpu",
                                         warmup=2, repeat=3, min_time=100)
    assert len(forwards) == 2 + 3  # warm-up forwards, then one forward per sample
    assert hooked.runs == 3 and hooked.number == 1 and all(t > 0 for t in hooked.times)
    # the warm-up's samples were dropped: one per timed forward, each inside its forward
    assert {n: len(v) for n, v in clock.samples.items()} == {"0": 3, "1": 3, "2": 3}
    assert len(clock.run_totals) == 3
    assert all(0 < s <= t for s, t in zip(clock.run_totals, hooked.times))
    assert _hooks_left(model) == 1  # only this test's own hook


@pytest.mark.parametrize("stop_at, runs", [(1, None), (2 + 5, 4)])
def test_time_layers_ctrl_c_keeps_the_forwards_taken_and_removes_hooks(stop_at, runs):
    """Ctrl-C in the warm-up (forward 1): nothing measured; in the 5th timed forward
    (after 2 warm-up forwards): the 4 finished forwards are kept."""
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU())
    x = torch.randn(4, 8)
    n = {"forwards": 0}

    def fn():
        n["forwards"] += 1
        if n["forwards"] == stop_at:
            raise KeyboardInterrupt
        return model(x)

    with pytest.raises(Interrupted) as info:
        prof.time_layers(model, fn, ["0", "1"], "cpu", warmup=2, repeat=None, min_time=100)
    partial = info.value.partial
    assert (partial.runs if partial is not None else None) == runs
    if partial is not None:
        assert partial.number == 1
    assert _hooks_left(model) == 0


def test_layer_clock_times_each_module_and_removes_its_hooks():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    x = torch.randn(4, 8)
    clock = LayerClock({"0": model[0], "2": model[2]}, "cpu")
    with torch.inference_mode():
        for _ in range(3):
            model(x)
            clock.collect()
    clock.remove()
    assert set(clock.samples) == {"0", "2"}
    assert all(len(v) == 3 and all(t > 0 for t in v) for v in clock.samples.values())
    assert not model[0]._forward_hooks and not model[0]._forward_pre_hooks


# ----------------------------------------------------------------- hardware, roofline
def test_roofline_classifies_by_the_ridge_point():
    hw = Hardware("cpu", "x", "float32", 2, peak_flops=100e9, peak_bandwidth=10e9, gemm_n=1,
                  copy_bytes=1, torch_version="", measured_at=0)
    assert hw.ridge == 10  # FLOP per byte
    # 1e9 MACs over 1e8 bytes: 20 FLOP/B > 10 -> compute-bound
    r = roofline(10**9, 10**8, 0.1, hw)
    assert r.bound == "compute"
    assert math.isclose(r.flops_per_s, 2e10) and math.isclose(r.fraction_of_peak, 0.2)
    assert math.isclose(r.intensity_mac_per_byte, 10)
    assert math.isclose(r.fraction_of_roofline, 0.2)
    # 1e6 MACs over 1e8 bytes: 0.02 FLOP/B -> memory-bound, ceiling 0.02 * 10 GB/s
    r = roofline(10**6, 10**8, 0.1, hw)
    assert r.bound == "memory"
    assert math.isclose(r.fraction_of_roofline, (2e6 / 0.1) / (0.02 * 10e9))
    assert math.isclose(r.fraction_of_bandwidth, 1e9 / 10e9)
    # no MACs at all (an activation): memory-bound, judged by bandwidth
    r = roofline(0, 10**6, 1e-3, hw)
    assert r.bound == "memory" and math.isclose(r.fraction_of_roofline, 0.1)
    assert roofline(5, 5, 1.0, None).bound is None


def test_calibration_is_cached_per_device_and_dtype(monkeypatch, seeded_cache):
    calls = {"gemm": 0, "copy": 0}

    def gemm(device, dtype, **kw):
        calls["gemm"] += 1
        return 1e12, 4096

    def copy(device, dtype, **kw):
        calls["copy"] += 1
        return 1e11, 1 << 28

    monkeypatch.setattr(calibrate, "measure_gemm", gemm)
    monkeypatch.setattr(calibrate, "measure_copy", copy)
    (seeded_cache / hardware.CACHE_FILE).unlink()
    first = hardware.calibrate("cpu", "float32")
    assert not first.cached and calls == {"gemm": 1, "copy": 1}
    again = hardware.calibrate("cpu", "float32")
    assert again.cached and again.peak_flops == 1e12 and calls["gemm"] == 1
    hardware.calibrate("cpu", "float32", force=True)
    assert calls["gemm"] == 2
    hardware.calibrate("cpu", "bfloat16")  # another dtype: another entry
    assert calls["gemm"] == 3
    data = json.loads((seeded_cache / hardware.CACHE_FILE).read_text())
    assert len(data["entries"]) == 2 and data["version"] == hardware.CACHE_VERSION


def test_quick_calibration_measures_positive_limits():
    hw = hardware.calibrate("cpu", "float32", quick=True)
    assert hw.peak_flops > 0 and hw.peak_bandwidth > 0 and hw.gemm_n >= 256 and not hw.cached
    d = hw.to_dict()
    assert math.isclose(d["ridge_flop_per_byte"], hw.peak_flops / hw.peak_bandwidth)


# ------------------------------------------------------------------- options, devices
def test_parse_batches():
    assert parse_batches("1,8,32") == (1, 8, 32)
    assert parse_batches("8, 8,1") == (8, 1)
    for bad in ("0", "x", "", "1,-2"):
        with pytest.raises(ProfileError):
            parse_batches(bad)


@no_cuda
def test_devices_without_cuda():
    assert resolve_devices("cpu") == (["cpu"], [])
    devices, skipped = resolve_devices("all")
    assert devices == ["cpu"] and skipped[0]["device"] == "cuda"
    assert "CUDA is not available" in skipped[0]["reason"]
    with pytest.raises(ProfileError, match="CUDA is not available"):
        resolve_devices("cuda")


# --------------------------------------------------------------------- the engine
def test_profile_spec_structure_and_invariants(tiny):
    result = profile_spec(tiny, fast_options())
    d = result.to_dict()
    json.loads(render_profile_json(result))  # strict JSON: no NaN/inf
    assert d["kind"] == "profile" and d["name"] == "Tiny" and d["dtype"] == "float32"
    assert d["environment"]["threads"] >= 1 and d["environment"]["torch_version"]
    assert d["crosscheck"]["ran"] and d["crosscheck"]["ok"], d["crosscheck"]
    assert d["hardware"]["cpu"]["cached"] and d["hardware"]["cpu"]["peak_flops"] == 100e9
    assert [(c["device"], c["batch"], c["status"]) for c in d["configs"]] == \
        [("cpu", 1, "ok"), ("cpu", 2, "ok")]
    names = ["conv", "bn", "act", "pool", "flat", "fc"]
    for c in d["configs"]:
        lat = c["latency"]
        assert lat["runs"] == 2 and lat["number"] >= 1 and len(lat["times_s"]) == 2
        assert 0 < lat["min_s"] <= lat["median_s"] <= lat["max_s"] and lat["iqr_s"] >= 0
        assert c["throughput_samples_per_s"] > 0
        assert c["macs"] > 0
        assert c["bound"] in ("compute", "memory") and c["fraction_of_peak"] > 0
        mem = c["memory"]
        assert mem["analytic"]["total_bytes"] == (mem["analytic"]["weight_bytes"]
                                                  + mem["analytic"]["buffer_bytes"]
                                                  + mem["analytic"]["peak_activation_bytes"])
        assert mem["measured"]["peak_rss_growth_bytes"] >= 0
        pl = c["per_layer"]
        assert [l["name"] for l in pl["layers"]] == names and pl["untimed"] == []
        assert all(l["median_s"] > 0 and l["min_s"] > 0 for l in pl["layers"])
        assert math.isclose(sum(l["share"] for l in pl["layers"]), 1.0)
        assert pl["hooked"]["runs"] == 2
        assert math.isclose(pl["overhead_s"], pl["hooked"]["median_s"] - lat["median_s"])
        fc = pl["layers"][-1]
        assert fc["macs"] == c["batch"] * 4 * 5
        assert fc["weight_bytes"] == (4 * 5 + 5) * 4
        assert fc["input_bytes"] == c["batch"] * 4 * 4 and fc["output_bytes"] == c["batch"] * 5 * 4
        assert fc["bytes_moved"] == fc["weight_bytes"] + fc["input_bytes"] + fc["output_bytes"]
        assert math.isclose(fc["intensity_mac_per_byte"], fc["macs"] / fc["bytes_moved"])
    assert not d["interrupted"] and d["skipped"] == []


def test_layer_bytes_follow_the_graph(tmp_path):
    import netcalc

    report = netcalc.analyze(netcalc.parse(BRANCHY, "b.yaml"), batch=2, dtype="float16")
    b = layer_bytes(report)
    act = 2 * 4 * 6 * 6 * 2  # one 4@6x6 map at float16, batch 2
    assert b["a"].input_bytes == act and b["a"].output_bytes == act
    assert b["sum"].input_bytes == 2 * act and b["sum"].weight_bytes == 0
    assert b["cat"].input_bytes == 2 * act and b["cat"].output_bytes == 2 * act
    assert b["b"].weight_bytes == (4 * 4 * 9 + 4) * 2


def test_branchy_spec_and_no_per_layer(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text(BRANCHY)
    result = profile_spec(p, fast_options(batches=(3,), per_layer=False, channels_last=True),
                          run_crosscheck=False)
    (c,) = result.configs
    assert c.status == "ok" and c.per_layer is None and c.latency.runs == 2


def test_compile_failure_falls_back_to_eager(tiny, monkeypatch):
    def broken(*a, **kw):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    result = profile_spec(tiny, fast_options(batches=(1,), compile=True), run_crosscheck=False)
    (c,) = result.configs
    assert c.status == "ok" and c.latency is not None
    assert c.compile == {"requested": True, "ok": False, "error": "RuntimeError: no compiler here",
                         "compile_s": None}
    assert any("torch.compile failed" in n for n in c.notes)


def _tiny_builders(tiny, fail_at: int, exc: BaseException):
    import netcalc
    from netcalc.torch.build import build_module

    spec = netcalc.load(tiny)

    def analyze(batch):
        return netcalc.analyze(spec, batch=batch)

    def build(report, device):
        if report.batch == fail_at:
            raise exc
        return build_module(report.graph)

    return build, analyze


def test_out_of_memory_is_reported_and_the_sweep_goes_on(tiny):
    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    build, analyze = _tiny_builders(tiny, 2, oom("CUDA out of memory. Tried to allocate 1 TiB"))
    result = profile_module(build, analyze, fast_options(batches=(1, 2, 3), per_layer=False))
    assert [c.status for c in result.configs] == ["ok", "oom", "ok"]
    assert "out of memory" in result.configs[1].error and result.configs[1].latency is None
    text = render_profile_table(result)
    assert "OOM" in text


def test_other_errors_are_reported_per_configuration(tiny):
    build, analyze = _tiny_builders(tiny, 1, ValueError("bad weights"))
    result = profile_module(build, analyze, fast_options(per_layer=False))
    assert [c.status for c in result.configs] == ["error", "ok"]
    assert result.configs[0].error == "ValueError: bad weights"


def test_ctrl_c_stops_cleanly_with_what_was_measured(tiny):
    build, analyze = _tiny_builders(tiny, 2, KeyboardInterrupt())
    result = profile_module(build, analyze, fast_options(batches=(1, 2, 4)))
    assert result.interrupted
    assert [c.status for c in result.configs] == ["ok", "interrupted"]
    d = result.to_dict()
    assert d["interrupted"] and "Interrupted" in render_profile_table(result)


def test_threads_are_set_and_restored(tiny):
    before = torch.get_num_threads()
    result = profile_spec(tiny, fast_options(batches=(1,), threads=1, per_layer=False,
                                                calibrate=False),
                          run_crosscheck=False)
    assert result.environment["threads"] == 1
    assert torch.get_num_threads() == before


def test_progress_is_off_without_a_terminal():
    assert type(make_progress(True)) is prof.Progress  # pytest's stderr is not a TTY
    assert type(make_progress(False)) is prof.Progress


def test_human_time():
    assert human_time(0.000412) == "412 µs"
    assert human_time(0.0288) == "28.8 ms"
    assert human_time(1.5) == "1.5 s"
    assert human_time(None) == "-"


# --------------------------------------------------------------------------- CLI
def test_cli_json_has_every_figure(tiny, runner, tmp_path):
    r = runner.invoke(app, ["profile", str(tiny), "--batch", "1,2", "--format", "json", *FAST])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert type(d["format_version"]) is int and d["format_version"] == FORMAT_VERSION
    # the JSON round-trips through the typed loader, from the dict and from the file
    (tmp_path / "p.json").write_text(r.stdout)
    for source in (d, tmp_path / "p.json", str(tmp_path / "p.json")):
        loaded = load_profile(source)
        assert isinstance(loaded.configs[0].per_layer.layers[0].stats, Stats)
        assert loaded.to_dict() == d
    for bad in ({**d, "format_version": 2}, {**d, "format_version": True}, {**d, "kind": "x"},
                {k: v for k, v in d.items() if k != "configs"}):
        with pytest.raises(ValueError):
            load_profile(bad)
    assert d["options"]["batches"] == [1, 2] and d["options"]["repeat"] == 2
    for key in ("environment", "crosscheck", "hardware", "configs", "skipped", "interrupted"):
        assert key in d
    c = d["configs"][0]
    for key in ("latency", "throughput_samples_per_s", "macs", "bytes_moved", "macs_per_s",
                "intensity_mac_per_byte", "fraction_of_peak", "fraction_of_roofline", "bound",
                "memory", "per_layer"):
        assert key in c, key
    layer = c["per_layer"]["layers"][0]
    for key in ("median_s", "min_s", "iqr_s", "share", "macs", "bytes_moved", "macs_per_s",
                "intensity_mac_per_byte", "fraction_of_peak", "bound"):
        assert key in layer, key
    assert "overhead_fraction" in c["per_layer"]


def test_cli_table(tiny, runner):
    r = runner.invoke(app, ["profile", str(tiny), *FAST, "--top", "3"])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "Cross-check: ok" in out and "Hardware cpu" in out
    assert "Top 3 layers by time" in out and "Per-layer mode" in out
    assert "━" in out or "-" in out


def test_cli_no_per_layer(tiny, runner):
    r = runner.invoke(app, ["profile", str(tiny), *FAST, "--no-per-layer", "-f", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["configs"][0]["per_layer"] is None


@no_cuda
def test_cli_cuda_alone_without_cuda_exits_2(tiny, runner):
    r = runner.invoke(app, ["profile", str(tiny), "--device", "cuda", *FAST])
    assert r.exit_code == 2
    err = r.stderr.strip()
    assert "\n" not in err and "Traceback" not in err
    assert "--device cuda: CUDA is not available" in err


@no_cuda
def test_cli_all_without_cuda_profiles_cpu_and_says_cuda_was_skipped(tiny, runner):
    r = runner.invoke(app, ["profile", str(tiny), "--device", "all", "-f", "json", *FAST])
    assert r.exit_code == 0, r.output
    assert "cuda skipped: CUDA is not available" in r.stderr
    d = json.loads(r.stdout)
    assert {c["device"] for c in d["configs"]} == {"cpu"}
    assert d["skipped"][0]["device"] == "cuda"
    r = runner.invoke(app, ["profile", str(tiny), "--device", "all", *FAST])
    assert "Skipped cuda: CUDA is not available" in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--repeat", "2", "--min-time", "0.1"], "not both"),
    (["--batch", "0"], "--batch"),
    (["--batch", "a,b"], "--batch"),
    (["--dtype", "int8"], "--dtype"),
    (["--device", "tpu"], "--device"),
    (["--format", "csv"], "--format"),
    (["--min-time", "0"], "--min-time"),
])
def test_cli_bad_options_exit_2(tiny, runner, args, message):
    r = runner.invoke(app, ["profile", str(tiny), *args])
    assert r.exit_code == 2, r.output
    assert message in r.stderr


def test_cli_spec_error_exits_2(tmp_path, runner):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\ninput: [3, 8, 8]\nlayers:\n  - {Conv2d: {kernel_size: 3}}\n")
    r = runner.invoke(app, ["profile", str(p), *FAST])
    assert r.exit_code == 2 and str(p) in r.stderr


def test_cli_crosscheck_mismatch_is_reported_and_exits_1(tiny, runner, monkeypatch):
    bad = CrossCheckSummary(ran=True, ok=False, rows=3, mismatches=[
        CheckRow("fc", "Linear", "params", 25, 30, MISMATCH)])
    monkeypatch.setattr(prof, "crosscheck_summary", lambda *a, **kw: bad)
    r = runner.invoke(app, ["profile", str(tiny), *FAST, "--batch", "1"])
    assert r.exit_code == 1
    assert "MISMATCH in 1 row(s): fc params" in r.stdout  # reported, and still timed
    assert "Latency and throughput" in r.stdout
    assert "cross-check failed" in r.stderr


def test_analytic_cli_does_not_import_torch():
    code = ("import sys, netcalc.cli, netcalc.render.profile; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_results_and_their_renderers_import_without_torch(tmp_path):
    """A profile's and a cross-check's types, the device limits, the byte accounting and
    both renderers import without torch, and a saved profile renders without it."""
    saved = tmp_path / "p.json"
    saved.write_text(render_profile_json(profile_spec(TINY_PATH(tmp_path), fast_options(
        batches=(1,), per_layer=True))))
    code = ("import sys, netcalc.results, netcalc.hardware, netcalc.memory, "
            "netcalc.render.profile as rp, netcalc.render.crosscheck; "
            f"text = rp.render_profile_table(netcalc.results.load_profile({str(saved)!r})); "
            "assert 'Top ' in text and 'Latency' in text, text; "
            "sys.exit(' '.join(m for m in sys.modules if m.split('.')[0] == 'torch') or None)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# -------------------------------------------------------------------------- CUDA
@needs_cuda
def test_cuda_profile_reports_memory_against_the_estimate(tiny):
    result = profile_spec(tiny, fast_options(device="cuda", calibrate=False), run_crosscheck=False)
    for c in result.configs:
        assert c.status == "ok", c.error
        m = c.memory["measured"]
        assert m["max_allocated_bytes"] >= m["baseline_bytes"] > 0
        assert c.memory["analytic"]["total_bytes"] > 0
        assert all(l.stats.median > 0 for l in c.per_layer.layers)


@needs_cuda
def test_cuda_out_of_memory_is_one_configuration(tmp_path):
    p = tmp_path / "big.yaml"
    p.write_text("name: Big\ninput: [64, 1024, 1024]\nlayers:\n"
                 "  - {Conv2d: {out_channels: 64, kernel_size: 3, padding: 1}}\n")
    free, _ = torch.cuda.mem_get_info()
    too_big = int(free // (64 * 1024 * 1024 * 4)) + 1  # one input alone exceeds free memory
    result = profile_spec(p, fast_options(device="cuda", batches=(1, too_big), calibrate=False,
                                          per_layer=False), run_crosscheck=False)
    assert [c.status for c in result.configs] == ["ok", "oom"]
