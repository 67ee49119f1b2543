"""Human units, both ways: 11_689_512 -> '11.7 M'; '4.09G' -> 4_090_000_000.

Counts use decimal SI prefixes (k, M, G, T, P) as torchinfo and the papers do; bytes
use decimal kB/MB/GB too, and binary KiB/MiB/GiB are accepted when parsing.

Parsed quantities are bounded before they are built: at most 40 digits, an exponent
within ±30 and a value within 10^-30..10^30, so that ``1e99999999`` is refused at once
instead of becoming a Fraction with a hundred-million-digit numerator.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

_PREFIX = {"": 1, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
# fullmatch on stripped text, one \s* per gap: adjacent \s* runs around optional parts
# made a quoted "1", 1,000 spaces, "x" take 14 s to refuse (cubic backtracking)
_NUMBER = re.compile(
    r"(?P<int>[0-9][0-9_,]*)(?:\.(?P<frac>[0-9]+))?(?:[eE](?P<exp>[+-]?[0-9]+))?"
    r"\s*(?:(?P<prefix>Ki|Mi|Gi|Ti|[kKMGTP])\s*)?(?P<unit>B|bytes?)?"
)
MAX_DIGITS = 40
MAX_EXPONENT = 30
MAX_ABS = Fraction(10**30)
MIN_ABS = Fraction(1, 10**30)


def human(n: int | float, unit: str = "") -> str:
    """Three significant figures with an SI prefix: 11689512 -> '11.7 M'."""
    try:
        value = float(n)
    except OverflowError:  # an int beyond a float's range
        return f"{significant(n)} {unit}".rstrip()
    for prefix in ("P", "T", "G", "M", "k"):
        scale = _PREFIX[prefix]
        if abs(value) >= scale:
            v = value / scale
            text = f"{v:.3g}" if v < 1000 else f"{v:.0f}"
            return f"{text} {prefix}{unit}".rstrip()
    return f"{int(value) if value == int(value) else value:g} {unit}".rstrip()


def human_bytes(n: int) -> str:
    return human(n, "B")


def significant(x: int | Fraction, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures ('1.23e+45'), even beyond a float's range."""
    try:
        return f"{float(x):.{digits}g}"
    except OverflowError:
        from decimal import Decimal, localcontext

        x = Fraction(x)
        with localcontext() as ctx:
            ctx.prec = digits + 2
            return f"{Decimal(x.numerator) / Decimal(x.denominator):.{digits}g}"


def parse_quantity(text: str | int | float) -> Fraction:
    """Parse '5M', '4.09G', '20MB', '1.5 GiB', '25_557_032' exactly (as a Fraction)."""
    if isinstance(text, bool):
        raise ValueError(f"expected a number, got {text!r}")
    if isinstance(text, int):
        return _bounded(Fraction(text))
    if isinstance(text, float):
        if not math.isfinite(text):
            raise ValueError(f"expected a finite number, got {text!r}")
        return _bounded(Fraction(str(text)))  # the decimal written: 0.1 is 1/10
    m = _NUMBER.fullmatch(str(text).strip())
    if not m:
        raise ValueError(f"cannot read {_short(str(text))} as a number (e.g. 25557032, 4.09G, 20MB)")
    digits = m["int"].replace("_", "").replace(",", "") + (m["frac"] or "")
    exp = m["exp"] or "0"
    if len(digits) > MAX_DIGITS or len(exp.lstrip("+-")) > 3 or abs(int(exp)) > MAX_EXPONENT:
        raise ValueError(f"{_short(text)} is beyond the range of quantities (at most "
                         f"{MAX_DIGITS} digits, exponent within ±{MAX_EXPONENT})")
    num = Fraction(int(digits), 10 ** len(m["frac"] or "")) * Fraction(10) ** int(exp)
    prefix = m["prefix"] or ""
    return _bounded(num * (_BINARY[prefix] if prefix in _BINARY else _PREFIX[prefix]))


def _bounded(x: Fraction) -> Fraction:
    if x and not MIN_ABS <= abs(x) <= MAX_ABS:
        raise ValueError(f"{significant(x)} is beyond the range of quantities (10^-30 to 10^30)")
    return x


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "…"
