"""The layer registry: importing this package registers every layer type.

Adding a layer type means adding one class with the ``@register`` decorator to the
module of its family (or a new module here: every module of this package is
imported). The CLI, ``netcalc layers``, ``netcalc schema`` and the torch builder all
read :data:`REGISTRY`.
"""

import importlib
import pkgutil

from .base import REGISTRY, Layer, TensorInfo, register

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["REGISTRY", "Layer", "TensorInfo", "register"]
