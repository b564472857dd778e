"""Typed, located reads from one table of a policy file.

A ``Section`` knows its file and how to name its place (``rule 'old-shards'``,
``[watermark]``), so each check fails with the one line the CLI prints::

    policies/x.toml: rule 'old-shards': max_bytes: '10XB' ...; expected a size like ...

Unlike configuration files, policies do no ``${VAR}`` substitution: a policy
means the same thing wherever it runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from tiering.core import units
from tiering.config.values import type_name
from tiering.core.errors import PolicyError
from tiering.policy.syntax import did_you_mean

T = TypeVar("T")
_MISSING: Any = object()
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")
PERCENT_EXPECTED = "a percentage like \"85%\" or a fraction like 0.85"


class Section:
    """One TOML table of a policy file, with getters that explain failures."""

    def __init__(self, file: str, label: str, data: Mapping[str, Any]) -> None:
        self.file, self.label, self.data = file, label, data

    def where(self, key: str | None = None) -> str:
        """``file: label: key`` without the empty parts."""
        return ": ".join(part for part in (self.file, self.label, key) if part)

    def error(self, key: str | None, problem: str, expected: str) -> PolicyError:
        return PolicyError(f"{self.where(key)}: {problem}; {expected}")

    def renamed(self, label: str) -> Section:
        return Section(self.file, label, self.data)

    def check_keys(self, allowed: Iterable[str]) -> None:
        """Refuse a key not in ``allowed``, suggesting the closest valid one."""
        allowed = list(allowed)
        for key in self.data:
            if key not in allowed:
                hint = did_you_mean(key, allowed, "expected one of: " + ", ".join(allowed))
                raise PolicyError(f"{self.where()}: unknown key {key!r}; {hint}")

    def table(self, key: str, label: str) -> Section:
        """The sub-table ``key`` (an empty one when absent)."""
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            raise self.error(key, f"found {type_name(value)}", f"expected a table [{key}]")
        return Section(self.file, label, value)

    def array_of_tables(self, key: str) -> list[Section]:
        """``[[key]]`` tables, each labelled ``rule N`` until it is named."""
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.error(key, f"found {type_name(value)}", f"expected [[{key}]] tables")
        return [Section(self.file, f"rule {number}", item) for number, item in enumerate(value, start=1)]

    # -- typed getters -------------------------------------------------------

    def _raw(self, key: str, default: Any, expected: str) -> Any:
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise self.error(key, "missing", f"expected {expected}")
        return default

    def _typed(self, key: str, default: Any, expected: str, accept: Callable[[Any], bool]) -> Any:
        value = self._raw(key, default, expected)
        if value is not default and not accept(value):
            raise self.error(key, f"found {type_name(value)} ({value!r})", f"expected {expected}")
        return value

    def string(self, key: str, default: Any = _MISSING, expected: str = "a string") -> Any:
        return self._typed(key, default, expected, lambda v: isinstance(v, str))

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        return self._typed(key, default, "true or false (unquoted)", lambda v: isinstance(v, bool))

    def integer(self, key: str, default: Any = _MISSING, minimum: int = 0) -> Any:
        value = self._typed(key, default, "an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
        if value is not default and value < minimum:
            raise self.error(key, f"{value} is out of range", f"expected at least {minimum}")
        return value

    def _converted(self, key: str, default: Any, convert: Callable[[Any], T], expected: str) -> Any:
        value = self._raw(key, default, expected)
        if value is default:
            return value
        try:
            return convert(value)
        except ValueError as exc:
            problem, _, hint = str(exc).partition("; ")
            raise self.error(key, problem, hint or f"expected {expected}") from None

    def size(self, key: str, default: Any = _MISSING, minimum: int = 0) -> Any:
        value = self._converted(key, default, units.parse_size, units.SIZE_EXPECTED)
        if value is not default and value < minimum:
            raise self.error(key, f"{units.format_size(value)} is out of range",
                             f"expected at least {units.format_size(minimum)}")
        return value

    def duration(self, key: str, default: Any = _MISSING) -> Any:
        return self._converted(key, default, units.parse_duration, units.DURATION_EXPECTED)

    def choice(self, key: str, choices: Iterable[str], default: Any = _MISSING) -> Any:
        """One of ``choices`` (case-insensitive, returned as spelled in ``choices``)."""
        choices = list(choices)
        value = self.string(key, default, "one of " + ", ".join(choices))
        if value is default:
            return value
        for option in choices:
            if value.lower() == option.lower():
                return option
        hint = did_you_mean(value.lower(), {c.lower(): c for c in choices}, "expected one of " + ", ".join(choices))
        raise self.error(key, f"{value!r} is not a valid {key}", hint)

    def fraction(self, key: str) -> float:
        """A share of capacity: ``"85%"`` or ``0.85``, above 0 and at most 100%."""
        value = self._raw(key, _MISSING, PERCENT_EXPECTED)
        fraction: float | None = None
        if isinstance(value, str) and _PERCENT.match(value):
            fraction = float(_PERCENT.match(value).group(1)) / 100  # type: ignore[union-attr]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            fraction = float(value)
        if fraction is None or not 0 < fraction <= 1:
            raise self.error(key, f"invalid percentage {value!r}", f"expected {PERCENT_EXPECTED}, above 0 and at most 100%")
        return fraction
