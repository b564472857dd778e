"""Typed, located reads from one table of a policy file.

A ``Section`` knows its file and how to name its place (``rule 'old-shards'``,
``[watermark]``), so each check fails with the one line the CLI prints::

    policies/x.toml: rule 'old-shards': max_bytes: '10XB' ...; expected a size like ...

Unlike configuration files, policies do no ``${VAR}`` substitution: a policy
means the same thing wherever it runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from tiering.core.errors import PolicyError
from tiering.core.typed import MISSING, TypedTable, did_you_mean, type_name

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")
PERCENT_EXPECTED = "a percentage like \"85%\" or a fraction like 0.85"


class Section(TypedTable):
    """One TOML table of a policy file, with the typed getters of ``core.typed`` (no ``${VAR}``
    expansion) and the policy's own: sub-tables, ``[[rules]]``, percentages."""

    def __init__(self, file: str, label: str, data: Mapping[str, Any]) -> None:
        super().__init__(file, data)
        self.label = label

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

    def fraction(self, key: str) -> float:
        """A share of capacity: ``"85%"`` or ``0.85``, above 0 and at most 100%."""
        value = self._raw(key, MISSING, PERCENT_EXPECTED)
        fraction: float | None = None
        if isinstance(value, str) and _PERCENT.match(value):
            fraction = float(_PERCENT.match(value).group(1)) / 100  # type: ignore[union-attr]
        elif isinstance(value, int | float) and not isinstance(value, bool):
            fraction = float(value)
        if fraction is None or not 0 < fraction <= 1:
            raise self.error(key, f"invalid percentage {value!r}", f"expected {PERCENT_EXPECTED}, above 0 and at most 100%")
        return fraction
