"""`netcalc import` / `netcalc.torch.to_spec`: a module in, a spec out, proven against torch.

Hand-written modules are imported, the spec is built with netcalc's torch builder, the
source's state_dict is loaded into it and both run on the same input (at another batch
than the import's: views stay batch-generic); torchvision models are imported on the meta
device and their params and MACs compared with torchvision's published figures of their
first weights (`meta["num_params"]`, `meta["_ops"]`), and the round trip
(`netcalc import --verify`) passes.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import netcalc  # noqa: E402
from netcalc.cli import app  # noqa: E402
from netcalc.errors import SpecError  # noqa: E402
from netcalc.torch import build_module  # noqa: E402
from netcalc.torch.importer import import_target, to_spec  # noqa: E402
from netcalc.torch.roundtrip import roundtrip  # noqa: E402


class Attention(nn.Module):
    def __init__(self, d: int = 16, heads: int = 2):
        super().__init__()
        self.qkv, self.proj, self.heads = nn.Linear(d, 3 * d), nn.Linear(d, d), heads

    def forward(self, x):
        n, seq, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.view(n, seq, self.heads, d // self.heads).transpose(1, 2)
        k = k.view(n, seq, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(n, seq, self.heads, d // self.heads).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(n, seq, d))


class Tiny(nn.Module):
    """Functional ops, a direct Parameter, a ModuleDict with a key that is no identifier,
    a loop over it with adds between the children."""

    def __init__(self):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, 16))
        self.embed = nn.Conv2d(3, 16, 4, stride=4)
        self.blocks = nn.ModuleDict({"attn-1": Attention(), "attn_2": Attention()})
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        for blk in self.blocks.values():
            x = x + blk(x)
        x = self.norm(x)
        a = torch.softmax(x @ x.transpose(-2, -1) * 0.25, dim=-1)
        x = torch.einsum("bij,bjd->bid", a, x)
        return self.head(F.relu(x[:, 0]).mean(dim=1, keepdim=True) * x[:, 1])


class Shuffle(nn.Module):
    """chunk, a branch on one piece, cat and a channel shuffle through views."""

    def __init__(self):
        super().__init__()
        self.branch = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        y = torch.cat((a, self.branch(b)), dim=1)
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return torch.flatten(self.pool(y[:, :, 1:, ::2]), 1)


@pytest.mark.parametrize("make, shape, renamed", [
    (Tiny, (3, 16, 16), {"attn-1": "attn_1"}),
    (Shuffle, (8, 6, 6), {}),
])
def test_to_spec_computes_what_the_module_computes(make, shape, renamed):
    torch.manual_seed(0)
    source = make().eval()
    text = to_spec(source, torch.randn(1, *shape))
    for old, new in renamed.items():
        assert f'"blocks.{old}" -> blocks.{new}' in text  # the mapping, in a comment
    built = build_module(netcalc.parse(text, "t.yaml")).eval()
    state = {k: v for k, v in source.state_dict().items()}
    for old, new in renamed.items():
        state = {k.replace(old, new): v for k, v in state.items()}
    built.load_state_dict(state, strict=True)  # the same keys, the same shapes
    x = torch.randn(3, *shape)  # batch 3: the import traced batch 2 and measured batch 1
    torch.testing.assert_close(built(x), source(x))
    report = netcalc.analyze(netcalc.parse(text, "t.yaml"))
    assert report.totals.params == sum(p.numel() for p in source.parameters())


def test_parameter_layer_at_its_attribute_path_and_ops_named_by_module():
    text = to_spec(Tiny().eval(), torch.randn(1, 3, 16, 16))
    assert "{name: cls, Parameter: {shape: [1, 1, 16]}}" in text
    assert "{name: add, Add: ~, from: [input, attn_1]}" in text  # moved into blocks
    assert "ScaledDotProductAttention" in text and "Einsum" in text


def _shift_mask(windows: int, n: int) -> torch.Tensor:
    """Swin's shift mask as torchvision's shifted_window_attention makes it (shift =
    window // 2), shaped as the spec's Constant: (windows, 1, n, n)."""
    window = int(n ** 0.5)
    size, shift = int(windows ** 0.5) * window, window // 2
    mask, count = torch.zeros(size, size), 0
    for h in ((0, -window), (-window, -shift), (-shift, None)):
        for w in ((0, -window), (-window, -shift), (-shift, None)):
            mask[h[0]:h[1], w[0]:w[1]] = count
            count += 1
    g = size // window
    mask = mask.view(g, window, g, window).permute(0, 2, 1, 3).reshape(g * g, n)
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0).unsqueeze(1)


