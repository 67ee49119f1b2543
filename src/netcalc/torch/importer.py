"""A PyTorch module -> a readable spec: ``netcalc import`` and :func:`to_spec`.

    from netcalc.torch import to_spec
    text = to_spec(torchvision.models.resnet50(), torch.randn(1, 3, 224, 224))

Three steps: :mod:`netcalc.torch.trace` turns the module into spec layers at their
module paths, :mod:`netcalc.torch.fold` folds repeated modules into blocks, and
:mod:`netcalc.torch.specwriter` writes the YAML with a provenance comment and an
``expect:`` block measured on the source module (parameters, buffers, output shapes,
and MACs by ``torch.utils.flop_counter.FlopCounterMode``, so ``convention: flopcounter``).

``netcalc import TARGET`` calls ``package.module:callable`` with ``--kwargs`` under
``torch.device("meta")`` (no weights are allocated) and in eval mode. It runs TARGET's
code: import trusted code only.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import SpecError
from .fold import fold
from .guard import one_line
from .specwriter import write_spec
from .trace import TRACE_BATCH, InputRejected, Tracer, Unsupported

__all__ = ["Imported", "import_target", "measure", "to_spec", "verify"]


@dataclass
class Imported:
    text: str
    module: nn.Module
    inputs: dict[str, tuple[tuple[int, ...], str]]  # name -> per-sample shape, dtype


def _example(shape: tuple[int, ...], dtype: str, batch: int, device: Any) -> torch.Tensor:
    if dtype == "int64":
        return torch.zeros((batch, *shape), dtype=torch.int64, device=device)
    if device == torch.device("meta") or str(device) == "meta":
        return torch.empty((batch, *shape), device=device)
    return torch.randn((batch, *shape), device=device)


def _device(module: nn.Module) -> torch.device:
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("meta")


def _placeholders(module: nn.Module) -> list[str]:
    import inspect

    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _named_inputs(module: nn.Module, inputs: list[tuple[str, tuple[int, ...], str]]
                  ) -> dict[str, tuple[tuple[int, ...], str]]:
    """Input names in forward's order: an unnamed single input is `input`; named ones
    must be forward's parameters."""
    if len(inputs) == 1 and not inputs[0][0]:
        return {"input": (inputs[0][1], inputs[0][2])}
    forward = _placeholders(module)
    given = {name: (shape, dtype) for name, shape, dtype in inputs}
    unknown = [n for n in given if n not in forward]
    if unknown:
        raise SpecError(f"{type(module).__name__}.forward has no parameter {unknown[0]!r} "
                        f"({', '.join(forward)})", file="--input")
    order = [n for n in forward if n in given]
    if order != forward[:len(order)]:
        missing = forward[:len(order)][[n in given for n in forward[:len(order)]].index(False)]
        raise SpecError(f"forward's parameter {missing!r} comes before the inputs given: "
                        "give it too", file="--input")
    return {n: given[n] for n in order}


def to_spec(module: nn.Module, example_inputs: Any, *, name: str | None = None,
            opaque: bool = False, provenance: list[str] | None = None) -> str:
    """The spec (YAML text) of ``module`` for inputs shaped like ``example_inputs`` (a
    tensor, a tuple of tensors, or a dict of them by forward's parameter names; dim 0 is
    the batch). The module is put in eval mode. Raises :class:`SpecError` for what cannot
    be expressed (the op and the module path) or an input the module rejects."""
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if isinstance(example_inputs, dict):
        items = [(k, v) for k, v in example_inputs.items()]
    else:
        forward = _placeholders(module)
        items = [(forward[i] if len(example_inputs) > 1 and i < len(forward) else "", x)
                 for i, x in enumerate(example_inputs)]
    inputs = _named_inputs(module, [(n, tuple(x.shape[1:]),
                                     "int64" if x.dtype == torch.int64 else "float32")
                                    for n, x in items])
    return _spec(module, inputs, name or type(module).__name__, opaque, provenance or [])


