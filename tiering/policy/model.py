"""A loaded policy: frozen values the planner reads.

How a planner is meant to read them (``policies/README.md`` says the same to users):

- ``Policy.rules`` are in file order and the **first rule whose ``match`` is
  true decides** what happens to a file; later rules never see it. So an early
  ``pin`` or ``exclude`` rule protects files from every later rule.
- ``archive`` copies a file to ``tier`` and keeps it on the hot tier;
  ``release`` archives first when needed, then frees its hot-tier blocks;
  ``restore`` brings a released file back; ``pin`` keeps a file on the hot
  tier (restoring it if it was released) and out of every later rule and the
  watermark; ``exclude`` leaves a file alone (no action, no later rule, no
  watermark); ``transition`` moves an archived or released file's capacity
  copy to ``storage_class`` (required) in place on its own tier (a copy on the
  object store, nothing through the hot tier), when its recorded class differs.
- ``Rule.tier`` is the capacity tier of ``archive``/``release`` (the config's
  ``default_tier`` when the file names none and a config was given; else None).
- ``Watermark``: when the hot tier's used space is above ``high`` (a fraction
  of its capacity), candidates that no rule claimed (and that ``match``, when
  given) are taken in ``order`` until projected usage falls to ``low``.
- ``Safety``: files whose mtime or ctime is younger than ``min_age`` seconds
  are never touched; with ``skip_hardlinks``, files with ``nlink > 1`` are
  skipped. The planner reports both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tiering.policy.compiler import Condition, Value
from tiering.policy.datasets import Datasets

ACTIONS = ("archive", "release", "restore", "pin", "exclude", "transition")
#: Actions that move data to a capacity tier (and so take ``tier``/``storage_class``).
TIER_ACTIONS = ("archive", "release")
#: Actions that may be capped per run.
CAPPED_ACTIONS = ("archive", "release", "restore")
WATERMARK_ACTIONS = ("release", "archive")
ORDERS = ("lru", "heat", "expression")


@dataclass(frozen=True)
class Rule:
    """One ``[[rules]]`` entry."""

    name: str
    match: Condition
    action: str  # one of ACTIONS
    tier: str | None = None
    storage_class: str | None = None
    max_files: int | None = None  # per run; None: no cap
    max_bytes: int | None = None  # per run; None: no cap
    description: str = ""


@dataclass(frozen=True)
class Watermark:
    """The ``[watermark]`` table.

    ``order``: ``lru`` (oldest atime first), ``heat`` (lowest heat first, then
    oldest atime) or ``expression`` (highest ``weight`` first).
    """

    high: float  # fraction of the hot tier's capacity, 0 < low < high <= 1
    low: float
    order: str = "lru"
    weight: Value | None = None  # set exactly when order == "expression"
    action: str = "release"  # one of WATERMARK_ACTIONS
    tier: str | None = None
    storage_class: str | None = None
    match: Condition | None = None  # only these files are candidates; None: every file


@dataclass(frozen=True)
class Safety:
    """The ``[safety]`` table; the defaults apply when it is absent."""

    min_age: float = 1800.0  # seconds: files modified more recently are never touched
    skip_hardlinks: bool = True


@dataclass(frozen=True)
class Policy:
    """A policy file, loaded and checked. ``classes`` keep file order."""

    path: Path
    classes: Mapping[str, Condition] = field(hash=False)
    rules: tuple[Rule, ...]
    watermark: Watermark | None
    safety: Safety
    description: str = ""
    datasets: Datasets = field(default_factory=Datasets)  # folders heated as one (``[datasets]``); none: per file

    def rule(self, name: str) -> Rule:
        """The rule called ``name`` (``KeyError`` when there is none)."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)
