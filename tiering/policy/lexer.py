"""Tokens of the expression language.

A hand-written scanner: numbers (``42``, ``1.5``), numbers with a unit
(``64KiB``, ``1.5GiB``, ``30d``, ``90m``; ``tiering.core.units``), ISO dates
(``2024-01-31``, ``2024-01-31T12:00:00Z``; naive times are UTC), strings
(``'raw'`` or ``"with \\n, \\t, \\\\, \\" and \\xHH escapes"``), identifiers and
operators. Every mistake is an ``ExpressionError`` pointing at its column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tiering.core import units
from tiering.core.typed import did_you_mean
from tiering.policy.syntax import ExpressionError

NUMBER, SIZE, DURATION, DATE, STRING, IDENT, OP, END = (
    "number", "size", "duration", "date", "string", "identifier", "operator", "end",
)
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
OPERATORS = ("==", "!=", "<=", ">=", "=~", "<", ">", "~", "(", ")", "[", "]", ",", "+", "-", "*", "/")
_MISSPELT = {
    "&&": "did you mean 'and'?", "&": "did you mean 'and'?", "||": "did you mean 'or'?",
    "|": "did you mean 'or'?", "=": "did you mean '=='?", "!": "did you mean '!=' or 'not'?",
}
_UNIT_NAMES = {name.lower(): name for name in (
    "B", "KiB", "MiB", "GiB", "TiB", "PiB", "KB", "MB", "GB", "TB", "PB", "ms", "s", "m", "h", "d", "w")}

_SPACE = re.compile(r"\s+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?(?![\w.])",
                   re.ASCII)
_NUMBER = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z_]\w*)?", re.ASCII)
_IDENT = re.compile(r"[A-Za-z_]\w*", re.ASCII)
_ESCAPES = {"\\": b"\\", '"': b'"', "'": b"'", "n": b"\n", "t": b"\t"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str  # as written
    pos: int
    value: object = None

    def shown(self) -> str:
        """How the token reads in 'found ...': ``'and'``, ``end of expression``."""
        return "end of expression" if self.kind == END else repr(self.text)


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, ending with an ``END`` token."""
    tokens, pos = [], 0
    while True:
        space = _SPACE.match(text, pos)
        if space:
            pos = space.end()
        if pos >= len(text):
            return [*tokens, Token(END, "", len(text))]
        token = _next(text, pos)
        tokens.append(token)
        pos += len(token.text)


def _next(text: str, pos: int) -> Token:
    char = text[pos]
    if "0" <= char <= "9":
        date = _DATE.match(text, pos)
        return Token(DATE, date.group(), pos, parse_date(date.group(), text, pos)) if date else _number(text, pos)
    if char in "'\"":
        return _string(text, pos)
    ident = _IDENT.match(text, pos)
    if ident:
        return Token(IDENT, ident.group(), pos)
    for op in OPERATORS:
        if text.startswith(op, pos):
            return Token(OP, op, pos)
    for wrong, hint in _MISSPELT.items():
        if text.startswith(wrong, pos):
            raise ExpressionError(text, pos, f"unexpected {wrong!r}; {hint}")
    raise ExpressionError(text, pos, f"unexpected character {char!r}")


def _number(text: str, pos: int) -> Token:
    match = _NUMBER.match(text, pos)
    assert match is not None  # the caller saw a digit
    number, unit = match.groups()
    if not unit:
        return Token(NUMBER, number, pos, float(number) if "." in number else int(number))
    canonical = _UNIT_NAMES.get(unit.lower())
    if canonical is None:
        hint = f"put a space before {unit!r}" if unit in KEYWORDS else \
            did_you_mean(unit.lower(), _UNIT_NAMES, f"expected one of {', '.join(_UNIT_NAMES.values())}")
        raise ExpressionError(text, pos, f"unknown unit {unit!r} in {match.group()!r}; {hint}")
    try:
        if canonical.lower() in units.SIZE_UNITS:
            return Token(SIZE, match.group(), pos, units.parse_size(match.group()))
        return Token(DURATION, match.group(), pos, units.parse_duration(match.group()))
    except ValueError as exc:
        raise ExpressionError(text, pos, str(exc)) from None


def parse_date(written: str, text: str = "", pos: int = 0) -> int:
    """Nanoseconds since the epoch of an ISO date/time; naive times are UTC."""
    try:
        moment = datetime.fromisoformat(written)
    except ValueError as exc:
        raise ExpressionError(text or written, pos, f"invalid date {written!r}: {exc}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def _string(text: str, pos: int) -> Token:
    quote, out, i = text[pos], bytearray(), pos + 1
    while i < len(text) and text[i] != quote:
        if text[i] == "\\" and quote == '"':
            escaped, i = _escape(text, i)
            out += escaped
            continue
        out += text[i].encode("utf-8", "surrogateescape")
        i += 1
    if i >= len(text):
        raise ExpressionError(text, pos, f"unterminated string; expected a closing {quote}")
    return Token(STRING, text[pos : i + 1], pos, bytes(out))


def _escape(text: str, i: int) -> tuple[bytes, int]:
    code = text[i + 1 : i + 2]
    if code in _ESCAPES:
        return _ESCAPES[code], i + 2
    digits = text[i + 2 : i + 4]
    if code == "x" and re.fullmatch(r"[0-9A-Fa-f]{2}", digits):
        return bytes([int(digits, 16)]), i + 4
    raise ExpressionError(
        text, i, f"unknown escape '\\{code}' in a string; use \\\\, \\\", \\n, \\t, \\xHH, or a 'single-quoted' raw string"
    )