@pytest.mark.parametrize("v2, size", [(False, 32), (True, 32), (False, 36)])
def test_swin_window_attention_computes_what_torchvision_computes(v2, size):
    """torchvision's fx-wrapped Swin functions, written as layers (netcalc.torch.wrapped):
    a small Swin (V2: cosine attention, the position-bias MLP) with torchvision's
    weights gives torchvision's output, shifted windows included once the spec's
    Constant (ones: its counts, not its values) holds the shift mask's values. At 36,
    maps of 9 and 5 are padded to whole windows and 9 to an even size for merging."""
    from netcalc.torch.modules import ConstantTensor
    from torchvision.models import swin_transformer as sw

    torch.manual_seed(0)
    extra = {"block": sw.SwinTransformerBlockV2, "downsample_layer": sw.PatchMergingV2} \
        if v2 else {}
    source = sw.SwinTransformer([4, 4], 16, [2, 2], [2, 4], [4, 4], num_classes=5,
                                **extra).eval()
    text = to_spec(source, torch.randn(1, 3, size, size))
    assert ("Normalize" in text and "cpb_mlp" in text) == v2
    assert ("ZeroPad3d" in text) == (size == 36)
    built = build_module(netcalc.parse(text, "t.yaml")).eval()
    built.load_state_dict(source.state_dict(), strict=True)
    masks = [m for m in built.modules() if isinstance(m, ConstantTensor)]
    assert [m.shape for m in masks] == ([(4, 1, 16, 16)] if size == 32 else  # 8 / 4
                                        [(9, 1, 16, 16), (4, 1, 16, 16)])  # 12 / 4, 8 / 4
    for m in masks:
        m.forward = lambda m=m: _shift_mask(m.shape[0], m.shape[2])
    x = torch.randn(3, 3, size, size)  # another batch than the import's
    with torch.no_grad():
        torch.testing.assert_close(built(x), source(x))


