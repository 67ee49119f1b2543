"""Writing spec YAML by hand, one flow-style entry per line, as the bundled specs read
(the one value writer of both importers: ``--hf-config`` and ``torch/specwriter.py``).

Every value that reaches the text is a bool, an int, a float, None, an identifier-like
string or a list of those: strings that are not plain identifiers are quoted with
``json.dumps`` (a valid YAML double-quoted scalar), so no value read from an imported
file can add a line, a key or a comment to the spec.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: written bare: identifiers and dotted module paths (``layer1.0.conv1``)
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "none", "~"}


def value(v: Any) -> str:
    """One YAML flow value."""
    if v is None:
        return "~"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            return ".inf" if v > 0 else "-.inf" if v < 0 else ".nan"
        return float_text(v)
    if isinstance(v, str):
        if v.startswith("$") and v[1:].isidentifier():  # a block argument
            return v
        if _PLAIN.fullmatch(v) and v.lower() not in _YAML_WORDS:
            return v
        return json.dumps(v)  # a JSON string is a YAML double-quoted scalar
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no YAML form for {type(v).__name__}")


def float_text(x: float) -> str:
    """A float YAML 1.1 reads back as the same float: ``1e-05`` would be a string
    there (its resolver wants a dot and a signed exponent), ``1.0e-05`` is a float."""
    text = repr(float(x))
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if e and exponent[0] not in "+-":
        exponent = "+" + exponent
    return mantissa + (("e" + exponent) if e else "")


def entry(name: str | None, type_: str, args: Any = None, *, src: Any = None,
          repeat: int | None = None, tie: str | None = None, note: str = "") -> str:
    """``{name: NAME, Type: ARGS, from: SRC, ...}`` (a comment after it when ``note``)."""
    parts = [] if name is None else [f"name: {name}"]
    parts.append(f"{type_}: {value(args)}")
    if src is not None:
        parts.append(f"from: {value(src)}")
    if repeat is not None:
        parts.append(f"repeat: {repeat}")
    if tie is not None:
        parts.append(f"tie: {tie}")
    line = "{" + ", ".join(parts) + "}"
    return f"{line}   # {note}" if note else line


def block(name: str, layers: list[str], *, inputs: list[str] | None = None,
          args: dict[str, Any] | None = None, numbered: bool = False,
          note: str = "") -> list[str]:
    """A block definition under ``blocks:`` (two spaces in), its layers listed."""
    lines = [f"  {name}:" + (f"   # {note}" if note else "")]
    if numbered:
        lines.append("    numbered: true")
    if args:
        lines.append(f"    args: {value(args)}")
    if inputs is not None:
        lines.append(f"    inputs: {value(inputs)}")
    lines.append("    layers:")
    lines += [f"      - {line}" for line in layers]
    return lines


def comment(text: str) -> str:
    """A comment line; text from outside is reduced to one printable line."""
    from ..textsafe import printable

    return "# " + printable(text) if text else "#"
