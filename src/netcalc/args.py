"""Typed layer arguments: validation, defaults and their JSON Schema.

A layer class declares its arguments as class attributes::

    class Conv2d(Layer):
        out_channels = Arg(PosInt, required=True)
        kernel_size = Arg(Ints(), required=True)
        stride = Arg(Ints(), 1)

The same declaration validates specs, fills defaults, documents the layer in
``netcalc layers`` and generates ``netcalc schema``. Names and defaults are torch.nn's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

REQUIRED: Any = object()  # sentinel: the argument has no default
INT64_MAX = 2**63 - 1  # torch stores sizes, strides and paddings as int64


class ArgType:
    """A value kind. ``check`` returns the normalised value or raises ValueError."""

    name = "value"

    def check(self, value: Any, nd: int) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def schema(self) -> dict:  # pragma: no cover - interface
        raise NotImplementedError


def is_int(v: Any) -> bool:
    """An int from YAML, not a bool (bool is an int subclass)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_num(v: Any) -> bool:
    """An int or float from YAML, not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int64(values: Sequence[int]) -> None:
    if any(not -INT64_MAX - 1 <= v <= INT64_MAX for v in values):
        raise ValueError(f"values must fit in int64 (|v| < 2**63), got {list(values)}")


@dataclass(frozen=True)
class Int(ArgType):
    """An integer, at least ``min`` when given."""

    min: int | None = None

    @property
    def name(self) -> str:  # type: ignore[override]
        return {None: "int", 0: "int >= 0", 1: "int >= 1"}.get(self.min, f"int >= {self.min}")

    def check(self, value: Any, nd: int) -> int:
        if not is_int(value):
            raise ValueError(f"expected {self.name}, got {value!r}")
        if self.min is not None and value < self.min:
            raise ValueError(f"must be {self.name}, got {value}")
        _int64((value,))
        return value

    def schema(self) -> dict:
        s: dict = {"type": "integer"}
        if self.min is not None:
            s["minimum"] = self.min
        return s


@dataclass(frozen=True)
class Float(ArgType):
    """A real number (an int is accepted) within ``min`` and ``max`` when given."""

    min: float | None = None
    max: float | None = None
    name = "number"

    def check(self, value: Any, nd: int) -> float:
        if not is_num(value):
            raise ValueError(f"expected a number, got {value!r}")
        if math.isnan(value):  # it would pass every comparison below
            raise ValueError("expected a number, got nan")
        if self.min is not None and value < self.min:
            raise ValueError(f"must be >= {self.min}, got {value}")
        if self.max is not None and value > self.max:
            raise ValueError(f"must be <= {self.max}, got {value}")
        return value

    def schema(self) -> dict:
        s: dict = {"type": "number"}
        if self.min is not None:
            s["minimum"] = self.min
        if self.max is not None:
            s["maximum"] = self.max
        return s


@dataclass(frozen=True)
class Bool(ArgType):
    """true or false."""

    name = "bool"

    def check(self, value: Any, nd: int) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value

    def schema(self) -> dict:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice(ArgType):
    """One of the strings ``choices``."""

    choices: tuple[str, ...]

    @property
    def name(self) -> str:  # type: ignore[override]
        return "|".join(self.choices)

    def check(self, value: Any, nd: int) -> str:
        if value not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}; got {value!r}")
        return value

    def schema(self) -> dict:
        return {"enum": list(self.choices)}


@dataclass(frozen=True)
class Ints(ArgType):
    """An int or a list of ``nd`` ints (torch's ``_size_any_t``), normalised to a tuple."""

    min: int = 1

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"int >= {self.min} or list of them"

    def check(self, value: Any, nd: int) -> tuple[int, ...]:
        if is_int(value):
            values = (value,) * nd
        elif isinstance(value, (list, tuple)) and all(is_int(v) for v in value):
            if len(value) != nd:
                raise ValueError(f"expected {nd} values, got {len(value)}")
            values = tuple(value)
        else:
            raise ValueError(f"expected an int or a list of {nd} ints, got {value!r}")
        if any(v < self.min for v in values):
            raise ValueError(f"values must be >= {self.min}, got {value!r}")
        _int64(values)
        return values

    def schema(self) -> dict:
        item = {"type": "integer", "minimum": self.min}
        return {"oneOf": [item, {"type": "array", "items": item}]}


@dataclass(frozen=True)
class IntList(ArgType):
    """A list of ints of any length (shapes, dims); a bare int is a list of one."""

    min_value: int | None = None
    name = "list of ints"

    def check(self, value: Any, nd: int) -> tuple[int, ...]:
        if is_int(value):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(is_int(v) for v in value):
            raise ValueError(f"expected a list of ints, got {value!r}")
        if self.min_value is not None and any(v < self.min_value for v in value):
            raise ValueError(f"values must be >= {self.min_value}, got {list(value)}")
        _int64(value)
        return tuple(value)

    def schema(self) -> dict:
        item: dict = {"type": "integer"}
        if self.min_value is not None:
            item["minimum"] = self.min_value
        return {"oneOf": [item, {"type": "array", "items": item}]}


@dataclass(frozen=True)
class OneOf(ArgType):
    """The first alternative that accepts the value wins (e.g. padding: int|'same')."""

    options: tuple[ArgType, ...]

    @property
    def name(self) -> str:  # type: ignore[override]
        return " or ".join(o.name for o in self.options)

    def check(self, value: Any, nd: int) -> Any:
        for option in self.options:
            try:
                return option.check(value, nd)
            except ValueError:
                continue
        raise ValueError(f"expected {self.name}, got {value!r}")

    def schema(self) -> dict:
        return {"anyOf": [o.schema() for o in self.options]}


PosInt = Int(1)
NonNegInt = Int(0)
AnyInt = Int()
Probability = Float(0.0, 1.0)


@dataclass
class Arg:
    """One layer argument: its kind, default and meaning.

    ``inferred`` marks input-size arguments (in_channels, in_features, ...): they are
    computed from the input shape and, when given, checked against it.

    ``name`` is the key in specs and torch's keyword; it defaults to the class
    attribute the Arg is declared as, which is where the layer keeps the value
    (``attr``). Give ``name`` only when they must differ: Reshape's ``shape`` argument
    lives in ``target_shape``, since ``shape`` is the contract's shape rule.
    """

    type: ArgType
    default: Any = REQUIRED
    doc: str = ""
    inferred: bool = False
    name: str = ""
    attr: str = field(default="", init=False)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED and not self.inferred

    def describe_default(self) -> str:
        if self.inferred:
            return "inferred"
        if self.default is REQUIRED:
            return "required"
        return repr(self.default) if not isinstance(self.default, str) else self.default


def schema_for(args: Sequence[Arg]) -> dict:
    """JSON Schema of one layer's argument mapping."""
    props = {}
    for a in args:
        s = dict(a.type.schema())
        if a.doc:
            s["description"] = a.doc
        if not a.required and a.default is not REQUIRED and a.default is not None:
            s["default"] = list(a.default) if isinstance(a.default, tuple) else a.default
        if a.default is None:
            s = {"anyOf": [s, {"type": "null"}]} | ({"description": a.doc} if a.doc else {})
        props[a.name] = s
    return {
        "type": "object",
        "properties": props,
        "required": [a.name for a in args if a.required],
        "additionalProperties": False,
    }
