"""netcalc: shapes, receptive fields, params, MACs and memory of a network from a YAML spec.

The analytic core never imports torch::

    import netcalc
    report = netcalc.analyze("specs/resnet50.yaml", batch=8)
    report.totals.macs      # 8 * 4_089_184_256

The torch builder and cross-check live in :mod:`netcalc.torch` (the ``torch`` extra).
"""

from __future__ import annotations

from pathlib import Path

from .analysis import LayerResult, Report, Totals, analyze_graph
from .dtypes import Dtypes
from .errors import SpecError
from .graph import Graph, build
from .perf import paused_gc
from .spec import Spec, load, parse
from .training import TrainOptions

__version__ = "0.1.0"


@paused_gc()  # once around parse, build and analysis: see netcalc.perf
def analyze(spec: str | Path | Spec, *, batch: int = 1, dtype: str | Dtypes = "float32",
            input_shapes: dict[str, tuple[int, ...]] | None = None,
            train: TrainOptions | None = None) -> Report:
    """Analyse a spec (a path, or an already parsed :class:`Spec`); with ``train``, for
    a training step (netcalc.training). ``dtype``: one dtype, or ``Dtypes.of("float16",
    weight="int4", quant_group_size=128)`` for weights, activations and KV cache apart."""
    if not isinstance(spec, Spec):
        spec = load(spec)
    return analyze_graph(build(spec, batch, input_shapes), dtype,
                         train.validate() if train is not None else None)


__all__ = ["analyze", "analyze_graph", "build", "load", "parse", "Dtypes", "Graph",
           "LayerResult", "Report", "Spec", "SpecError", "Totals", "TrainOptions", "__version__"]
