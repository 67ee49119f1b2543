"""netcalc export: the spec as readable PyTorch code, proven against torch and torchvision.

The exported class must be the built module in another form: the same state_dict keys
and shapes, the same outputs for the same weights; torchvision's ResNet-50 weights load
into it strictly and give torchvision's outputs; its per-layer numbers pass the
cross-check against the spec (netcalc verify's comparison, with hooks at the layers'
paths); hostile names cannot put code into the file.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

from netcalc.spec import parse as loads  # noqa: E402
from netcalc.torch.build import build_module, example_inputs  # noqa: E402
from netcalc.torch.export import export_source, load_source, verify_source  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def _model_class(source: str) -> type:
    ns = load_source(source)
    return [v for v in ns.values() if isinstance(v, type) and issubclass(v, torch.nn.Module)
            and v.__module__ == ns["__name__"]][-1]


def _tensors(module) -> list[tuple[str, tuple[int, ...], bool]]:
    return [(k, tuple(v.shape), v.requires_grad) for k, v in module.state_dict(keep_vars=True)
            .items()]


def _same_as_built(spec, batch: int = 2, device: str = "cpu") -> str:
    """Export ``spec``, make the class, give it the built module's weights (strict): the
    same state_dict, the same outputs in eval mode (on meta: their shapes). Returns
    the source."""
    source = export_source(spec)
    torch.manual_seed(0)
    with torch.device(device):
        built, exported = build_module(spec, device=device).eval(), _model_class(source)()
    exported.eval()
    assert _tensors(exported) == _tensors(built)
    if device == "meta":
        inputs = example_inputs(spec, batch=batch, device="meta")
        a, b = built(*inputs), exported(*inputs)
        a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
        assert [x.shape for x in a] == [x.shape for x in b]
        return source
    exported.load_state_dict(built.state_dict(), strict=True)
    inputs = example_inputs(spec, batch=batch, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = built(*inputs), exported(*inputs)
    a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
    return source


# ---------------------------------------------------------------- torchvision
def _random_weights(module, seed: int = 0):
    """Made on meta, then random weights on the CPU: no costly init of 25M parameters."""
    gen = torch.Generator().manual_seed(seed)
    module = module.to_empty(device="cpu")
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point():
                t.zero_()
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=gen) * 0.05)
    return module.eval()


def test_resnet50_loads_torchvision_weights_and_gives_its_outputs():
    source = export_source(SPECS / "resnet50.yaml")
    with torch.device("meta"):
        tv, model = torchvision.models.resnet50(), _model_class(source)()
    tv, model = _random_weights(tv), model.to_empty(device="cpu").eval()
    model.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), tv(x))
    # readable: the bottleneck is one class, its repeats are instances of it
    assert source.count("class ") == 4  # Add, Bottleneck, BottleneckDown, ResNet50
    assert "Bottleneck(in_channels=1024, planes=256)," in source
    assert "self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)" in source


def test_exported_resnet18_passes_the_crosscheck_and_a_wrong_one_does_not():
    source = export_source(SPECS / "resnet18.yaml")
    result = verify_source(SPECS / "resnet18.yaml", source)
    assert result.ok and len(result.rows) > 300
    assert {r.metric for r in result.rows} >= {"shape", "params", "buffers"}
    lenet = export_source(SPECS / "lenet5.yaml")
    wrong = lenet.replace("nn.Linear(in_features=84, out_features=10)",
                          "nn.Linear(in_features=84, out_features=10, bias=False)")
    assert wrong != lenet
    bad = verify_source(SPECS / "lenet5.yaml", wrong)
    assert [(r.layer, r.metric) for r in bad.rows if not r.ok] == \
        [("output", "params"), ("output", "trainable")]


# ---------------------------------------------------------------- bundled specs
@pytest.mark.parametrize("name", ["mobilenet_v3_small", "ssd300", "yolov3_tiny",
                                  "lstm_lm", "multitask_resnet18", "gpt2", "vit_b_16"])
def test_bundled_specs_export_to_the_built_model(name):
    """On meta (no weights): state_dict keys, shapes, requires_grad; output shapes."""
    _same_as_built(SPECS / f"{name}.yaml", device="meta")


def test_small_spec_exports_the_same_numbers():
    _same_as_built(SPECS / "lenet5.yaml")


def test_mixture_of_experts_exports_its_routing_and_expert_class():
    """specs/mixtral_8x7b.yaml at a small size (d 64, 4 heads, 2 layers, 8 experts of
    96): the exported file holds netcalc's MixtureOfExperts (router, deterministic
    top-2 routing) with an Expert class per expert; the same state_dict and outputs as
    the built model (CPU), and netcalc verify of the file passes."""
    text = (SPECS / "mixtral_8x7b.yaml").read_text().split("\nexpect:")[0]
    for big, small in (("4096", "64"), ("14336", "96"), ("32000", "100"),
                       ("heads: 32", "heads: 4"), ("kv_heads: 8", "kv_heads: 2"),
                       ("head_dim: 128", "head_dim: 16"), ("repeat: 32", "repeat: 2")):
        text = text.replace(big, small)
    spec = loads(text)
    source = _same_as_built(spec)
    assert "class Expert(nn.Module):" in source
    assert "experts=[Expert() for _ in range(8)]" in source
    assert verify_source(spec, source).ok


# ---------------------------------------------------------------- what specs can say
TENSORS = """
name: tensors
inputs: {x: [4, 6], ids: {shape: [3], dtype: int64}}
blocks:
  Mix:                                  # two inputs; reads a layer outside it by path
    inputs: [a, b]
    layers:
      - {name: lin, Linear: 6, from: a}
      - {name: add, Add: ~, from: [lin, b, side, mix.0.lin]}
