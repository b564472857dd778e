"""The plan: actions with the rule that chose each one, and why."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from tiering.core.errors import ConfigError
from tiering.policy import Policy

#: The order the mover works in: restores first (a job may be waiting for them); class changes last.
ACTION_ORDER = ("restore", "pin", "archive", "release", "transition")


@dataclass(frozen=True)
class Usage:
    """The hot tier's capacity and used bytes (from ``statvfs``)."""

    total: int
    used: int

    @property
    def fraction(self) -> float:
        return self.used / self.total if self.total else 0.0

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> Usage:
        """The filesystem holding the hot tier at ``path``; ``ConfigError`` naming it when it is not there."""
        try:
            st = os.statvfs(path)
        except OSError as exc:
            raise ConfigError(f"hot tier {os.fsdecode(path)}: {exc.strerror or exc}; check [hot] path in the config "
                              "(is it mounted?)") from exc
        return cls(st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize)


@dataclass(frozen=True)
class Plan:
    """What ``apply`` would do, in order. ``actions`` is an Arrow table, one row per action."""

    policy: Policy
    now_ns: int
    actions: pa.Table
    counts: dict[str, int] = field(default_factory=dict)  # files seen, skipped by kind, per-rule "already"/capped
    usage: Usage | None = None
    freed: int = 0  # hot-tier bytes the plan's releases would free

    def __len__(self) -> int:
        return self.actions.num_rows

    def rows(self, limit: int | None = None) -> Iterator[dict]:
        """Actions as dicts with a readable ``reason``, in plan order (reasons are made lazily)."""
        table = self.actions if limit is None else self.actions.slice(0, limit)
        for batch in table.to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                row["reason"] = self.reason(row)
                yield row

    def reason(self, row: dict) -> str:
        """Why this action: the rule's conditions with the file's values, or its watermark rank."""
        if row["rule"] == "watermark":
            wm = self.policy.watermark
            used = self.usage.fraction if self.usage else 0.0
            order = {"lru": "LRU", "heat": "coldest", "expression": "weight"}[wm.order]
            return f"watermark {used:.0%} > {wm.high:.0%}, {order} rank {row['rank']:,}"
        rule = self.policy.rule(row["rule"])
        facts = [fact for fact in rule.match.explain(row, self.now_ns)]
        return f"{'; '.join(facts) or rule.match.text} (rule {rule.name})"

    def totals(self) -> tuple[int, int]:
        """(actions, bytes): the plan's size, as a run reports it planned."""
        sizes = self.actions["size"] if self.actions.num_rows else pa.array([], pa.int64())
        return self.actions.num_rows, int(pc.sum(sizes).as_py() or 0)

    def summary(self) -> dict:
        """Counts and bytes per (rule, action), plus the skip counters: what the table view prints."""
        groups: dict[tuple[str, str], list[int]] = {}
        if self.actions.num_rows:
            agg = self.actions.group_by(["rule", "action"]).aggregate([("size", "sum"), ("size", "count")])
            for row in agg.to_pylist():
                groups[(row["rule"], row["action"])] = [row["size_count"], row["size_sum"] or 0]
        return {"actions": [{"rule": r, "action": a, "files": n, "bytes": b} for (r, a), (n, b) in groups.items()],
                "counts": dict(self.counts), "freed": self.freed,
                "usage": None if self.usage is None else {"total": self.usage.total, "used": self.usage.used}}
