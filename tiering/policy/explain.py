"""Readable reasons: why one row does or does not match a condition.

``explain(ast, row, now)`` returns one line per comparison that decided the
outcome, with the row's actual values in their units::

    ["path matches 'shards/**'", "atime_age 41d > 30d", "size 3.2GiB >= 1GiB"]

A comparison that failed reads with the opposite operator (``size 12MiB < 1GiB``,
``path does not match 'shards/**'``). For ``and`` that is true, every operand
explains; for ``and`` that is false, the first false one does; ``or`` the other
way round. Lines from a named class start with its name: ``checkpoint: path matches '**/ckpt-*'``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from tiering.policy import reference
from tiering.policy.fields import id_name
from tiering.policy.reference import evaluate_row
from tiering.policy.syntax import (
    BOOL, DURATION, ID, SIZE, TEXT, TIME, And, ClassRef, Compare, FieldRef, InList, Literal, Match, Node, Not, Or,
    kind_of,
)
from tiering.core.units import format_size

NEGATED = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_DURATION_STEPS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def explain(ast: Node, row: Mapping[str, Any], now: int) -> list[str]:
    """The reasons behind ``evaluate_row(ast, row, now)``, one readable line each."""
    if isinstance(ast, And | Or):
        outcomes = [(item, bool(evaluate_row(item, row, now))) for item in ast.items]
        deciding = not isinstance(ast, And)  # an 'or' is decided by a true operand
        for item, outcome in outcomes:
            if outcome == deciding:
                return explain(item, row, now)
        return [line for item, _ in outcomes for line in explain(item, row, now)]
    if isinstance(ast, Not):
        return explain(ast.operand, row, now)
    if isinstance(ast, ClassRef):
        return [f"{ast.name}: {line}" for line in explain(ast.body, row, now)]
    return [_leaf(ast, row, now, bool(evaluate_row(ast, row, now)))]


def _leaf(ast: Node, row: Mapping[str, Any], now: int, outcome: bool) -> str:
    if isinstance(ast, Compare):
        op = ast.op if outcome else NEGATED[ast.op]
        return f"{_operand(ast.left, row, now)} {op} {_operand(ast.right, row, now)}"
    if isinstance(ast, InList):
        shown = ", ".join(item.src for item in ast.items)
        word = "in" if outcome != ast.negated else "not in"
        return f"{_operand(ast.left, row, now)} {word} [{shown}]"
    if isinstance(ast, Match):
        left = ast.left.src if ast.left.src == "path" else _operand(ast.left, row, now)
        verb = "matches" if outcome else "does not match"
        what = "" if ast.op == "~" else "regex "
        return f"{left} {verb} {what}{_quote(ast.pattern)}"
    if isinstance(ast, FieldRef | Literal):  # a bare boolean
        return ast.src if outcome else f"not {ast.src}"
    return f"{ast.src} is {'true' if outcome else 'false'}"  # pragma: no cover - every leaf kind is above


def _operand(node: Node, row: Mapping[str, Any], now: int) -> str:
    if isinstance(node, Literal):
        return node.src
    value = format_value(kind_of(node), reference.evaluate_row(node, row, now), node)
    label = node.src if isinstance(node, FieldRef) else f"({node.src})"
    return f"{label} {value}"


def format_value(kind: str, value: Any, node: Node | None = None) -> str:
    """A value as a person reads it: ``3.2GiB``, ``41d``, ``2024-01-31T00:00:00Z``, ``'a/b'``."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if kind == SIZE:
        return format_size(round(value))
    if kind == DURATION:
        return format_duration(value)
    if kind == TIME:
        return format_time(value)
    if kind == TEXT:
        return _quote(value)
    if kind == ID:
        return repr(id_name(node.src if isinstance(node, FieldRef) else "user", value))
    if kind == BOOL:
        return "true" if value else "false"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def format_duration(seconds: float) -> str:
    """``41d``, ``3.5h``, ``90s``, ``-2m``: the largest unit, at most one decimal."""
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    for unit, scale in _DURATION_STEPS:
        if seconds >= scale:
            return sign + f"{seconds / scale:.1f}".removesuffix(".0") + unit
    return sign + f"{seconds:.3g}s"


def format_time(ns: int) -> str:
    """ISO 8601 in UTC, to the second."""
    try:
        return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{ns}ns"


def _quote(value: bytes | str) -> str:
    """``'text'``: non-UTF-8 bytes as ``\\xff``, control characters escaped."""
    text = value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value
    text = "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or c in "'\x7f" else c for c in text)
    return f"'{text}'"
