"""The expression language's syntax tree, its value kinds and its error.

Every node remembers where it starts in the expression (``pos``, 0-based) and
the text it was written as (``src``), so errors can point at a column and
``explain`` can quote the policy back to the user. The parser builds nodes
with unresolved ``Name`` leaves; the checker replaces them with ``FieldRef`` or
``ClassRef`` and gives every value a kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiering.core.errors import PolicyError

# Value kinds. Sizes are bytes, durations seconds, timestamps ns since the epoch.
NUMBER, SIZE, DURATION, TIME, TEXT, BOOL, ID = "number", "size", "duration", "timestamp", "text", "boolean", "id"
NUMERIC = frozenset({NUMBER, SIZE, DURATION})

KIND_NAMES = {
    NUMBER: "a number",
    SIZE: "a size",
    DURATION: "a duration",
    TIME: "a timestamp",
    TEXT: "text",
    BOOL: "a condition",
    ID: "a user or group",
}


class ExpressionError(PolicyError):
    """A mistake at one place in an expression: ``column N: what; what was expected``.

    ``detail`` is the message without the location, ``pos`` the 0-based offset.
    The policy loader prefixes the file, the rule and the key.
    """

    def __init__(self, text: str, pos: int, detail: str) -> None:
        self.text, self.pos, self.detail = text, pos, detail
        super().__init__(f"{location(text, pos)}: {detail}")


def location(text: str, pos: int) -> str:
    """``column 17`` (1-based), or ``line 2, column 5`` in a multi-line expression."""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"line {line}, column {column}" if "\n" in text else f"column {column}"


@dataclass(frozen=True, kw_only=True)
class Node:
    pos: int
    src: str


@dataclass(frozen=True, kw_only=True)
class Literal(Node):
    """A constant. ``value``: int/float for numbers, int bytes, float seconds,
    int ns for timestamps, bytes for text, bool for booleans, int for user/group ids."""

    kind: str
    value: object


@dataclass(frozen=True, kw_only=True)
class Name(Node):
    """An identifier the checker has not resolved yet (a field or a class)."""

    name: str


@dataclass(frozen=True, kw_only=True)
class FieldRef(Node):
    name: str
    kind: str


@dataclass(frozen=True, kw_only=True)
class ClassRef(Node):
    """A named file class, with its checked condition."""

    name: str
    body: Node


@dataclass(frozen=True, kw_only=True)
class Neg(Node):
    operand: Node
    kind: str = NUMBER


@dataclass(frozen=True, kw_only=True)
class Arith(Node):
    op: str  # + - * /
    left: Node
    right: Node
    kind: str = NUMBER


@dataclass(frozen=True, kw_only=True)
class Compare(Node):
    op: str  # == != < <= > >=
    left: Node
    right: Node


@dataclass(frozen=True, kw_only=True)
class InList(Node):
    left: Node
    items: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True, kw_only=True)
class Match(Node):
    """``left ~ "glob"`` or ``left =~ "regex"``; ``arrow_pattern`` is the RE2 form."""

    op: str  # "~" (glob) or "=~" (regex)
    left: Node
    pattern: bytes
    pattern_pos: int
    arrow_pattern: str = ""


@dataclass(frozen=True, kw_only=True)
class And(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, kw_only=True)
class Or(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, kw_only=True)
class Not(Node):
    operand: Node


def kind_of(node: Node) -> str:
    """The kind of value ``node`` yields (after checking)."""
    if isinstance(node, Literal | FieldRef | Neg | Arith):
        return node.kind
    return BOOL


def describe(node: Node) -> str:
    """How a node reads in an error: ``size (a size)``, ``"abc" (text)``."""
    return f"{node.src} ({KIND_NAMES[kind_of(node)]})"
