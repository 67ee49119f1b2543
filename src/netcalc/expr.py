"""Block-argument substitution: ``$name`` and ``${expr}``, without eval.

An expression is parsed with :mod:`ast` and walked over a whitelist: integer and
float literals, argument names, ``+ - * / // %``, unary minus, parentheses,
``min(...)`` and ``max(...)``. Nothing else is accepted, so nothing in a spec is
ever executed. ``/`` is exact division: the result must be whole (``${7/2}`` is an
error, ``${7//2}`` is 3), so a block argument never turns into a fractional size.
"""

from __future__ import annotations

import ast
import functools
import operator
import re
from fractions import Fraction
from typing import Any, Mapping

from .errors import did_you_mean

MAX_EXPR_LEN = 200
MAX_ABS = 10**18  # keeps repeated multiplication from building huge integers
MAX_SUBSTITUTIONS = 8  # per string: "$a$a$a..." must not build megabytes per block instance

_WHOLE = re.compile(r"\$(?:([A-Za-z_]\w*)|\{([^{}]*)\})")  # fullmatch
_PART = re.compile(r"\$(?:([A-Za-z_]\w*)|\{([^{}]*)\})")

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}


class ExprError(ValueError):
    """An expression that is not allowed or cannot be evaluated."""


def _divide(a: Any, b: Any, text: str) -> int:
    """``a / b`` computed exactly (Fractions, no float rounding); only a whole result is
    allowed, because README promises integer arithmetic."""
    if b == 0:
        raise ExprError("division by zero")
    q = Fraction(a) / Fraction(b)
    if q.denominator != 1:
        raise ExprError(f"{text} is {float(q):g}, not an integer: `/` is exact division "
                        "(use // to round down)")
    return int(q)


def _hint(name: str, env: Mapping[str, Any]) -> str:
    return did_you_mean(name, env).replace("mean ", "mean $")


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> ast.Expression | None:
    # A block's expressions are evaluated once per instance: parse each text once.
    try:
        return ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return None


def evaluate(text: str, env: Mapping[str, Any]) -> Any:
    """Evaluate one ``${...}`` body against the block arguments in ``env``."""
    if len(text) > MAX_EXPR_LEN:
        raise ExprError(f"expression longer than {MAX_EXPR_LEN} characters")
    tree = _parse(text)
    if tree is None:
        raise ExprError(f"cannot parse expression {text!r}")

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise ExprError(f"unknown argument {node.id!r}{did_you_mean(node.id, env)}")
            value = env[node.id]
            if type(value) not in (int, float):
                raise ExprError(f"argument {node.id!r} is {value!r}, not a number")
            return value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = walk(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            a, b = walk(node.left), walk(node.right)
            if isinstance(node.op, ast.Div):
                return _divide(a, b, ast.unparse(node))
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise ExprError(f"operator {type(node.op).__name__} is not allowed")
            if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and b == 0:
                raise ExprError("division by zero")
            result = op(a, b)
            if abs(result) > MAX_ABS:
                raise ExprError("expression value is too large")
            return result
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("min", "max")
            and node.args
            and not node.keywords
        ):
            values = [walk(a) for a in node.args]
            return min(values) if node.func.id == "min" else max(values)
        raise ExprError(f"{ast.unparse(node)!r} is not allowed in an expression "
                        "(integer arithmetic + - * / // %, min, max only)")

    return walk(tree)


def substitute(value: Any, env: Mapping[str, Any]) -> Any:
    """Substitute ``$arg``/``${expr}`` in one scalar string.

    A string that is a single substitution takes the argument's type (``$planes`` ->
    64); otherwise the pieces are interpolated into a string (``conv${i}``).
    """
    if not isinstance(value, str) or "$" not in value:
        return value
    if value.count("$") > MAX_SUBSTITUTIONS:
        raise ExprError(f"more than {MAX_SUBSTITUTIONS} substitutions ($) in one string")
    whole = _WHOLE.fullmatch(value)
    if whole:
        name, expr = whole.groups()
        if name is not None:
            if name not in env:
                raise ExprError(f"unknown argument ${name}{_hint(name, env)}")
            return env[name]
        return evaluate(expr, env)

    def piece(m: re.Match) -> str:
        name, expr = m.groups()
        if name is not None:
            if name not in env:
                raise ExprError(f"unknown argument ${name}{_hint(name, env)}")
            return str(env[name])
        return str(evaluate(expr, env))

    return _PART.sub(piece, value)
