"""Typed reads from one TOML table, each failing with one located line.

The configuration (``tiering.config.values.Table``) and policy files
(``tiering.policy.values.Section``) read their tables through these getters;
a subclass says where a key is (``where``), which error a mistake raises
(``error``) and whether text is expanded first (``expand``: the config
substitutes ``${VAR}``, a policy means the same wherever it runs).

Every message reads ``<where>: <problem>; <what was expected>``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from tiering.core import units

T = TypeVar("T")

#: The default that makes a getter insist on its key.
MISSING: Any = object()


def type_name(value: object) -> str:
    """How a TOML value's type reads in a message: 'a string', 'an integer'."""
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array", dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__}")


def did_you_mean(word: str, choices: Mapping[str, str] | Iterable[str], fallback: str) -> str:
    """``did you mean 'x'?`` for the closest choice, else ``fallback``.

    ``choices`` may map the spelling compared against to the spelling shown.
    """
    shown = dict(choices) if isinstance(choices, Mapping) else {c: c for c in choices}
    match = difflib.get_close_matches(word, list(shown), n=1, cutoff=0.6)
    return f"did you mean {shown[match[0]]!r}?" if match else fallback


class TypedTable:
    """One TOML table with getters that explain failures; see the module's contract."""

    def __init__(self, file: str, data: Mapping[str, Any]) -> None:
        self.file = file
        self.data = data

    def error(self, key: str | None, problem: str, expected: str) -> Exception:
        """The error for a mistake at ``key`` (a subclass names its class and where)."""
        raise NotImplementedError

    def expand(self, key: str, text: str) -> str:
        """Text as the getters see it (unchanged here)."""
        return text

    # -- raw values --------------------------------------------------------

    def _raw(self, key: str, default: Any, expected: str) -> Any:
        if key in self.data:
            return self.data[key]
        if default is MISSING:
            raise self.error(key, "missing", f"expected {expected}")
        return default

    def _converted(self, key: str, default: Any, convert: Callable[[Any], T], expected: str) -> T:
        value = self._raw(key, default, expected)
        if value is default:
            return value
        if isinstance(value, str):
            value = self.expand(key, value)
        try:
            return convert(value)
        except ValueError as exc:
            problem, _, hint = str(exc).partition("; ")
            raise self.error(key, problem, hint or f"expected {expected}") from None

    def _bounded(self, key: str, value: int, lo: int, hi: int | None, show: Callable[[int], str]) -> int:
        if value < lo or (hi is not None and value > hi):
            span = f"at least {show(lo)}" if hi is None else f"between {show(lo)} and {show(hi)}"
            raise self.error(key, f"{show(value)} is out of range", f"expected {span}")
        return value

    # -- typed getters -------------------------------------------------------

    def string(self, key: str, default: Any = MISSING, expected: str = "a string") -> Any:
        value = self._raw(key, default, expected)
        if value is default:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"found {type_name(value)} ({value!r})", f"expected {expected}")
        return self.expand(key, value)

    def boolean(self, key: str, default: Any = MISSING) -> Any:
        value = self._raw(key, default, "true or false")
        if value is not default and not isinstance(value, bool):
            raise self.error(key, f"found {type_name(value)} ({value!r})", "expected true or false (unquoted)")
        return value

    def integer(self, key: str, default: Any = MISSING, minimum: int = 0, maximum: int | None = None) -> Any:
        value = self._raw(key, default, "an integer")
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"found {type_name(value)} ({value!r})", "expected an integer")
        return self._bounded(key, value, minimum, maximum, str)

    def size(self, key: str, default: Any = MISSING, minimum: int = 0, maximum: int | None = None) -> Any:
        value = self._converted(key, default, units.parse_size, units.SIZE_EXPECTED)
        return value if value is default else self._bounded(key, value, minimum, maximum, units.format_size)

    def duration(self, key: str, default: Any = MISSING) -> Any:
        return self._converted(key, default, units.parse_duration, units.DURATION_EXPECTED)

    def choice(self, key: str, choices: Iterable[str], default: Any = MISSING) -> Any:
        """One of ``choices`` (matched case-insensitively, returned as spelled in ``choices``)."""
        choices = list(choices)
        value = self.string(key, default, "one of " + ", ".join(choices))
        if value is default:
            return value
        for option in choices:
            if value.lower() == option.lower():
                return option
        hint = did_you_mean(value.lower(), {c.lower(): c for c in choices}, "expected one of " + ", ".join(choices))
        raise self.error(key, f"{value!r} is not a valid {key}", hint)