def test_a_parameter_read_for_its_size_only_keeps_its_layer():
    """Parameters become layers where first used as tensors; one only measured
    (``extra.shape[0]``) keeps its layer where it was read: the same state_dict keys."""
    class Sized(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin, self.extra = nn.Linear(4, 4), nn.Parameter(torch.zeros(3))

        def forward(self, x):
            return self.lin(x) * self.extra.shape[0]

    text = to_spec(Sized(), torch.randn(1, 4))
    assert "  - {name: extra, Parameter: {shape: [3]}}\n  - {name: mul, Scale: 3, from: lin}" \
        in text


def test_cannot_express_names_the_op_and_the_module():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Sequential(nn.Linear(4, 4))

        def forward(self, x):
            return torch.cumsum(self.inner(x), dim=1)

    with pytest.raises(SpecError, match=r"cumsum.*has no netcalc layer"):
        to_spec(Odd(), torch.randn(1, 4))


# ------------------------------------------------------------------ torchvision
AUX = {"googlenet": {"aux_logits": False, "init_weights": False}}
# the whole list: benchmarks/import_zoo.py; here a representative subset, the round trip
# (slower: it builds and runs the spec too) for a part of it, within the suite's budget
ZOO = ["resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
       "densenet121", "googlenet", "shufflenet_v2_x0_5", "squeezenet1_0", "convnext_tiny",
       "vit_b_16", "swin_t", "swin_v2_t", "maxvit_t"]
ROUND_TRIP = {"resnet18", "mobilenet_v3_small", "shufflenet_v2_x0_5", "squeezenet1_0",
              "convnext_tiny", "vit_b_16", "swin_t", "swin_v2_t", "maxvit_t"}


@pytest.mark.parametrize("name", ZOO)
def test_torchvision_import(name):
    weights = list(torchvision.models.get_model_weights(name))[0]
    size = weights.transforms().crop_size[0]
    imported = import_target(f"torchvision.models:{name}", AUX.get(name, {}),
                             [("", (3, size, size), "float32")])
    report = netcalc.analyze(netcalc.parse(imported.text, f"{name}.yaml"))
    assert report.totals.params == weights.meta["num_params"]
    assert round(report.totals.macs / 1e9, 3) == pytest.approx(weights.meta["_ops"], abs=5e-4)
    if name in ROUND_TRIP:
        result = roundtrip(imported.text, imported.module, imported.inputs)
        assert result.ok, result.mismatches[0].message
    if name == "resnet50":  # readable: the bottleneck folded
        assert imported.text.count("\n") <= 80
        assert "repeat: $repeats" in imported.text
    if name == "swin_t":  # torchvision's fx-wrapped attention, as specs/swin_t.yaml writes it
        assert imported.text.count("\n") <= 160
        assert "- {name: qkv, Linear: $out_features}" in imported.text
        assert "Reshape: {shape: $shape_view, batch: false}" in imported.text


# ------------------------------------------------------------------ the command
MODULE = """
import torch.nn as nn

class Net(nn.Sequential):
    def __init__(self, width=8):
        super().__init__(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 2))

NOT_CALLABLE = 3
"""


@pytest.fixture
def target(tmp_path, monkeypatch):
    (tmp_path / "nc_import_target.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "nc_import_target"
    sys.modules.pop("nc_import_target", None)


def test_import_writes_and_refuses_to_overwrite(runner, target, tmp_path):
    out = tmp_path / "net.yaml"
    args = ["import", f"{target}:Net", "--input", "4", "--kwargs", '{"width": 16}', "-o", str(out)]
    result = runner.invoke(app, [*args, "--verify"])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "kwargs {\"width\": 16}" in text and "params: 114" in text  # 4*16+16 + 16*2+2
    assert runner.invoke(app, ["check", str(out)]).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "exists (add --force" in again.stderr
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


@pytest.mark.parametrize("args, message", [
    (["nc_no_such_module:Net", "--input", "4"], "cannot import 'nc_no_such_module'"),
    (["{t}:Missing", "--input", "4"], "has no attribute 'Missing'"),
    (["{t}:NOT_CALLABLE", "--input", "4"], "is not callable"),
    (["{t}", "--input", "4"], "expected package.module:callable"),
    (["{t}:Net", "--input", "4", "--kwargs", '{"depth": 2}'], "unexpected keyword argument"),
    (["{t}:Net", "--input", "5"], "the model rejects the input"),
    (["{t}:Net", "--input", "x=4"], "forward has no parameter 'x'"),
])
def test_bad_input_one_line_exit_2(runner, target, args, message):
    result = runner.invoke(app, ["import", *(a.replace("{t}", target) for a in args)])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


# ------------------------------------------------------------------ --opaque
class Cumulative(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner, self.out = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.cumsum(self.inner(x), dim=1))


def test_opaque_layer_keeps_shape_and_params_and_its_macs_are_unknown(runner, tmp_path):
    text = to_spec(Cumulative(), torch.randn(1, 4), opaque=True)
    assert "{name: cumsum, Opaque: {shape: [4]}}" in text
    assert "macs:" not in text.split("expect:")[1]  # no expectation netcalc cannot meet
    report = netcalc.analyze(netcalc.parse(text, "t.yaml"))
    assert report.totals.params == 30 and report.totals.macs is None
    assert report.totals.flops is None
    spec = tmp_path / "t.yaml"
    spec.write_text(text)
    table = runner.invoke(app, ["shapes", str(spec)]).stdout
    assert "unknown" in table and "MACs: unknown, FLOPs: unknown: they include 1 layer(s)" in table
    data = __import__("json").loads(runner.invoke(app, ["shapes", str(spec), "-f", "json"]).stdout)
    assert data["totals"]["macs"] is None and data["layers"][1]["macs"] is None
    spec.write_text(text.replace("expect: {", "budget: {macs: 1G}\nexpect: {"))
    check = runner.invoke(app, ["check", str(spec)])
    assert check.exit_code == 1 and "budget.macs: unknown" in check.stdout
    result = roundtrip(text, Cumulative().eval(), {"input": ((4,), "float32")})
    assert result.ok and any(r.verdict == "opaque" for r in result.rows)


def test_provenance_and_name_cannot_break_the_spec_text():
    """A provenance line and a model name from outside stay one comment line / one
    quoted value: nothing can start a line of the written spec (issue 11, item 3)."""
    from netcalc.torch import to_spec

    forged = "x\n::error file=README.md::forged\n\u202e"
    text = to_spec(nn.Sequential(nn.Linear(4, 2)), torch.zeros(1, 4), name=forged,
                   provenance=[forged])
    assert not any(line.startswith("::error") for line in text.splitlines())
    assert "\u202e" not in text
    assert netcalc.parse(text, "imported.yaml").name == forged  # quoted, read back whole
