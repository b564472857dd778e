"""Checked syntax trees to ``pyarrow.compute.Expression``; compiled conditions and values.

``compile_condition("size > 1GiB and atime_age > 30d")`` parses, checks and
compiles once; the result evaluates whole record batches at a time::

    cond = compile_condition('path ~ "shards/**" and atime_age > 30d')
    mask = cond.mask(batch, now)          # a BooleanArray, one entry per row
    picked = cond.filter(batch, now)      # the matching rows of ``batch``

``cond.arrow`` reads the columns of an *augmented* batch (``fields.augment``):
planners that evaluate several conditions over one batch augment it once with
``needed_columns(...)`` and project the expressions themselves. Results never
contain nulls (null catalog columns read as their defaults).

Tests of ``name``, ``dirname`` and ``suffix`` against literals compile to one
pass over ``path`` where an exact equivalent exists (``shortcuts``), so those
columns are derived only when an expression needs their values otherwise.

Numbers: integer columns compare exactly with integers; when an integer meets
a float the integer is converted to float64 (as Python does for ``int < float``
only up to 2**53). Arithmetic is float64: division by zero gives inf or nan,
never an error.
"""

from __future__ import annotations

import operator
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import reduce
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from tiering.policy import explain as explaining
from tiering.policy import patterns, reference, shortcuts
from tiering.policy.checker import Env, check_condition, check_value
from tiering.policy.fields import FIELDS, augment
from tiering.policy.parser import parse
from tiering.policy.syntax import (
    BOOL, NUMERIC, TEXT, And, Arith, ClassRef, Compare, FieldRef, InList, Literal, Match, Neg, Node, Not, Or,
    kind_of,
)

_COMPARE = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_ARITH = {"+": pc.add, "-": pc.subtract, "*": pc.multiply, "/": pc.divide}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Batch = pa.RecordBatch | pa.Table


class _Compiler:
    """One compilation: remembers which augmented-batch columns the expression reads."""

    def __init__(self) -> None:
        self.columns: set[str] = set()

    def condition(self, node: Node) -> pc.Expression:
        if isinstance(node, And | Or):
            combine = operator.and_ if isinstance(node, And) else operator.or_
            return reduce(combine, (self.condition(item) for item in node.items))
        if isinstance(node, Not):
            return ~self.condition(node.operand)
        if isinstance(node, ClassRef):
            return self.condition(node.body)
        if isinstance(node, Compare):
            return self.compare(node.op, node.left, node.right)
        if isinstance(node, InList):
            expr = self.in_list(node)
            return ~expr if node.negated else expr
        if isinstance(node, Match):
            return self.match(node)
        return self.value(node)

    def value(self, node: Node) -> pc.Expression:
        if isinstance(node, FieldRef):
            spec = FIELDS[node.name]
            self.columns.add(spec.column)
            expr = pc.field(spec.column)
            return expr.cast(pa.binary()) if spec.kind == TEXT and spec.arrow_type != pa.binary() else expr
        if isinstance(node, Literal):
            return pc.scalar(_scalar(node))
        if isinstance(node, Neg):
            return pc.negate(self.operand(node.operand))
        if isinstance(node, Arith):
            return _ARITH[node.op](self.operand(node.left), self.operand(node.right))
        return self.condition(node)  # a condition used as a boolean value

    def float(self, node: Node) -> pc.Expression:
        if isinstance(node, Literal):
            return pc.scalar(float(node.value))  # type: ignore[arg-type]
        expr = self.value(node)
        return expr if is_float(node) else expr.cast(pa.float64(), safe=False)

    def operand(self, node: Node) -> pc.Expression:
        """An arithmetic operand. Acero re-associates chains of add/multiply (and
        folds their constants), which changes float results; a no-op cast between
        nested calls keeps the order the user wrote, as the reference computes it."""
        expr = self.float(node)
        return expr.cast(pa.float64()) if isinstance(node, Arith | Neg) else expr

    def compare(self, op: str, left: Node, right: Node) -> pc.Expression:
        if op in ("==", "!=") and isinstance(left, FieldRef) and isinstance(right, Literal):
            shortcut = self.shortcut(shortcuts.one_of(left.name, [right.value]))  # type: ignore[list-item]
            if shortcut is not None:
                return shortcut if op == "==" else ~shortcut
        if kind_of(left) in NUMERIC and is_float(left) != is_float(right):
            return _COMPARE[op](self.float(left), self.float(right))
        return _COMPARE[op](self.value(left), self.value(right))

    def in_list(self, node: InList) -> pc.Expression:
        if not node.items:
            return pc.scalar(False)
        kind, left = kind_of(node.left), node.left
        if kind == TEXT and isinstance(left, FieldRef):
            shortcut = self.shortcut(shortcuts.one_of(left.name, [item.value for item in node.items]))  # type: ignore[misc]
            if shortcut is not None:
                return shortcut
        if kind in NUMERIC and (is_float(left) or any(is_float(item) for item in node.items)):
            return reduce(operator.or_, (self.compare("==", left, item) for item in node.items))
        if kind == TEXT:
            return pc.is_in(self.value(left), value_set=pa.array([i.value for i in node.items], pa.binary()))
        if kind == BOOL:
            return pc.is_in(self.value(left), value_set=pa.array([i.value for i in node.items], pa.bool_()))
        values = pa.array([item.value for item in node.items], pa.int64())
        return pc.is_in(self.value(left).cast(pa.int64()), value_set=values)

    def match(self, node: Match) -> pc.Expression:
        if node.op == patterns.GLOB and isinstance(node.left, FieldRef):
            shortcut = self.shortcut(shortcuts.glob(node.left.name, node.pattern))
            if shortcut is not None:
                return shortcut
        return pc.match_substring_regex(self.value(node.left), pattern=node.arrow_pattern)

    def shortcut(self, expr: pc.Expression | None) -> pc.Expression | None:
        if expr is not None:
            self.columns.add("path")
        return expr


