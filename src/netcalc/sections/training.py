"""The training section: per-layer backward MACs and saved bytes, and a step's memory
(:mod:`netcalc.training`), for reports made with training options."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import register_section

if TYPE_CHECKING:
    from ..analysis import Report


@register_section
class _Training:
    name = "training"

    def rows(self, report: "Report") -> None:
        if report.train is not None:
            from ..training import analyze_training

            report.sections[self.name] = analyze_training(report)

    def section(self, report: "Report") -> dict[str, Any] | None:
        return report.sections.get(self.name)
