"""Cheaper, exactly equivalent Arrow forms for common tests on path text.

Deriving ``name``, ``dirname`` or ``suffix`` costs a regex replace per row; a
test of one of them against literals is answered by one pass over the path
instead (a DFA regex search, or a prefix/suffix compare). Each function returns
None when no shortcut applies, and the compiler then falls back to the derived
column. The property test holds them to the reference evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from tiering.policy.patterns import glob_body, python_pattern

_WILD = frozenset(b"*?[\\")
_FALSE = pc.scalar(False)


def _path() -> pc.Expression:
    return pc.field("path")


def _regex(pattern: str) -> pc.Expression:
    return pc.match_substring_regex(_path(), pattern=f"(?s){pattern}")


def _escaped(value: bytes) -> str:
    return "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else f"\\x{b:02x}" for b in value)


def _alternatives(values: Sequence[bytes]) -> str:
    return "(?:" + "|".join(_escaped(v) for v in values) + ")"


def _no_slash() -> pc.Expression:
    return ~pc.match_substring(_path(), pattern="/")


def _literal(pattern: bytes) -> bool:
    return not (_WILD & set(pattern))


def glob(field: str, pattern: bytes) -> pc.Expression | None:
    """``field ~ pattern`` over the path alone, or None."""
    if field == "path":
        return _path_glob(pattern)
    if field == "name" and b"/" not in pattern and b"**" not in pattern and b"[" not in pattern:
        if pattern.startswith(b"*") and _literal(pattern[1:]):
            return pc.ends_with(_path(), pattern=pattern[1:])
        return _regex(rf"(?:^|/)(?:{glob_body(pattern)})\z")
    if field == "dirname":
        expr = _regex(rf"^(?:{glob_body(pattern)})/[^/]*\z")
        empty_matches = python_pattern("~", pattern).fullmatch(b"") is not None
        return expr | _no_slash() if empty_matches else expr
    return None


def _path_glob(pattern: bytes) -> pc.Expression | None:
    if _literal(pattern):
        return pc.equal(_path(), pa.scalar(pattern, pa.binary()))
    if pattern.endswith(b"**") and _literal(pattern[:-2]):
        return pc.starts_with(_path(), pattern=pattern[:-2])
    if pattern.startswith(b"**") and _literal(pattern[2:]) and not pattern.startswith(b"**/"):
        return pc.ends_with(_path(), pattern=pattern[2:])
    return None


def one_of(field: str, values: Sequence[bytes]) -> pc.Expression | None:
    """``field in values`` (``field == v`` for one value) over the path alone, or None."""
    if field == "name":
        names = [v for v in values if b"/" not in v]
        return _regex(rf"(?:^|/){_alternatives(names)}\z") if names else _FALSE
    if field == "suffix":
        return _suffix_in(values)
    if field == "dirname":  # the dirname is "" for "a" and for "/a"
        expr = _regex(rf"^{_alternatives(values)}/[^/]*\z") if values else _FALSE
        return expr | _no_slash() if b"" in values else expr
    return None


def _suffix_in(values: Sequence[bytes]) -> pc.Expression:
    # A suffix is a dot and at least one byte that is neither '.' nor '/'.
    valid = [v for v in values if len(v) >= 2 and v[:1] == b"." and b"." not in v[1:] and b"/" not in v]
    expr = _regex(rf"[^/]{_alternatives(valid)}\z") if valid else _FALSE
    if b"" in values:
        expr = expr | ~_regex(r"[^/]\.[^./]+\z")
    return expr
