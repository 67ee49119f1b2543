"""Differential property tests: random valid specs, analytic engine vs PyTorch.

Hypothesis draws specs from the layer grammar -- convolutions with random stride,
padding (ints, 'same', 'valid', non-zero padding modes), dilation and groups,
transposed convolutions with output_padding, max/avg/LP pools with ceil_mode,
adaptive pools, paddings, resampling, norms, activations, residual Add and Concat
branches, Linear heads; and sequence models with Linear, norms, LSTM/GRU/RNN,
multi-head attention (self, and cross with another key width), scaled dot-product
attention over heads (causal, grouped-query, other value widths), MatMul, Transformer
layers, embeddings with tied heads, frozen layers -- and cross-checks each one
(:func:`netcalc.torch.crosscheck.crosscheck`): output shapes, params, trainable
params and buffers must equal PyTorch's, every MAC count must equal fvcore's,
FlopCounterMode's and torchinfo's either exactly or through the documented rule of
:mod:`netcalc.conventions` (never a MISMATCH), and every integral receptive field
must agree with the one measured by backpropagation
(:func:`netcalc.torch.crosscheck.empirical_rf`).

A single-path spec the engine rejects is built directly with torch.nn from the same
arguments: if torch runs it, the engine was wrong to refuse (the test fails); if
torch refuses it too, the example is discarded.

Examples per test: ``NETCALC_HYPOTHESIS_EXAMPLES`` (default 200: about 10 s per test
on 2 cores). The long run, 10,000 examples per test (about 4 min for the CNNs and
8 min for the sequence models on 2 cores; its last result: 20,000 passing, 0
failing)::

    NETCALC_HYPOTHESIS_EXAMPLES=10000 .venv/bin/python -m pytest tests/test_property.py \\
        -q -p no:cacheprovider --hypothesis-show-statistics

Set ``NETCALC_HYPOTHESIS_SEED`` to replay a run (hypothesis prints the failing
example's spec text; the ``spec`` note shows it).
"""

from __future__ import annotations

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")
hypothesis = pytest.importorskip("hypothesis")

from hypothesis import HealthCheck, assume, given, note, settings, seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import netcalc  # noqa: E402
from netcalc.errors import SpecError  # noqa: E402
from netcalc.torch.crosscheck import crosscheck  # noqa: E402

pytestmark = pytest.mark.torch

EXAMPLES = int(os.environ.get("NETCALC_HYPOTHESIS_EXAMPLES", "200"))
settings.register_profile(
    "netcalc", max_examples=EXAMPLES, deadline=None, derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much])
settings.load_profile("netcalc")
_SEED = os.environ.get("NETCALC_HYPOTHESIS_SEED")
maybe_seed = seed(int(_SEED)) if _SEED else (lambda f: f)


# =============================================================================== specs
def _yaml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "~"
    return str(value)


class Chain:
    """A spec under construction: entries (as YAML flow maps) and the current shape."""

    def __init__(self, inputs: str):
        self.inputs = inputs
        self.entries: list[str] = []
        self.plain: list[tuple[str, dict]] = []  # the chain as (type, args), when linear
        self.linear = True
        self.outputs: list[str] | None = None
        self.n = 0

    def add(self, type_: str, args: dict, *, name: str | None = None, src=None,
            extra: str = "") -> str:
        name = name or f"l{self.n}"
        self.n += 1
        parts = [f"name: {name}", f"{type_}: {_yaml(args) if args else '~'}"]
        if src is not None:
            parts.append(f"from: {_yaml(src)}")
            self.linear = False
        if extra:
            parts.append(extra)
            self.linear = False
        self.entries.append("{" + ", ".join(parts) + "}")
        self.plain.append((type_, args))
        return name

    def text(self) -> str:
        lines = ["name: random", self.inputs, "layers:"]
        lines += [f"  - {e}" for e in self.entries]
        if self.outputs:
            lines.append(f"outputs: {_yaml(self.outputs)}")
        return "\n".join(lines) + "\n"