def _spec(module: nn.Module, inputs: dict[str, tuple[tuple[int, ...], str]], name: str,
          opaque: bool, provenance: list[str]) -> str:
    module.eval()
    device = _device(module)
    feeds = {n: _example(shape, dtype, TRACE_BATCH, device) for n, (shape, dtype) in inputs.items()}
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            tracer = Tracer(module, feeds, opaque)
            traced = tracer.run()
        tree = fold(traced)
    except Unsupported as exc:
        raise SpecError(f"cannot express {exc}", file=name) from None
    except InputRejected as exc:
        raise SpecError(f"the model rejects the input: {one_line(exc)}", file="--input") from None
    macs, rest = divmod(counter.get_total_flops() // 2, TRACE_BATCH)
    if rest:  # samples that are not independent: measure batch 1 itself
        figures = measure(module, inputs)
    else:  # what the source says of itself, from the traced run
        figures = {"params": sum(p.numel() for p in module.parameters()),
                   "buffers": sum(b.numel() for b in module.buffers()), "macs": macs,
                   "outputs": [list(t.shape[1:]) for t in _tensors(tracer.result)]}
    return write_spec(name, tree, traced.inputs, figures, provenance)


def measure(module: nn.Module, inputs: dict[str, tuple[tuple[int, ...], str]]) -> dict[str, Any]:
    """What the source module says of itself at batch 1: params, buffers, output shapes
    (per sample) and MACs (FlopCounterMode's FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = _device(module)
    feeds = {n: _example(shape, dtype, 1, device) for n, (shape, dtype) in inputs.items()}
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            out = module(**feeds) if len(feeds) > 1 else module(*feeds.values())
    except Exception as exc:  # noqa: BLE001: the model's own refusal, quoted
        raise SpecError(f"the model rejects the input: {one_line(exc)}", file="--input") from None
    outs = _tensors(out)
    return {"params": sum(p.numel() for p in module.parameters()),
            "buffers": sum(b.numel() for b in module.buffers()),
            "macs": counter.get_total_flops() // 2,
            "outputs": [list(t.shape[1:]) for t in outs]}


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    return []


# ---------------------------------------------------------------------------- TARGET
def load_target(target: str, kwargs: dict[str, Any]) -> nn.Module:
    """``package.module:callable`` called with ``kwargs`` on the meta device (when it
    builds there), in eval mode; a bad target is a SpecError quoting the cause."""
    modname, sep, attr = target.partition(":")
    if not sep or not modname or not attr:
        raise SpecError(f"{target!r}: expected package.module:callable "
                        "(e.g. torchvision.models:resnet50)", file="TARGET")
    try:
        mod = importlib.import_module(modname)
    except Exception as exc:  # noqa: BLE001: whatever the import raised, in one line
        raise SpecError(f"cannot import {modname!r}: {one_line(exc)}", file="TARGET") from None
    obj: Any = mod
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SpecError(f"{modname!r} has no attribute {attr!r}", file="TARGET")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SpecError(f"{target!r} is not callable ({type(obj).__name__})", file="TARGET")
    try:
        with torch.device("meta"):
            module = obj(**kwargs)
    except Exception:  # noqa: BLE001: some models compute with tensors while built
        try:  # (RegNet): build them for real, then drop the weights
            module = obj(**kwargs)
        except Exception as exc:  # noqa: BLE001: the callable's own refusal, quoted
            raise SpecError(f"{target}(**{json.dumps(kwargs)}) failed: {one_line(exc)}",
                            file="TARGET") from None
        if isinstance(module, nn.Module):
            module = module.to("meta")
    if not isinstance(module, nn.Module):
        raise SpecError(f"{target} returned {type(module).__name__}, not a torch.nn.Module",
                        file="TARGET")
    return module.eval()


def provenance_lines(target: str, kwargs: dict[str, Any]) -> list[str]:
    from importlib import metadata

    from .. import __version__

    package = target.partition(":")[0].split(".")[0]
    versions = [f"torch {torch.__version__}"]
    try:
        if package != "torch":
            versions.append(f"{package} {metadata.version(package)}")
    except metadata.PackageNotFoundError:
        pass
    return [f"Imported by netcalc {__version__} from {target}, kwargs {json.dumps(kwargs)}",
            f"({', '.join(versions)}); eval mode. MACs measured by FlopCounterMode."]


def import_target(target: str, kwargs: dict[str, Any],
                  inputs: list[tuple[str, tuple[int, ...], str]], *,
                  opaque: bool = False) -> Imported:
    """``netcalc import TARGET``: the module built from TARGET and its spec text."""
    module = load_target(target, kwargs)
    if not inputs:
        raise SpecError("give the input's per-sample shape, e.g. --input 3x224x224",
                        file="--input")
    named = _named_inputs(module, inputs)
    text = _spec(module, named, target.partition(":")[2], opaque,
                 provenance_lines(target, kwargs))
    return Imported(text, module, named)


def verify(imported: Imported):
    """The round trip: the spec's cross-check (analysis against its built module), plus
    the built module against the source: state_dict keys and shapes, and MACs."""
    from .roundtrip import roundtrip

    return roundtrip(imported.text, imported.module, imported.inputs)
