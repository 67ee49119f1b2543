"""Torch side of netcalc (needs the ``torch`` extra).

:mod:`netcalc.torch.modules` holds the small generic modules that layers without a
torch.nn counterpart build in their ``torch_module`` (Add, Mul, Concat, Reshape,
Permute, MatMul). Nothing here is imported by the analytic core.
"""

from .build import build, build_module, example_inputs  # noqa: E402,F401

from .importer import to_spec  # noqa: E402,F401 - `netcalc import`'s Python API (issue 13)
