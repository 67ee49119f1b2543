"""A Hugging Face ``config.json`` read as data, every value checked where it is read.

The file is read with :func:`netcalc.spec.read_text` (a regular file, bounded size,
UTF-8) and parsed with :mod:`json` (no code runs, nothing is downloaded). The sizes
(hidden size, layers, heads, vocabulary, ...) must be given, as every published config
gives them; options a config may leave out (biases, tying, eps, dropouts, rope base)
take the default of transformers' config class of the family, written in the mapping.
A value of the wrong type or out of range is a :class:`SpecError` located at its key in
the file (``config.json:LINE:COL: num_attention_heads: ...``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import Mark, SpecError

#: a size read from a config: large enough for any published model, small enough that
#: products of a few of them stay far from what the analysis refuses anyway
MAX_SIZE = 1 << 31


@dataclass
class HFConfig:
    """The parsed config and where each top-level key sits in the file."""

    path: str
    text: str
    data: dict[str, Any]
    used: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, path: str) -> "HFConfig":
        from ..spec import read_text

        text = read_text(path)
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise SpecError(f"not JSON: {exc.msg}", Mark(exc.lineno, exc.colno), path) from None
        except (ValueError, RecursionError) as exc:
            raise SpecError(f"not JSON: {exc}", None, path) from None
        if not isinstance(data, dict):
            raise SpecError("not a Hugging Face config: expected a JSON object with "
                            f"\"model_type\", got a JSON {type(data).__name__}", Mark(1, 1),
                            path)
        return cls(path, text, data)

    # ------------------------------------------------------------------ places
    def mark(self, key: str) -> Mark | None:
        """Line and column of ``"key":`` in the file (the first occurrence)."""
        needle = json.dumps(key)
        at = self.text.find(needle + ":")
        if at < 0:
            at = self.text.find(needle)
        if at < 0:
            return None
        line = self.text.count("\n", 0, at) + 1
        return Mark(line, at - (self.text.rfind("\n", 0, at) + 1) + 1)

    def fail(self, key: str | None, message: str) -> SpecError:
        where = self.mark(key) if key else Mark(1, 1)
        return SpecError(f"{key}: {message}" if key else message, where, self.path)

    # ------------------------------------------------------------------ values
    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        v = self.data.get(key)
        return default if v is None else v

    def int(self, key: str, default: int | None = None, *, low: int = 1) -> int:
        v = self.raw(key, default)
        if v is None:
            raise self.fail(None, f"{key!r} is missing: the config must give it")
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(key, f"expected an integer, got {_show(v)}")
        if not low <= v <= MAX_SIZE:
            raise self.fail(key, f"{v} is out of range ({low}..{MAX_SIZE:,})")
        return v

    def float(self, key: str, default: float) -> float:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self.fail(key, f"expected a number, got {_show(v)}")
        if v < 0:
            raise self.fail(key, f"{v} is negative")
        return float(v)

    def prob(self, key: str, default: float = 0.0) -> float:
        v = self.float(key, default)
        if v > 1:
            raise self.fail(key, f"{v} is not a probability (0..1)")
        return v

    def bool(self, key: str, default: bool) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self.fail(key, f"expected true or false, got {_show(v)}")
        return v

    def str(self, key: str, default: str | None = None) -> str:
        v = self.raw(key, default)
        if not isinstance(v, str):
            raise self.fail(key, f"expected a string, got {_show(v)}")
        return v

    def choice(self, key: str, default: str, table: dict[str, Any]) -> Any:
        """``table[value]``: an activation name, say, with the known ones listed."""
        v = self.str(key, default)
        if v not in table:
            raise self.fail(key, f"{json.dumps(v)[:60]} is not supported "
                                 f"({', '.join(sorted(table))})")
        return table[v]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _show(v: Any) -> str:
    text = json.dumps(v)
    return text if len(text) <= 40 else text[:40] + "…"
