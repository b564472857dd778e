"""Glob and regular-expression matching on bytes.

Both match raw bytes, never decoded text, so paths that are not UTF-8 match
and never fail: a non-ASCII character in a pattern matches its UTF-8 bytes.

Globs (``~``) match the whole value: ``*`` is any run of bytes without ``/``,
``?`` one byte other than ``/``, ``**`` any run of bytes including ``/``
(``**/`` also matches no directory at all), ``[abc]``, ``[a-z]`` and
``[!abc]`` are byte classes (a negated class never matches ``/``), and ``\\``
makes the next character literal. ``path ~ "shards/*.tar"`` matches
``shards/0001.tar`` but not ``shards/old/0001.tar``; ``"shards/**"`` matches both.

Regular expressions (``=~``) are RE2 syntax, searched anywhere in the value
(anchor with ``^`` and ``$``) in RE2's Latin-1 mode, where ``.`` is one byte.
A pattern must also compile under Python's ``re`` (which ``evaluate_row`` and
``explain`` use), so only the common subset is accepted; two corners differ
between the engines: ``$`` before a final newline, and ``(?i)`` on non-ASCII bytes.
"""

from __future__ import annotations

import re
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

GLOB, REGEX = "~", "=~"


def glob_body(pattern: bytes) -> str:
    """The ASCII regular expression (both engines) matching what ``pattern`` globs."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i : i + 1]
        if pattern.startswith(b"**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith(b"**", i):
            out.append(".*")
            i += 2
        elif char in (b"*", b"?"):
            out.append("[^/]*" if char == b"*" else "[^/]")
            i += 1
        elif char == b"[":
            body, i = _byte_class(pattern, i)
            out.append(body)
        elif char == b"\\" and i + 1 < len(pattern):
            out.append(_byte(pattern[i + 1]))
            i += 2
        else:
            out.append(_byte(pattern[i]))
            i += 1
    return "".join(out)


def _byte_class(pattern: bytes, start: int) -> tuple[str, int]:
    i = start + 1
    negated = pattern[i : i + 1] in (b"!", b"^")
    i += negated
    end = pattern.find(b"]", i + 1 if pattern[i : i + 1] == b"]" else i)
    if end < 0:
        raise ValueError("unclosed '[' in the glob pattern")
    members = pattern[i:end]
    body = "".join("-" if b == 0x2D and 0 < k < len(members) - 1 else _byte(b, always=True)
                   for k, b in enumerate(members))
    return ("[^/" if negated else "[") + body + "]", end + 1


def _byte(value: int, always: bool = False) -> str:
    char = chr(value)
    return char if char.isascii() and char.isalnum() and not always else f"\\x{value:02x}"


def regex_ascii(pattern: bytes) -> str:
    """``pattern`` as ASCII text for RE2, each non-ASCII byte written ``\\xHH``."""
    out: list[str] = []
    escaping = False
    for value in pattern:
        if value >= 0x80:
            if escaping:  # "\\" + a raw byte means that byte, literally
                out.pop()
            out.append(f"\\x{value:02x}")
            escaping = False
        else:
            out.append(chr(value))
            escaping = value == 0x5C and not escaping
    return "".join(out)


def arrow_pattern(op: str, pattern: bytes) -> str:
    """The RE2 pattern that ``match_substring_regex`` runs for ``op`` and ``pattern``.

    Raises ``ValueError`` (with the reason) when either engine rejects it.
    """
    if op == GLOB:
        arrow = rf"(?s)^(?:{glob_body(pattern)})\z"
    else:
        arrow = regex_ascii(pattern)
    python_pattern(op, pattern)
    try:
        pc.match_substring_regex(pa.array([b""], pa.binary()), arrow)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(str(exc).removeprefix("Invalid regular expression: ")) from None
    return arrow


@lru_cache(maxsize=256)
def python_pattern(op: str, pattern: bytes) -> re.Pattern[bytes]:
    """The compiled Python pattern for the reference evaluator; ``ValueError`` if invalid."""
    try:
        if op == GLOB:
            return re.compile(f"(?s)(?:{glob_body(pattern)})".encode("ascii"))
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(str(exc)) from None


def matches(op: str, pattern: bytes, value: bytes) -> bool:
    """Whether ``value`` matches, per row (globs match whole, regexes anywhere)."""
    compiled = python_pattern(op, pattern)
    return bool(compiled.fullmatch(value) if op == GLOB else compiled.search(value))
