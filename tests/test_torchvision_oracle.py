"""Saved activations against autograd, on torchvision's own models (issue 10).

The oracle is autograd, not netcalc's builder: each model is torchvision's
(``weights=None``), in train mode on CPU at batch 2 and its evaluation size (224x224
for all seven), the input not requiring grad. Its forward runs under
``torch.autograd.graph.saved_tensors_hooks``; the distinct storages packed, parameters
and buffers excluded, are what autograd keeps, and ``netcalc.analyze(spec, batch=2,
train=TrainOptions(device="cpu"))`` must find the same bytes. The spec's built module
has torchvision's state_dict (keys and shapes), so the spec is that model.

Measured (torch 2.14.1, torchvision 0.29.1), netcalc = autograd, bytes:
ResNet-50 172,031,488; VGG-16 146,710,528; DenseNet-121 261,057,280; GoogLeNet
96,400,000; SqueezeNet 1.0 71,534,656; MobileNetV3-Small 32,388,096; EfficientNet-B0
176,556,168, of which netcalc leaves out StochasticDepth's noise (72 bytes).
"""

from __future__ import annotations

import pytest

import netcalc

from conftest import SPECS

torch = pytest.importorskip("torch")

BATCH = 2
CPU = netcalc.TrainOptions(device="cpu")

# spec -> (torchvision builder, its arguments, bytes autograd keeps that the spec leaves out)
MODELS = {
    "resnet50": ("resnet50", {}, 0),
    "vgg16": ("vgg16", {}, 0),
    "densenet121": ("densenet121", {}, 0),
    # the published weights' model: no auxiliary classifiers (in train mode they would
    # be outputs), no input transform; init_weights only picks the initial values
    "googlenet": ("googlenet", {"aux_logits": False, "transform_input": False,
                                "init_weights": False}, 0),
    "squeezenet1_0": ("squeezenet1_0", {}, 0),
    # StochasticDepth keeps a [N, 1, 1, 1] float32 noise in each of 9 residual blocks
    "efficientnet_b0": ("efficientnet_b0", {}, 9 * BATCH * 4),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}, 0),
}


def autograd_saved_bytes(model, *inputs) -> int:
    """Bytes of the distinct storages autograd packs during ``model``'s forward,
    parameters and buffers excluded. A storage is known by its address: every packed
    one stays alive with the graph until the forward's output is dropped."""
    own = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    kept: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s.nbytes() and s.data_ptr() not in own:
            kept[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(*inputs)
    del out
    return sum(kept.values())


def torchvision_model(name: str, device: str = "cpu"):
    models = pytest.importorskip("torchvision.models")
    builder, kwargs, _ = MODELS[name]
    with torch.device(device):
        return getattr(models, builder)(weights=None, **kwargs)


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(MODELS))
def test_saved_activation_bytes_match_autograd(name):
    model = torchvision_model(name).train()
    expected = autograd_saved_bytes(model, torch.randn(BATCH, 3, 224, 224))
    report = netcalc.analyze(SPECS / f"{name}.yaml", batch=BATCH, train=CPU)
    got = report.totals.saved_activation_bytes
    assert abs(got - expected) <= expected / 100  # issue 10's figure to reach: ±1%
    assert got + MODELS[name][2] == expected  # exact but for what the spec leaves out


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(MODELS))
def test_spec_builds_torchvisions_state_dict(name):
    from netcalc.torch.build import build_module

    theirs = torchvision_model(name, "meta")
    ours = build_module(SPECS / f"{name}.yaml", device="meta")
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    params = sum(p.numel() for p in theirs.parameters())
    assert netcalc.analyze(SPECS / f"{name}.yaml").totals.params == params


# In place, an activation whose derivative reads its input keeps a copy of it made
# before the write; those written in their result keep the overwritten storage.
INPLACE = ["ReLU", "ReLU6", "LeakyReLU", "ELU", "SELU", "CELU", "Hardtanh", "Hardsigmoid",
           "Hardswish", "SiLU", "Mish", "Dropout", "AlphaDropout", "Dropout2d"]


@pytest.mark.torch
@pytest.mark.parametrize("act", INPLACE)
def test_inplace_activation_saved_bytes(act):
    from netcalc.torch.build import build_module

    spec = netcalc.parse(f"""
input: [3, 8, 8]
layers:
  - {{Conv2d: {{out_channels: 4, kernel_size: 1}}}}
  - BatchNorm2d
  - {{{act}: {{inplace: true}}}}
  - {{Conv2d: {{out_channels: 4, kernel_size: 1}}}}
""", "t.yaml")
    model = build_module(spec).train()
    expected = autograd_saved_bytes(model, torch.randn(BATCH, 3, 8, 8))
    assert netcalc.analyze(spec, batch=BATCH, train=CPU).totals.saved_activation_bytes == expected
