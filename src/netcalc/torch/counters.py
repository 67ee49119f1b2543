"""What the tools count, per layer node of a built model: the torch side of a cross-check.

Output shapes from one forward (hooks), owned parameters and buffers, and the MACs or
FLOPs of fvcore (``FlopCountAnalysis.by_module``), torch's ``FlopCounterMode`` and
torchinfo (Mult-Adds of the leaf modules below a node), all under one protocol
(:func:`counting_mode`): no autograd, no fused MultiheadAttention fast path (its
kernels hide their products from every counter), the tools' warnings silenced.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from typing import Iterator

import torch

from . import guard
from .build import NetcalcModule, flatten_outputs


@contextlib.contextmanager
def counting_mode() -> Iterator[None]:
    """The protocol of every count: no autograd, no fused MHA fast path, quiet tools."""
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    logger = logging.getLogger("fvcore")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        logger.setLevel(level)


class LayerFailed(Exception):
    """A layer's module raised in the forward pass (``cause``)."""

    def __init__(self, layer: str, cause: BaseException):
        super().__init__(f"{layer}: {guard.one_line(cause)}")
        self.layer = layer
        self.cause = cause


def observe(model: NetcalcModule, inputs: tuple[torch.Tensor, ...]) -> dict[str, list[tuple[int, ...]]]:
    """Output shapes of every layer node from one forward pass (forward hooks). A layer
    that raises is named by :class:`LayerFailed` (running out of memory is not its fault)."""
    shapes: dict[str, list[tuple[int, ...]]] = {}
    running: list[str] = []
    handles = []
    for name, module in model.named_layers():
        def pre(mod, args, name=name):
            running.append(name)

        def hook(mod, args, out, name=name):
            if name not in shapes:  # a module shared by two nodes: first call
                shapes[name] = [tuple(t.shape) for t in flatten_outputs(out)
                                if isinstance(t, torch.Tensor)]
        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(hook)]
    try:
        with counting_mode():
            model(*inputs)
    except guard.TORCH_ERRORS as exc:
        if not running or guard.is_out_of_memory(exc):
            raise
        raise LayerFailed(running[-1], exc) from exc
    finally:
        for h in handles:
            h.remove()
    return shapes


def owned_counts(model: NetcalcModule) -> dict[str, tuple[int, int, int]]:
    """(params, trainable params, buffer elements) of each layer; a shared Parameter
    counts on the first layer (graph order) that holds it."""
    seen: set[int] = set()
    seen_buf: set[int] = set()
    out = {}
    for name, module in model.named_layers():
        params = trainable = buffers = 0
        for p in module.parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            params += p.numel()
            trainable += p.numel() if p.requires_grad else 0
        for b in module.buffers():
            if id(b) in seen_buf:
                continue
            seen_buf.add(id(b))
            buffers += b.numel()
        out[name] = (params, trainable, buffers)
    return out


def count_fvcore(model: NetcalcModule, inputs: tuple[torch.Tensor, ...]) -> tuple[dict[str, int], int]:
    """fvcore's FlopCountAnalysis per layer node and in total (default op handles)."""
    with counting_mode():
        from fvcore.nn import FlopCountAnalysis

        fa = FlopCountAnalysis(model, inputs)
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        fa.tracer_warnings("none")
        by_module = fa.by_module()
        total = fa.total()
    return {name: int(by_module.get(name, 0)) for name in model.layer_names}, int(total)


def count_flopcounter(model: NetcalcModule, inputs: tuple[torch.Tensor, ...]) -> tuple[dict[str, int], int]:
    """torch.utils.flop_counter.FlopCounterMode per layer node and in total."""
    from torch.utils.flop_counter import FlopCounterMode

    with counting_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            model(*inputs)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    per = {}
    for name in model.layer_names:
        per[name] = int(sum(counts.get(f"{root}.{name}", {}).values()))
    return per, int(counter.get_total_flops())


def torchinfo_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchinfo") is not None


def count_torchinfo(model: NetcalcModule, inputs: tuple[torch.Tensor, ...]) -> tuple[dict[str, int], int]:
    """torchinfo's Mult-Adds: per layer node, the sum over the leaf modules below it."""
    import torchinfo

    device = inputs[0].device if inputs else torch.device("cpu")
    with counting_mode():
        stats = torchinfo.summary(model, input_data=list(inputs), verbose=0, depth=1_000_000,
                                  device=device)
    by_id: dict[int, int] = {}
    for info in stats.summary_list:
        if info.is_leaf_layer:
            by_id[id(info.module)] = by_id.get(id(info.module), 0) + int(info.macs)
    per = {}
    for name, module in model.named_layers():
        per[name] = sum(by_id.get(id(m), 0) for m in {id(x): x for x in module.modules()}.values())
    return per, int(stats.total_mult_adds)


def versions(tools: tuple[str, ...] = ()) -> dict[str, str]:
    """The versions of torch and of the counting tools installed."""
    from importlib import metadata

    out = {"torch": torch.__version__}
    for dist in ("fvcore", "torchinfo"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
