"""Name resolution and type checking: a parsed tree to a checked one.

Names become fields (``FieldRef``) or named classes (``ClassRef``); literals
are coerced to the kind of what they are compared with (a string compared with
a timestamp is an ISO date, with ``user``/``group`` a name resolved to its id
now, with ``state``/``type`` one of the known values); every value gets a kind
and every operator is checked against the kinds it is given.

Kinds compare with themselves; a plain number also compares with sizes (as
bytes) and durations (as seconds). Text, booleans and users/groups allow only
``==``/``!=``/``in``; glob and regex matches need text. Arithmetic works on
numbers, sizes and durations: ``size + 1MiB`` is a size, ``atime_age * 2`` a
duration, ``size / 1GiB`` and ``size * atime_age`` plain numbers.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

import pyarrow as pa

from tiering.policy import patterns
from tiering.policy.fields import FIELDS, group_id, user_id
from tiering.policy.lexer import parse_date
from tiering.core.typed import did_you_mean
from tiering.policy.syntax import (
    BOOL, DURATION, ID, NUMBER, NUMERIC, SIZE, TEXT, TIME, And, Arith, ClassRef, Compare, ExpressionError, FieldRef,
    InList, Literal, Match, Name, Neg, Node, Not, Or, describe, kind_of,
)

EXPECTED = {
    NUMBER: "a number",
    SIZE: "a size like 64KiB or 1.5GiB (or a number of bytes)",
    DURATION: "a duration like 30d, 12h or 90m (or a number of seconds)",
    TIME: "a date like 2024-01-31 or 2024-01-31T12:00:00Z",
    TEXT: "a quoted string",
    BOOL: "true, false or a condition",
    ID: "a quoted name or a numeric id",
}
TEXT_FIELDS = ", ".join(name for name, spec in FIELDS.items() if spec.kind == TEXT)
_INT64 = range(-(1 << 63), 1 << 63)


@dataclass(frozen=True)
class Env:
    """What names mean while checking one expression."""

    text: str
    classes: Mapping[str, Node]  # class name -> its checked condition
    tiers: Collection[str] | None = None  # known tier names; None: not validated

    def error(self, pos: int, detail: str) -> ExpressionError:
        return ExpressionError(self.text, pos, detail)


def check_condition(node: Node, env: Env) -> Node:
    """``node`` checked as a condition (it must yield true or false)."""
    checked = _check(node, env, condition=True)
    if kind_of(checked) != BOOL:
        hint = f"; compare it, e.g. {checked.src} > 1GiB" if kind_of(checked) == SIZE else ""
        raise env.error(checked.pos, f"expected a condition, found {describe(checked)}{hint}")
    return checked


def check_value(node: Node, env: Env) -> Node:
    """``node`` checked as a number (a weight): a number, size or duration."""
    checked = _check(node, env, condition=False)
    if kind_of(checked) not in NUMERIC:
        raise env.error(checked.pos, f"expected a number, size or duration, found {describe(checked)}")
    return checked


def _check(node: Node, env: Env, condition: bool) -> Node:
    if isinstance(node, Name):
        return _name(node, env, condition)
    if isinstance(node, Literal):
        if node.kind in (NUMBER, SIZE) and isinstance(node.value, int) and node.value not in _INT64:
            raise env.error(node.pos, f"number {node.src} is too large")
        return node
    if isinstance(node, And | Or):
        return replace(node, items=tuple(check_condition(item, env) for item in node.items))
    if isinstance(node, Not):
        return replace(node, operand=check_condition(node.operand, env))
    if isinstance(node, Compare):
        return _compare(node, env)
    if isinstance(node, InList):
        return _in_list(node, env)
    if isinstance(node, Match):
        return _match(node, env)
    if isinstance(node, Arith):
        return _arith(node, env)
    if isinstance(node, Neg):
        operand = _numeric(node.operand, env, "negate")
        return replace(node, operand=operand, kind=kind_of(operand))
    raise TypeError(f"cannot check {node!r}")  # pragma: no cover - every parser node is handled


def _name(node: Name, env: Env, condition: bool) -> Node:
    if node.name in FIELDS:
        return FieldRef(pos=node.pos, src=node.src, name=node.name, kind=FIELDS[node.name].kind)
    if node.name in env.classes:
        return ClassRef(pos=node.pos, src=node.src, name=node.name, body=env.classes[node.name])
    if condition:
        known = sorted(env.classes) or ["(none defined)"]
        hint = did_you_mean(node.name, [*env.classes, *FIELDS], "known classes: " + ", ".join(known))
        raise env.error(node.pos, f"unknown class {node.name!r}; {hint}")
    hint = did_you_mean(node.name, [*FIELDS, *env.classes], "fields are: " + ", ".join(FIELDS))
    raise env.error(node.pos, f"unknown field {node.name!r}; {hint}")


def _compare(node: Compare, env: Env) -> Node:
    left, right = _check(node.left, env, False), _check(node.right, env, False)
    left, right = _coerce(left, right, env), _coerce(right, left, env)
    _compatible(left, right, env)
    kind = kind_of(left)
    if node.op not in ("==", "!=") and kind in (TEXT, BOOL, ID):
        raise env.error(node.pos, f"{node.op!r} does not apply to {describe(left)}; use ==, !="
                        + (", in, ~ or =~" if kind == TEXT else " or in"))
    return replace(node, left=left, right=right)


def _in_list(node: InList, env: Env) -> Node:
    left = _check(node.left, env, False)
    items = []
    for item in node.items:
        item = _coerce(_check(item, env, False), left, env)
        _compatible(left, item, env)
        items.append(item)
    return replace(node, left=left, items=tuple(items))


def _match(node: Match, env: Env) -> Node:
    left = _check(node.left, env, False)
    if kind_of(left) != TEXT:
        what = "glob" if node.op == patterns.GLOB else "regex"
        raise env.error(left.pos, f"{node.op!r} ({what}) needs text on the left, found {describe(left)}; "
                        f"text fields are {TEXT_FIELDS}")
    try:
        arrow = patterns.arrow_pattern(node.op, node.pattern)
    except ValueError as exc:
        what = "glob pattern" if node.op == patterns.GLOB else "regular expression"
        raise env.error(node.pattern_pos, f"invalid {what}: {exc}") from None
    return replace(node, left=left, arrow_pattern=arrow)


def _numeric(node: Node, env: Env, doing: str) -> Node:
    checked = _check(node, env, False)
    if kind_of(checked) not in NUMERIC:
        hint = f"; use {checked.src}_age" if kind_of(checked) == TIME and isinstance(checked, FieldRef) else ""
        raise env.error(checked.pos, f"cannot {doing} {describe(checked)}{hint}")
    return checked


def _arith(node: Arith, env: Env) -> Node:
    doing = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide"}[node.op]
    left, right = _numeric(node.left, env, doing), _numeric(node.right, env, doing)
    lk, rk = kind_of(left), kind_of(right)
    if node.op in "+-":
        if NUMBER not in (lk, rk) and lk != rk:
            raise env.error(right.pos, f"cannot {doing} {describe(left)} and {describe(right)}")
        kind = rk if lk == NUMBER else lk
    elif node.op == "*":
        kind = rk if lk == NUMBER else lk if rk == NUMBER else NUMBER
    else:
        kind = lk if rk == NUMBER else NUMBER
    return replace(node, left=left, right=right, kind=kind)


def _compatible(left: Node, right: Node, env: Env) -> None:
    lk, rk = kind_of(left), kind_of(right)
    if lk == rk or (lk in NUMERIC and rk in NUMERIC and NUMBER in (lk, rk)):
        return
    raise env.error(right.pos, f"cannot compare {describe(left)} with {describe(right)}; expected {EXPECTED[lk]}")


def _coerce(node: Node, other: Node, env: Env) -> Node:
    """A literal ``node`` read as the kind of the field it is compared with."""
    if not isinstance(node, Literal) or not isinstance(other, FieldRef):
        return node
    spec = FIELDS[other.name]
    if spec.kind == TIME and node.kind == TEXT:
        return replace(node, kind=TIME, value=parse_date(_text(node, env), env.text, node.pos))
    if spec.kind == ID:
        return _identity(node, other.name, env)
    if spec.kind == TEXT and node.kind == TEXT and spec.arrow_type == pa.string():
        _known_value(node, other.name, spec.values or _tier_names(other.name, env), env)
    return node


def _identity(node: Literal, field: str, env: Env) -> Node:
    if node.kind == NUMBER and isinstance(node.value, int) and node.value >= 0:
        return replace(node, kind=ID)
    if node.kind != TEXT:
        raise env.error(node.pos, f"cannot compare {field} with {describe(node)}; expected {EXPECTED[ID]}")
    name = _text(node, env)
    number = user_id(name) if field == "user" else group_id(name)
    if number is None:
        raise env.error(node.pos, f"unknown {field} {name!r} on this host; expected an existing {field} or a numeric id")
    return replace(node, kind=ID, value=number)


def _tier_names(field: str, env: Env) -> tuple[str, ...]:
    return ("", *env.tiers) if field == "tier" and env.tiers is not None else ()


def _known_value(node: Literal, field: str, values: tuple[str, ...], env: Env) -> None:
    value = _text(node, env)
    if values and value not in values:
        known = ", ".join(repr(v) for v in values)
        hint = did_you_mean(value, [v for v in values if v], f"expected one of {known}")
        raise env.error(node.pos, f"unknown {field} {value!r}; {hint}")


def _text(node: Literal, env: Env) -> str:
    try:
        return node.value.decode("utf-8")  # type: ignore[union-attr]
    except UnicodeDecodeError:
        raise env.error(node.pos, f"{node.src} is not UTF-8 text") from None
