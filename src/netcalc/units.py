"""Human units, both ways: 11_689_512 -> '11.7 M'; '4.09G' -> 4_090_000_000.

Counts use decimal SI prefixes (k, M, G, T, P) as torchinfo and the papers do; bytes
use decimal kB/MB/GB too, and binary KiB/MiB/GiB are accepted when parsing.
"""

from __future__ import annotations

import re
from fractions import Fraction

_PREFIX = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_NUMBER = re.compile(
    r"^\s*(?P<num>[0-9][0-9_,]*(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*"
    r"(?P<prefix>Ki|Mi|Gi|Ti|[kKMGTP]?)\s*(?P<unit>B|bytes?)?\s*$"
)


def human(n: int | float, unit: str = "") -> str:
    """Three significant figures with an SI prefix: 11689512 -> '11.7 M'."""
    value = float(n)
    for prefix in ("P", "T", "G", "M", "k"):
        scale = _PREFIX[prefix]
        if abs(value) >= scale:
            v = value / scale
            text = f"{v:.3g}" if v < 1000 else f"{v:.0f}"
            return f"{text} {prefix}{unit}".rstrip()
    return f"{int(value) if value == int(value) else value:g} {unit}".rstrip()


def human_bytes(n: int) -> str:
    return human(n, "B")


def parse_quantity(text: str | int | float) -> Fraction:
    """Parse '5M', '4.09G', '20MB', '1.5 GiB', '25_557_032' exactly (as a Fraction)."""
    if isinstance(text, bool):
        raise ValueError(f"expected a number, got {text!r}")
    if isinstance(text, int):
        return Fraction(text)
    if isinstance(text, float):
        return Fraction(str(text))
    m = _NUMBER.match(str(text))
    if not m:
        raise ValueError(f"cannot read {text!r} as a number (e.g. 25557032, 4.09G, 20MB)")
    num = Fraction(m["num"].replace("_", "").replace(",", ""))
    prefix = m["prefix"]
    return num * (_BINARY[prefix] if prefix in _BINARY else _PREFIX[prefix])
