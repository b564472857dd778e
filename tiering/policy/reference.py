"""The per-row reference evaluator: the language's meaning in plain Python.

``evaluate_row(ast, row, now)`` computes what the compiled pyarrow expression
computes, one row at a time, with no pyarrow involved. It is the oracle of the
property test and the engine behind ``explain``; planners use the vectorized
form for whole inventories.

It mirrors Arrow's arithmetic exactly: integers compare exactly with integers,
anything meeting a float is converted to float, arithmetic is IEEE float64
(``x / 0`` is ``inf``/``nan``, never an exception).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from tiering.policy import patterns
from tiering.policy.fields import FIELDS, row_value
from tiering.policy.syntax import (
    TEXT, And, Arith, ClassRef, Compare, FieldRef, InList, Literal, Match, Neg, Node, Not, Or,
)

COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def divide(a: float, b: float) -> float:
    """IEEE 754 division, as float64 kernels do it."""
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


_ARITH: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": divide,
}


def compare(op: str, left: Any, right: Any) -> bool:
    """``left op right``, converting both to float when either is a float."""
    if isinstance(left, float) or isinstance(right, float):
        left, right = float(left), float(right)
    return COMPARE[op](left, right)


def field_value(name: str, row: Mapping[str, Any], now: int) -> Any:
    """A field's value for one row; text fields as bytes."""
    value = row_value(name, row, now)
    if FIELDS[name].kind == TEXT and isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return value


def evaluate_row(ast: Node, row: Mapping[str, Any], now: int) -> Any:
    """The value of a checked tree for one row (a dict keyed like ``SCHEMA``, plus
    optional catalog keys); ``now`` in ns since the epoch. Conditions give a bool."""
    if isinstance(ast, Literal):
        return ast.value
    if isinstance(ast, FieldRef):
        return field_value(ast.name, row, now)
    if isinstance(ast, ClassRef):
        return evaluate_row(ast.body, row, now)
    if isinstance(ast, And):
        return all(evaluate_row(item, row, now) for item in ast.items)
    if isinstance(ast, Or):
        return any(evaluate_row(item, row, now) for item in ast.items)
    if isinstance(ast, Not):
        return not evaluate_row(ast.operand, row, now)
    if isinstance(ast, Compare):
        return compare(ast.op, evaluate_row(ast.left, row, now), evaluate_row(ast.right, row, now))
    if isinstance(ast, InList):
        value = evaluate_row(ast.left, row, now)
        found = any(compare("==", value, item.value) for item in ast.items)
        return found != ast.negated
    if isinstance(ast, Match):
        return patterns.matches(ast.op, ast.pattern, evaluate_row(ast.left, row, now))
    if isinstance(ast, Neg):
        return -float(evaluate_row(ast.operand, row, now))
    if isinstance(ast, Arith):
        left, right = evaluate_row(ast.left, row, now), evaluate_row(ast.right, row, now)
        return _ARITH[ast.op](float(left), float(right))
    raise TypeError(f"not a checked expression: {ast!r}")