def _size_after(n: int, k: int, s: int, lo: int, hi: int, d: int, ceil: bool = False) -> int:
    room = n + lo + hi - d * (k - 1) - 1
    if room < 0:
        return 0
    if not ceil:
        return room // s + 1
    out = -(-room // s) + 1
    if (out - 1) * s >= n + lo:
        out -= 1
    return out


@st.composite
def spatial_specs(draw):
    nd = draw(st.sampled_from([1, 2, 2, 2, 3]))
    c = draw(st.integers(1, 6))
    top = {1: 40, 2: 24, 3: 10}[nd]
    sizes = [draw(st.integers(3, top)) for _ in range(nd)]
    chain = Chain(f"input: {_yaml([c, *sizes])}")
    prev = None
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "conv", "conv", "convT", "maxpool", "avgpool",
                                     "lppool", "adaptive", "norm", "act", "pad", "upsample",
                                     "residual", "concat", "dropout"]))
        if kind == "conv":
            groups = draw(st.sampled_from([g for g in (1, 2, 3, c) if c % g == 0]))
            out = groups * draw(st.integers(1, 3))
            k = [draw(st.integers(1, 4)) for _ in range(nd)]
            d = [draw(st.integers(1, 3)) for _ in range(nd)]
            padding = draw(st.sampled_from(["int", "int", "same", "valid"]))
            stride = [1] * nd if padding == "same" else \
                [draw(st.integers(1, 3)) for _ in range(nd)]
            pads = ([draw(st.integers(0, (ki - 1) * di // 2 + 1)) for ki, di in zip(k, d)]
                    if padding == "int" else None)
            args = {"out_channels": out, "kernel_size": k, "stride": stride, "dilation": d,
                    "groups": groups, "bias": draw(st.booleans()),
                    "padding": pads if pads is not None else padding}
            mode = draw(st.sampled_from(["zeros", "zeros", "reflect", "replicate", "circular"]))
            if mode != "zeros":
                args["padding_mode"] = mode
            new = []
            for i, n in enumerate(sizes):
                if padding == "same":
                    new.append(n)
                else:
                    p = pads[i] if pads else 0
                    new.append(_size_after(n, k[i], stride[i], p, p, d[i]))
            if min(new) < 1:
                continue
            chain.add(f"Conv{nd}d", args)
            c, sizes = out, new
        elif kind == "convT":
            groups = draw(st.sampled_from([g for g in (1, 2, c) if c % g == 0]))
            out = groups * draw(st.integers(1, 2))
            k = [draw(st.integers(1, 4)) for _ in range(nd)]
            s = [draw(st.integers(1, 3)) for _ in range(nd)]
            d = [draw(st.integers(1, 2)) for _ in range(nd)]
            p = [draw(st.integers(0, di * (ki - 1))) for ki, di in zip(k, d)]
            op = [draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d)]
            new = [(n - 1) * si - 2 * pi + di * (ki - 1) + opi + 1
                   for n, si, pi, di, ki, opi in zip(sizes, s, p, d, k, op)]
            if min(new) < 1 or max(new) > 64:
                continue
            chain.add(f"ConvTranspose{nd}d", {"out_channels": out, "kernel_size": k, "stride": s,
                                              "padding": p, "output_padding": op, "dilation": d,
                                              "groups": groups})
            c, sizes = out, new
        elif kind in ("maxpool", "avgpool", "lppool"):
            k = [draw(st.integers(1, 4)) for _ in range(nd)]
            s = [draw(st.integers(1, 3)) for _ in range(nd)]
            ceil = draw(st.booleans())
            args = {"kernel_size": k, "stride": s, "ceil_mode": ceil}
            p, d = [0] * nd, [1] * nd
            if kind != "lppool":
                p = [draw(st.integers(0, ki // 2)) for ki in k]
                args["padding"] = p
            if kind == "maxpool":
                d = [draw(st.integers(1, 2)) for _ in range(nd)]
                args["dilation"] = d
            if kind == "avgpool":
                args["count_include_pad"] = draw(st.booleans())
            if kind == "lppool":
                if nd == 3 and ceil:
                    continue
                args["norm_type"] = draw(st.sampled_from([1, 2, 3]))
            new = [_size_after(n, ki, si, pi, pi, di, ceil)
                   for n, ki, si, pi, di in zip(sizes, k, s, p, d)]
            if min(new) < 1:
                continue
            name = {"maxpool": "MaxPool", "avgpool": "AvgPool", "lppool": "LPPool"}[kind]
            chain.add(f"{name}{nd}d", args)
            sizes = new
        elif kind == "adaptive":
            new = [draw(st.integers(1, n)) for n in sizes]
            kind2 = draw(st.sampled_from(["Avg", "Max"]))
            chain.add(f"Adaptive{kind2}Pool{nd}d", {"output_size": new})
            sizes = new
        elif kind == "norm":
            which = draw(st.sampled_from(["batch", "group", "instance", "layer", "lrn"]))
            if which == "batch":
                chain.add(f"BatchNorm{nd}d", {"affine": draw(st.booleans()),
                                              "track_running_stats": draw(st.booleans())})
            elif which == "group":
                chain.add("GroupNorm", {"num_groups": draw(st.sampled_from(
                    [g for g in (1, 2, 3, c) if c % g == 0])), "affine": draw(st.booleans())})
            elif which == "instance":
                chain.add(f"InstanceNorm{nd}d", {"affine": draw(st.booleans())})
            elif which == "layer":
                chain.add("LayerNorm", {"elementwise_affine": draw(st.booleans())})
            else:
                chain.add("LocalResponseNorm", {"size": draw(st.integers(1, 4))})
        elif kind == "act":
            act = draw(st.sampled_from(["ReLU", "ReLU6", "GELU", "Hardswish", "LeakyReLU",
                                        "PReLU", "Sigmoid", "SiLU", "Tanh", "ELU"]))
            args = {"num_parameters": c} if act == "PReLU" and draw(st.booleans()) else {}
            chain.add(act, args)
        elif kind == "dropout":
            chain.add(draw(st.sampled_from(["Dropout", f"Dropout{nd}d" if nd > 1 else "Dropout"])),
                      {"p": 0.5})
        elif kind == "pad":
            which = draw(st.sampled_from(["Zero", "Reflection", "Replication", "Constant"]))
            pads = [draw(st.integers(0, 2)) for _ in range(2 * nd)]
            if which == "Reflection" and any(pads[2 * i] >= sizes[nd - 1 - i]
                                             or pads[2 * i + 1] >= sizes[nd - 1 - i]
                                             for i in range(nd)):
                continue
            args = {"padding": pads}
            if which == "Constant":
                args["value"] = 0.5
            chain.add(f"{which}Pad{nd}d", args)
            sizes = [n + pads[2 * (nd - 1 - i)] + pads[2 * (nd - 1 - i) + 1]
                     for i, n in enumerate(sizes)]
        elif kind == "upsample":
            modes = ["nearest", "nearest-exact", {1: "linear", 2: "bilinear", 3: "trilinear"}[nd]]
            if nd == 2:
                modes.append("bicubic")
            mode = draw(st.sampled_from(modes))
            args = {"mode": mode}
            if draw(st.booleans()):
                scale = draw(st.sampled_from([1, 2, 3, 0.5, 1.5, 2.5]))
                new = [int(n * scale) for n in sizes]
                args["scale_factor"] = scale
            else:
                new = [draw(st.integers(1, 2 * n)) for n in sizes]
                args["size"] = new
            if mode not in ("nearest", "nearest-exact") and draw(st.booleans()):
                args["align_corners"] = True
            if min(new) < 1 or max(new) > 64:
                continue
            chain.add("Upsample", args)
            sizes = new
        elif kind == "residual" and prev is not None:
            k = draw(st.sampled_from([1, 3]))
            branch = chain.add(f"Conv{nd}d", {"out_channels": c, "kernel_size": k,
                                              "padding": k // 2})
            chain.add("Add", {}, src=[branch, prev])
        elif kind == "concat" and prev is not None:
            c2 = draw(st.integers(1, 3))
            branch = chain.add(f"Conv{nd}d", {"out_channels": c2, "kernel_size": 3,
                                              "padding": 1}, src=prev)
            chain.add("Concat", {}, src=[prev, branch])
            c = c + c2
        else:
            continue
        prev = f"l{chain.n - 1}"
    if not chain.entries:
        chain.add("Identity", {})
    if draw(st.booleans()):
        chain.add("Flatten", {})
        chain.add("Linear", {"out_features": draw(st.integers(1, 5))})
    return chain


@st.composite
def sequence_specs(draw):
    length = draw(st.integers(1, 7))
    heads = draw(st.sampled_from([1, 2, 3]))
    e = heads * draw(st.sampled_from([2, 4]))
    tokens = draw(st.booleans())
    if tokens:
        vocab = draw(st.integers(2, 20))
        chain = Chain(f"inputs: {{tok: {{shape: [{length}], dtype: int64}}}}")
        first = chain.add("Embedding", {"num_embeddings": vocab, "embedding_dim": e})
    else:
        vocab = None
        chain = Chain(f"input: [{length}, {e}]")
        first = chain.add("Identity", {})
    prev = first
    width = e
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["linear", "norm", "act", "rnn", "mha", "cross", "sdpa",
                                     "encoder", "decoder", "residual", "matmul"]))
        if kind == "linear":
            width = draw(st.sampled_from([e, e, 2 * e]))
            chain.add("Linear", {"out_features": width, "bias": draw(st.booleans())})
        elif kind == "norm":
            which = draw(st.sampled_from(["LayerNorm", "RMSNorm"]))
            args = ({"elementwise_affine": draw(st.booleans())} if which == "LayerNorm"
                    else {})
            if which == "LayerNorm" and draw(st.booleans()):
                args["bias"] = False
            chain.add(which, args)
        elif kind == "act":
            chain.add(draw(st.sampled_from(["GELU", "SiLU", "Softmax", "Tanh"])), {})
        elif kind == "rnn":
            rnn = draw(st.sampled_from(["LSTM", "GRU", "RNN"]))
            hidden = draw(st.integers(1, 5))
            args = {"hidden_size": hidden, "num_layers": draw(st.integers(1, 2)),
                    "bidirectional": draw(st.booleans()), "bias": draw(st.booleans())}
            if rnn == "LSTM" and hidden > 1 and draw(st.booleans()):
                args["proj_size"] = draw(st.integers(1, hidden - 1))
            name = chain.add(rnn, args)
            d = 2 if args["bidirectional"] else 1
            width = d * args.get("proj_size", hidden)
            if draw(st.booleans()):  # use the final state too
                chain.add("Flatten", {"start_dim": 1}, src=f"{name}:h_n")
                chain.add("Identity", {}, src=name)
            chain.add("Linear", {"out_features": e})
            width = e
        elif kind in ("mha", "cross") and width == e:
            args = {"num_heads": heads, "bias": draw(st.booleans()),
                    "add_bias_kv": draw(st.booleans()), "add_zero_attn": draw(st.booleans())}
            if kind == "cross":
                memory = first
                if draw(st.booleans()):  # a memory of another width: kdim = vdim != E
                    memory = chain.add("Linear", {"out_features": draw(st.integers(1, 7))},
                                       src=first)
                chain.add("MultiheadAttention", args, src=[prev, memory])
            else:
                chain.add("MultiheadAttention", args)
        elif kind == "sdpa" and width % heads == 0:
            hd = width // heads
            split = chain.add("Reshape", {"shape": [length, heads, hd]})
            q = chain.add("Permute", {"dims": [0, 2, 1, 3]})
            v, vd = q, hd
            if draw(st.booleans()):  # a value width unlike the query's (math path on CPU)
                v, vd = chain.add("Linear", {"out_features": hd + 1}, src=q), hd + 1
            args = {"is_causal": draw(st.booleans())}
            k = q
            if heads > 1 and v == q and draw(st.booleans()):  # grouped-query: 1 k/v head
                kv = chain.add("Linear", {"out_features": hd}, src=prev)
                k = v = chain.add("Reshape", {"shape": [1, length, hd]}, src=kv)
                args["enable_gqa"] = True
            att = chain.add("ScaledDotProductAttention", args, src=[q, k, v])
            back = chain.add("Permute", {"dims": [0, 2, 1, 3]}, src=att)
            chain.add("Reshape", {"shape": [length, heads * vd]}, src=back)
            width = heads * vd
            assert split
        elif kind in ("encoder", "decoder") and width == e:
            args = {"nhead": heads, "dim_feedforward": draw(st.integers(1, 16)),
                    "norm_first": draw(st.booleans()), "bias": draw(st.booleans()),
                    "activation": draw(st.sampled_from(["relu", "gelu"])), "dropout": 0.0}
            if kind == "encoder":
                chain.add("TransformerEncoderLayer", args)
            else:
                chain.add("TransformerDecoderLayer", args, src=[prev, first])
        elif kind == "residual" and width == e:
            chain.add("Add", {}, src=[prev, first])
        elif kind == "matmul":
            t = chain.add("Permute", {"dims": [0, 2, 1]})
            chain.add("MatMul", {}, src=[prev, t])
            width = length
        else:
            continue
        prev = f"l{chain.n - 1}"
    if vocab is not None and width == e and draw(st.booleans()):
        chain.add("Linear", {"out_features": vocab, "bias": False}, extra=f"tie: {first}")
    elif draw(st.booleans()):
        chain.add("Linear", {"out_features": 3}, extra="trainable: false")
    return chain


# =============================================================================== checks
def _inferred(type_: str, x) -> dict:
    """torch's input-size arguments, which netcalc infers, from the running tensor."""
    if type_.startswith(("Conv", "ConvTranspose")):
        return {"in_channels": x.shape[1]}
    if type_.startswith(("BatchNorm", "InstanceNorm")):
        return {"num_features": x.shape[1]}
    if type_ == "GroupNorm":
        return {"num_channels": x.shape[1]}
    if type_ == "LayerNorm":
        return {"normalized_shape": x.shape[-1]}
    if type_ == "Linear":
        return {"in_features": x.shape[-1]}
    return {}


def torch_accepts(chain: Chain, input_shape: tuple[int, ...], batch: int) -> bool:
    """Build and run a linear chain directly with torch.nn (no netcalc): does torch accept it?"""
    x = torch.randn(batch, *input_shape)
    try:
        with torch.no_grad():
            for type_, args in chain.plain:
                module = getattr(torch.nn, type_)(**_inferred(type_, x), **args).eval()
                x = module(x)
                if x.numel() == 0:
                    return False
    except Exception:
        return False
    return True


def check(chain: Chain, batch: int, rf: bool) -> None:
    text = chain.text()
    note(text)
    spec = netcalc.parse(text, "random.yaml")
    try:
        netcalc.analyze(spec, batch=batch)
    except SpecError as err:
        if chain.linear and "inputs:" not in chain.inputs:
            shape = tuple(int(v) for v in chain.inputs.split("[")[1].split("]")[0].split(","))
            assert not torch_accepts(chain, shape, batch), f"netcalc refused a spec torch runs: {err}"
        assume(False)
    result = crosscheck(spec, batch=batch, rf=rf)
    bad = [r.message for r in result.mismatches]
    assert not bad, "\n".join(bad)
    for r in result.rows:
        if r.metric in ("shape", "params", "trainable", "buffers", "rf"):
            assert r.verdict == "match", r.message


@maybe_seed
@given(spatial_specs(), st.integers(1, 3))
def test_random_cnns_match_torch(chain, batch):
    check(chain, batch, rf=True)


@maybe_seed
@given(sequence_specs(), st.integers(1, 3))
def test_random_sequence_models_match_torch(chain, batch):
    check(chain, batch, rf=False)