layers:
  - {name: pre, Linear: 6, from: x, repeat: 2}
  - {name: cls, Parameter: {shape: [1, 1, 6]}}
  - {name: table, Buffer: {shape: [5], dtype: int64}}
  - {name: emb, Embedding: {num_embeddings: 7, embedding_dim: 6}, from: ids}
  - {name: head, Linear: {out_features: 7, bias: false}, from: emb, tie: emb}
  - {name: norm, LayerNorm: ~, from: pre, trainable: false}
  - {name: parts, Chunk: {chunks: 2, dim: 1}, from: norm}
  - {name: side, Linear: 6, from: parts:1}
  - {name: mix, Mix: ~, from: [parts, parts:1], repeat: 2}
  - {name: pick, Embedding: {num_embeddings: 5, embedding_dim: 2}, from: table}
outputs: [mix, head, cls, pick]
"""


def test_parameters_buffers_ties_frozen_and_several_outputs():
    source = _same_as_built(loads(TENSORS))
    model = _model_class(source)()
    assert model.head.weight is model.emb.weight
    assert not any(p.requires_grad for p in model.norm.parameters())
    assert int(model.table.max()) < 5  # indices valid for the table that reads them
    assert verify_source(loads(TENSORS), source).ok


HOSTILE = '''
name: "x\\"\\"\\"\\n# \\u2028 import os; os.system('echo pwned') #"
inputs: {def: [4]}
blocks:
  Nn:
    args: {torch: 4, self_: 2}
    inputs: [return]
    layers:
      - {name: class, Linear: $torch, from: return}
      - {name: None, ReLU: ~}
      - {name: lambda, Add: ~, from: [None, return]}
layers:
  - {name: _d0, Linear: 4}
  - {name: getattr, Nn: {torch: 4}, repeat: 2}
  - {name: _outs, Nn: ~, from: [_d0]}
  - {name: reduce, Add: ~, from: [getattr, _outs]}
  - {name: torch, ReLU: ~}
'''


def test_hostile_names_cannot_write_code():
    spec = loads(HOSTILE)
    source = _same_as_built(spec)
    tree = ast.parse(source)
    for stmt in tree.body:  # only imports of torch and functools, and classes
        assert isinstance(stmt, (ast.Import, ast.ImportFrom, ast.ClassDef)), ast.dump(stmt)
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            assert {a.name for a in stmt.names} <= {"torch", "nn", "reduce"}
    # the name is text (a comment, a docstring), never code
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "os"
                or isinstance(n, ast.Attribute) and n.attr == "system"]
    assert all(line.lstrip().startswith("#") or '"""' in line
               for line in source.splitlines() if "pwned" in line)
    # the builder's generated forward takes the same names, checkpointed too
    model = build_module(spec)
    model.checkpoint(["getattr.0"])
    model(*example_inputs(spec, batch=2)).sum().backward()


# ---------------------------------------------------------------- the command
def _netcalc(*args: str):
    from typer.testing import CliRunner

    from netcalc.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_writes_refuses_to_overwrite_and_forces(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text(textwrap.dedent("""
        name: tiny
        input: [3, 8, 8]
        layers:
          - {name: conv, Conv2d: {out_channels: 4, kernel_size: 3}}
          - {name: flat, Flatten: ~}
        """))
    out = tmp_path / "model.py"
    r = _netcalc("export", str(spec), "-o", str(out), "--verify")
    assert r.exit_code == 0, r.output
    first = out.read_text()
    assert "class Tiny(nn.Module):" in first and "verified:" in r.stderr
    out.write_text("# mine\n")
    r = _netcalc("export", str(spec), "-o", str(out))
    assert r.exit_code == 2 and out.read_text() == "# mine\n"
    assert r.stderr.strip().splitlines() == [f"--output: {out} exists (add --force to "
                                             "overwrite it)"]
    r = _netcalc("export", str(spec), "-o", str(out), "--force")
    assert r.exit_code == 0 and out.read_text() == first
    r = _netcalc("export", str(spec))  # stdout
    assert r.exit_code == 0 and r.stdout == first
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: [3]\nlayers: [{Conv9d: 3}]\n")
    r = _netcalc("export", str(bad))
    assert r.exit_code == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(str(bad))
