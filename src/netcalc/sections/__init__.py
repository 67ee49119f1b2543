"""Report sections that register themselves: the analysis imports none of them.

A section is an object with a ``name`` and two steps, run by
:func:`netcalc.analysis.analyze_graph` in registration order: ``rows(report)`` may
fill per-layer metrics before the totals are summed, ``section(report)`` returns the
section's data (or None when it does not apply) once the totals are known. Every
module of this package is imported here, so defining a section is registering it.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..analysis import Report


class Section(Protocol):
    name: str

    def rows(self, report: "Report") -> None: ...

    def section(self, report: "Report") -> dict[str, Any] | None: ...


SECTIONS: list[Section] = []


def register_section(cls: type) -> type:
    """Class decorator: register one instance of a section."""
    SECTIONS.append(cls())
    return cls


for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    importlib.import_module(f"{__name__}.{_info.name}")
