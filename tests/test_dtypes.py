"""Weight, activation and KV-cache dtypes (issue 12): exact bytes per tensor, the options
of `shapes` and `fit`, the spec's check settings, and the JSON fields that carry them."""

from __future__ import annotations

import json
import textwrap

import pytest

from conftest import SPECS, analyze_text
from netcalc import check as check_mod
from netcalc.cli import app
from netcalc.dtypes import Dtypes
from netcalc.errors import SpecError

LLAMA = str(SPECS / "llama2_7b.yaml")
LLAMA_PARAMS = 6_738_415_616  # every layer's params divide by 128: no per-tensor rounding
LLAMA_KV = 32 * 2 * 4096  # KV-cache elements per token: 32 layers * (k + v) * d_model
TINY = "name: t\ninput: [3]\nlayers:\n  - {name: fc, Linear: 1}\n"  # 3 weights + 1 bias


def _json(runner, *args) -> dict:
    result = runner.invoke(app, [*args, "-f", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.mark.parametrize("options,weight_bytes", [
    ([], LLAMA_PARAMS * 4),
    (["--dtype", "float8_e5m2"], LLAMA_PARAMS),
    (["--weight-dtype", "float8_e4m3fn"], LLAMA_PARAMS),
    (["--weight-dtype", "int4"], LLAMA_PARAMS // 2),
    # one 16-bit scale per 128 weights: 6,738,415,616 / 128 = 52,643,872 scales
    (["--weight-dtype", "int4", "--quant-group-size", "128"],
     LLAMA_PARAMS // 2 + 2 * (LLAMA_PARAMS // 128)),
    (["--dtype", "int8", "--quant-group-size", "64"], LLAMA_PARAMS + 2 * (LLAMA_PARAMS // 64)),
])
def test_llama_weight_bytes(runner, options, weight_bytes):
    report = _json(runner, "shapes", LLAMA, *options)
    assert report["totals"]["weight_bytes"] == weight_bytes
    assert report["sequence"]["weight_bytes"] == weight_bytes
    assert report["totals"]["params"] == LLAMA_PARAMS
    assert weight_bytes != LLAMA_PARAMS * 4 or not options


def test_int4_llama_with_group_128_by_hand():
    report = analyze_text_file(LLAMA, Dtypes.of("float16", weight="int4", quant_group_size=128))
    assert report.totals.weight_bytes == 3_369_207_808 + 105_287_744 == 3_474_495_552
    assert report.totals.activation_bytes % 2 == 0  # activations stay float16


def analyze_text_file(path: str, dtypes: Dtypes):
    import netcalc

    return netcalc.analyze(path, dtype=dtypes)


@pytest.mark.parametrize("dtypes,weight_bytes", [
    (Dtypes.of(weight="int4"), 2),                            # 4 params * 4 bits
    (Dtypes.of(weight="int4", quant_group_size=3), 2 + 2 * 2),  # ceil(4 / 3) = 2 scales
    (Dtypes.of(weight="int4", quant_group_size=4), 2 + 2),
    (Dtypes.of(weight="int8", quant_group_size=1), 4 + 4 * 2),
    (Dtypes.of("float64"), 32),
])
def test_weight_bytes_of_one_layer(dtypes, weight_bytes):
    assert analyze_text(TINY, dtype=dtypes).layers[0].weight_bytes == weight_bytes


def test_int4_rounds_up_per_tensor():
    """A Linear 2 -> 1 with bias holds 3 parameters: 12 bits, stored in 2 bytes; its
    output (1 element) and input (2 elements) at int4 are 1 byte each."""
    r = analyze_text("name: t\ninput: [2]\nlayers:\n  - {Linear: 1}\n  - {Linear: 1}\n",
                     dtype=Dtypes.of("int4"))
    assert [row.weight_bytes for row in r.layers] == [2, 1]  # 3 params, then 2
    assert [row.activation_bytes for row in r.layers] == [1, 1]
    assert r.totals.input_bytes == 1


def test_activation_dtype_leaves_weights_alone():
    r = analyze_text(TINY, batch=5, dtype=Dtypes.of(activation="bfloat16"))
    assert (r.totals.weight_bytes, r.totals.activation_bytes, r.totals.input_bytes) == \
        (16, 5 * 2, 15 * 2)
    assert r.dtype == "float32" and r.dtypes.activation == "bfloat16"


def test_specific_option_wins_over_dtype(runner):
    report = _json(runner, "shapes", LLAMA, "--dtype", "bfloat16", "--kv-dtype", "int8",
                   "--kv-cache")
    assert (report["dtype"], report["weight_dtype"], report["activation_dtype"],
            report["kv_dtype"], report["quant_group_size"]) == \
        ("bfloat16", "bfloat16", "bfloat16", "int8", None)
    seq = report["sequence"]
    assert seq["weight_bytes"] == LLAMA_PARAMS * 2
    assert seq["kv_cache_bytes_per_token"] == LLAMA_KV  # one byte per element
    assert seq["kv_cache_bytes"] == LLAMA_KV * 4096
    assert seq["kv_dtype"] == "int8" and seq["dtype"] == "bfloat16"


def test_int4_kv_cache(runner):
    seq = _json(runner, "shapes", LLAMA, "--kv-dtype", "int4", "--kv-cache")["sequence"]
    assert seq["kv_cache_bytes_per_token"] == LLAMA_KV // 2 == 131_072
    assert seq["kv_cache_bytes"] == 131_072 * 4096


def test_uniform_json_keeps_dtype_and_adds_the_parts(runner, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(TINY)
    report = _json(runner, "shapes", str(path), "--dtype", "float16")
    assert (report["dtype"], report["weight_dtype"], report["activation_dtype"],
            report["kv_dtype"]) == ("float16",) * 4


def test_fit_with_int4_weights(runner, tmp_path):
    """Inference fit: weights + inference peak; 4 int4 params are 2 bytes, the float16
    input (3 elements) and output (1) 8 bytes per sample at the peak."""
    path = tmp_path / "t.yaml"
    path.write_text(TINY)
    out = _json(runner, "fit", str(path), "-m", "42B", "--dtype", "float16",
                "--weight-dtype", "int4")
    assert (out["weight_dtype"], out["activation_dtype"]) == ("int4", "float16")
    assert out["batch"] == 5 and out["needed_bytes"] == 2 + 5 * 8


def test_train_uses_precision_for_the_training_state(runner, tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(TINY)
    out = _json(runner, "shapes", str(path), "--train", "--weight-dtype", "int4")
    assert out["totals"]["weight_bytes"] == 2 and out["training"]["precision"] == "fp32"


@pytest.mark.parametrize("command", ["shapes", "fit"])
@pytest.mark.parametrize("options,message", [
    (["--weight-dtype", "int3"], "--weight-dtype: unknown dtype 'int3' (float32, "),
    (["--activation-dtype", "fp8"], "--activation-dtype: unknown dtype 'fp8'"),
    (["--kv-dtype", "float128"], "--kv-dtype: unknown dtype 'float128'"),
    (["--dtype", "float8"], "--dtype: unknown dtype 'float8'"),
    (["--quant-group-size", "0", "--weight-dtype", "int4"],
     "--quant-group-size: must be an int >= 1, got 0"),
    (["--quant-group-size", "x", "--weight-dtype", "int4"],
     "--quant-group-size: must be an int >= 1, got 'x'"),
    (["--quant-group-size", "128"],
     "--quant-group-size: scales apply to quantized weights (int8, float8_e4m3fn, "),
])
def test_bad_dtype_options_are_one_line(runner, tmp_path, command, options, message):
    path = tmp_path / "t.yaml"
    path.write_text(TINY)
    extra = ["-m", "1GB"] if command == "fit" else []
    result = runner.invoke(app, [command, str(path), *extra, *options])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message), result.output
    assert "<spec>" not in result.output and "Traceback" not in result.output


def _check(tmp_path, block: str):
    p = tmp_path / "s.yaml"
    p.write_text(TINY + textwrap.dedent(block))
    return check_mod.check_file(p)


def test_check_settings_accept_the_dtypes(tmp_path):
    r = _check(tmp_path, "expect:\n  weight_dtype: int4\n  quant_group_size: 2\n"
                         "  activation_dtype: float16\n  weight_bytes: 6\n"
                         "  activation_bytes: 2\n")
    assert r.error is None and all(c.passed for c in r.checks), [c.message for c in r.checks]
    r = _check(tmp_path, "budget:\n  dtype: int8\n  kv_dtype: int4\n  weight_bytes: 4\n")
    assert r.error is None and r.checks[0].passed


@pytest.mark.parametrize("block,message", [
    ("expect:\n  kv_dtype: int3\n  params: 4\n",
     "t.yaml:6:13: expect.kv_dtype: unknown dtype 'int3'"),
    ("budget:\n  quant_group_size: 8\n  params: 4\n",
     "t.yaml:6:21: budget.quant_group_size: scales apply to quantized weights"),
    ("budget:\n  weight_dtype: int4\n  quant_group_size: true\n  params: 4\n",
     "t.yaml:7:21: budget.quant_group_size: must be an int >= 1, got True"),
])
def test_check_dtype_settings_errors_are_located(tmp_path, block, message):
    r = _check(tmp_path, block)
    assert r.error is not None
    assert str(r.error).replace(str(tmp_path) + "/s", "t").startswith(message), str(r.error)


def test_dtypes_api_refuses_unknown_names():
    with pytest.raises(SpecError, match="--weight-dtype: unknown dtype 'int2'"):
        Dtypes.of(weight="int2")
