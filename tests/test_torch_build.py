"""The torch builder: a real, trainable nn.Module named and wired like the report."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

import netcalc  # noqa: E402
from netcalc.errors import SpecError  # noqa: E402
from netcalc.torch.build import (Container, NetcalcModule, build_module,  # noqa: E402
                                 example_inputs)

from conftest import SPECS  # noqa: E402

pytestmark = pytest.mark.torch

RESIDUAL = """
name: residual
input: [3, 16, 16]
blocks:
  Res:
    args: {c: ~}
    layers:
      - {name: conv1, Conv2d: {out_channels: $c, kernel_size: 3, padding: 1, bias: false}}
      - {name: bn1, BatchNorm2d: ~}
      - {name: relu, ReLU: ~}
      - {name: add, Add: ~, from: [relu, input]}
layers:
  - {name: stem, Conv2d: {out_channels: 8, kernel_size: 3, padding: 1}}
  - {name: layer1, Res: 8, repeat: 2}
  - {name: pool, AdaptiveAvgPool2d: 1}
  - {name: flat, Flatten: ~}
  - {name: fc, Linear: 5}
"""


def _spec(text: str) -> netcalc.Spec:
    return netcalc.parse(text, "t.yaml")


def _n(params) -> int:
    return sum(p.numel() for p in params)


def test_submodules_follow_report_names():
    spec = _spec(RESIDUAL)
    model = build_module(spec)
    report = netcalc.analyze(spec)
    for row in report.layers:
        assert model.get_submodule(row.name) is not None
    assert isinstance(model.get_submodule("layer1.0.conv1"), torch.nn.Conv2d)
    assert isinstance(model.get_submodule("layer1"), Container)
    assert isinstance(model.get_submodule("layer1.1"), Container)
    assert "layer1.1.bn1.running_mean" in model.state_dict()
    assert [n for n, _ in model.named_layers()] == [r.name for r in report.layers]


def test_forward_shapes_params_and_batch_independence():
    spec = _spec(RESIDUAL)
    model = build_module(spec).eval()
    assert _n(model.parameters()) == netcalc.analyze(spec).totals.params
    assert model(*example_inputs(spec)).shape == (1, 5)
    assert model(*example_inputs(spec, batch=4)).shape == (4, 5)  # any batch


def test_resnet18_matches_torchvision_counts():
    spec = netcalc.load(SPECS / "resnet18.yaml")
    model = build_module(spec)
    assert _n(model.parameters()) == 11_689_512  # torchvision resnet18
    assert _n(model.buffers()) == netcalc.analyze(spec).totals.buffers
    assert model.get_submodule("layer2.0.downsample.0").stride == (2, 2)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 1000)


def torchvision_resnet_keys(blocks: list[int], bottleneck: bool) -> set[str]:
    """state_dict keys of torchvision.models.resnet{18,50}, derived from its resnet.py:
    layerN is a Sequential of blocks; a block has conv1..conv{2|3}, bn1..bn{2|3} and, in
    its first block where the stride or width changes, downsample = Sequential(conv, bn)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {"conv1.weight", "fc.weight", "fc.bias", *(f"bn1.{k}" for k in bn)}
    convs = 3 if bottleneck else 2
    for stage, count in enumerate(blocks, start=1):
        for b in range(count):
            p = f"layer{stage}.{b}"
            for c in range(1, convs + 1):
                keys |= {f"{p}.conv{c}.weight", *(f"{p}.bn{c}.{k}" for k in bn)}
            if b == 0 and (bottleneck or stage > 1):  # resnet18's layer1 keeps 64 channels
                keys |= {f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{k}" for k in bn)}
    return keys


@pytest.mark.parametrize("name, blocks, bottleneck", [("resnet18", [2, 2, 2, 2], False),
                                                      ("resnet50", [3, 4, 6, 3], True)])
def test_resnet_state_dict_keys_are_torchvision_s(name, blocks, bottleneck):
    # numbered blocks give torchvision's module paths: a checkpoint loads by name
    model = build_module(netcalc.load(SPECS / f"{name}.yaml"), device="meta")
    assert set(model.state_dict()) == torchvision_resnet_keys(blocks, bottleneck)


def test_trains():
    spec = _spec(RESIDUAL)
    model = build_module(spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, = example_inputs(spec, batch=4)
    target = torch.randint(0, 5, (4,))
    before = model.get_submodule("layer1.0.conv1").weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(x), target)
    loss.backward()
    opt.step()
    assert not torch.equal(before, model.get_submodule("layer1.0.conv1").weight)


def test_meta_device_allocates_nothing():
    spec = _spec(RESIDUAL)
    model = build_module(spec, device="meta")
    assert all(p.is_meta for p in model.parameters())
    out = model(*example_inputs(spec, device="meta"))
    assert out.is_meta and out.shape == (1, 5)


def test_llama_7b_on_meta():
    spec = netcalc.load(SPECS / "llama2_7b.yaml")
    report = netcalc.analyze(spec)
    model = build_module(spec, device="meta")
    assert _n(model.parameters()) == report.totals.params
    assert report.totals.params > 6_000_000_000
    out = model(*example_inputs(spec, device="meta"))
    assert tuple(out.shape) == next(iter(report.outputs.values()))


def test_dtype():
    model = build_module(_spec(RESIDUAL), dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in model.parameters())


TWO_IN_TWO_OUT = """
name: two
inputs: {image: [3, 8, 8], extra: [4]}
layers:
  - {name: conv, Conv2d: {out_channels: 2, kernel_size: 3}, from: image}
  - {name: flat, Flatten: ~}
  - {name: head_a, Linear: 4}
  - {name: mix, Add: ~, from: [head_a, extra]}
  - {name: head_b, Linear: 3, from: extra}
outputs: [mix, head_b]
"""


def test_several_inputs_and_outputs():
    spec = _spec(TWO_IN_TWO_OUT)
    model = build_module(spec)
    image, extra = example_inputs(spec, batch=2)
    a, b = model(image, extra)
    assert a.shape == (2, 4) and b.shape == (2, 3)
    a2, b2 = model(extra=extra, image=image)
    assert torch.equal(a, a2) and torch.equal(b, b2)
    d = build_module(spec, return_dict=True)(image, extra)
    assert list(d) == ["mix", "head_b"]
    with pytest.raises(TypeError, match="missing input"):
        model(image)
    with pytest.raises(TypeError, match="no input"):
        model(image, extra, bogus=extra)


def test_layer_outputs_map_to_OUTPUTS():
    spec = netcalc.load(SPECS / "lstm_lm.yaml")
    report = netcalc.analyze(spec, batch=2)
    model = build_module(spec)
    outs = model(*example_inputs(spec, batch=2))
    assert [tuple(o.shape) for o in outs] == list(report.outputs.values())
    text = """
name: rnn_state
input: [5, 3]
layers:
  - {name: rnn, LSTM: {hidden_size: 4, num_layers: 2}}
  - {name: c, Flatten: ~, from: "rnn:c_n"}
  - {name: h, Identity: ~, from: "rnn:h_n"}
outputs: [c, h, rnn]
"""
    s = _spec(text)
    c, h, out = build_module(s)(*example_inputs(s, batch=3))
    lstm = build_module(s).get_submodule("rnn")
    assert c.shape == (2, 12) and h.shape == (2, 3, 4) and out.shape == (3, 5, 4)
    assert lstm is not None


TIED = """
name: tied
inputs: {tokens: {shape: [6], dtype: int64}}
layers:
  - {name: wte, Embedding: {num_embeddings: 11, embedding_dim: 4}}
  - {name: norm, LayerNorm: ~, trainable: false}
  - {name: head, Linear: {out_features: 11, bias: false}, tie: wte}
"""


def test_tie_shares_the_parameter_and_counts_once():
    spec = _spec(TIED)
    report = netcalc.analyze(spec)
    model = build_module(spec)
    assert model.get_submodule("head").weight is model.get_submodule("wte").weight
    assert _n(model.parameters()) == report.totals.params == 11 * 4 + 8
    # training updates both ends of the tie
    tokens, = example_inputs(spec, batch=2)
    model(tokens).sum().backward()
    torch.optim.SGD(model.parameters(), lr=1.0).step()
    assert model.get_submodule("head").weight is model.get_submodule("wte").weight
    copied = copy.deepcopy(model)
    assert copied.get_submodule("head").weight is copied.get_submodule("wte").weight


def test_trainable_false_freezes_only_that_layer():
    spec = _spec(TIED)
    report = netcalc.analyze(spec)
    model = build_module(spec)
    assert not any(p.requires_grad for p in model.get_submodule("norm").parameters())
    assert model.get_submodule("wte").weight.requires_grad
    assert _n(p for p in model.parameters() if p.requires_grad) == report.totals.trainable_params


def test_token_inputs_respect_the_vocabulary():
    spec = _spec(TIED)
    tokens, = example_inputs(spec, batch=50)
    assert tokens.dtype == torch.int64 and int(tokens.max()) < 11


@pytest.mark.parametrize("name", ["forward", "training", "to"])
def test_names_that_clash_with_module_attributes(name):
    spec = _spec(f"""
name: clash
input: [4]
layers:
  - {{name: {name}, Linear: 3}}
""")
    with pytest.raises(SpecError, match="attribute of torch.nn.Module"):
        build_module(spec)


def test_builds_from_a_graph_and_a_path():
    graph = netcalc.build(netcalc.load(SPECS / "lenet5.yaml"))
    assert isinstance(build_module(graph), NetcalcModule)
    assert isinstance(build_module(SPECS / "lenet5.yaml"), NetcalcModule)


def test_reexported():
    import netcalc.torch as nt

    assert nt.build is build_module
    assert nt.build_module is build_module