def _scalar(node: Literal) -> pa.Scalar:
    if node.kind == TEXT:
        return pa.scalar(node.value, pa.binary())
    if node.kind == BOOL:
        return pa.scalar(node.value, pa.bool_())
    return pa.scalar(node.value, pa.float64() if isinstance(node.value, float) else pa.int64())


def is_float(node: Node) -> bool:
    """Whether a numeric node evaluates to float64 (else to an integer type)."""
    if isinstance(node, FieldRef):
        return FIELDS[node.name].arrow_type == pa.float64()
    if isinstance(node, Literal):
        return isinstance(node.value, float)
    return isinstance(node, Neg | Arith)


def to_arrow(node: Node) -> tuple[pc.Expression, frozenset[str]]:
    """The pyarrow expression of a checked tree, and the augmented-batch columns it reads."""
    compiler = _Compiler()
    expr = compiler.float(node) if kind_of(node) in NUMERIC else compiler.condition(node)
    return expr, frozenset(compiler.columns)


def as_ns(now: int | datetime) -> int:
    """``now`` as ns since the epoch: an int is taken as ns already; a datetime must be aware."""
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        return (now - _EPOCH) // timedelta(microseconds=1) * 1000
    return int(now)


def project(batch: pa.RecordBatch | pa.Table, expr: pc.Expression) -> pa.Array:
    """``expr`` evaluated over every row of ``batch``, in row order (vectorized, multi-threaded)."""
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return ds.dataset(table).to_table(columns={"value": expr}).column("value").combine_chunks()


@dataclass(frozen=True)
class Compiled:
    """An expression parsed, checked and compiled: ``text`` as written, ``ast``
    the checked tree, ``arrow`` its pyarrow form, ``columns`` what it reads."""

    text: str
    ast: Node = field(repr=False)
    arrow: pc.Expression = field(compare=False, hash=False, repr=False)
    columns: frozenset[str] = field(default=frozenset(), repr=False)

    def evaluate_row(self, row: Mapping[str, Any], now: int | datetime) -> Any:
        """The value for one inventory row (a dict keyed like ``SCHEMA``), computed per row."""
        return reference.evaluate_row(self.ast, row, as_ns(now))

    def _augmented(self, batch: Batch, now: int | datetime) -> Batch:
        return augment(batch, self.columns, as_ns(now))


@dataclass(frozen=True)
class Condition(Compiled):
    """A compiled condition (a rule's ``match``, a class)."""

    def mask(self, batch: Batch, now: int | datetime) -> pa.BooleanArray:
        """One boolean per row of ``batch`` (a record batch or table): whether the row matches."""
        return project(self._augmented(batch, now), self.arrow)

    def filter(self, batch: Batch, now: int | datetime) -> Batch:
        """The rows of ``batch`` that match (the columns of ``batch`` only)."""
        return batch.filter(self.mask(batch, now))

    def explain(self, row: Mapping[str, Any], now: int | datetime) -> list[str]:
        """Readable reasons for the outcome on one row: ``["atime_age 41d > 30d"]``."""
        return explaining.explain(self.ast, row, as_ns(now))


@dataclass(frozen=True)
class Value(Compiled):
    """A compiled numeric expression (a watermark weight such as ``size * atime_age``)."""

    def values(self, batch: Batch, now: int | datetime) -> pa.DoubleArray:
        """One float64 per row of ``batch`` (sizes in bytes, durations in seconds)."""
        return project(self._augmented(batch, now), self.arrow)


def compile_condition(text: str, classes: Mapping[str, Condition] | None = None,
                      tiers: Collection[str] | None = None) -> Condition:
    """Parse, check and compile a condition; ``ExpressionError`` (a ``PolicyError``) if it is wrong.

    ``classes`` are the named classes it may refer to; ``tiers``, when given, the
    tier names a ``tier == "..."`` comparison may use.
    """
    env = Env(text, {name: cond.ast for name, cond in (classes or {}).items()}, tiers)
    ast = check_condition(parse(text), env)
    return Condition(text, ast, *to_arrow(ast))


def compile_value(text: str, classes: Mapping[str, Condition] | None = None) -> Value:
    """Parse, check and compile a numeric expression (a number, size or duration)."""
    env = Env(text, {name: cond.ast for name, cond in (classes or {}).items()})
    ast = check_value(parse(text), env)
    return Value(text, ast, *to_arrow(ast))


def needed_columns(*compiled: Compiled) -> frozenset[str]:
    """The union of the columns several compiled expressions read (for one ``augment``)."""
    return frozenset().union(*(c.columns for c in compiled))
