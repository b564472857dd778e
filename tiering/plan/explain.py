"""``plan --explain PATH``: rule by rule, why one file is or is not selected."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from tiering.core.inventory import bucket_of
from tiering.core.states import FileState
from tiering.plan.join import catalog_frame, joined, normalize
from tiering.core.display import show_path
from tiering.policy import Policy, augment, needed_columns
from tiering.core.units import format_duration

NS = 1_000_000_000


def find_row(batches: Iterable[pa.RecordBatch], catalog: pa.Table | Iterable[pa.RecordBatch] | None,
             rel: bytes) -> dict | None:
    """The joined, normalized inventory row of ``rel`` (None when the scan did not see it). Of a partitioned
    snapshot (``read_inventory``), only the partition holding ``rel`` is read; of a catalog streamed in batches
    (``Catalog.state_batches``), only the row of ``rel`` is kept."""
    key = pa.scalar(rel, pa.binary())
    if catalog is not None and not isinstance(catalog, pa.Table):
        kept = [b.filter(pc.equal(b["path"], key)) for b in catalog]
        catalog = pa.Table.from_batches(kept) if kept else None
    if getattr(batches, "partitioned", False):
        batches = batches.partition(int(bucket_of(pa.array([rel], pa.binary()), batches.buckets)[0])).to_batches()
    wanted = (b.filter(pc.equal(b["path"], key)) for b in batches)
    for batch in joined((b for b in wanted if b.num_rows), catalog_frame(catalog)):
        if batch.num_rows:
            return normalize(batch).to_pylist()[0]
    return None


def explain_path(row: dict | None, rel: bytes, policy: Policy, now_ns: int) -> list[str]:
    """Readable lines: the file's facts, the safety checks, then each rule in order."""
    if row is None:
        return [f"{show_path(rel)}: not in the inventory (not scanned yet, deleted, or outside the hot tier)"]
    lines = [f"{show_path(rel)}: {row['type']}, {row['size']:,} bytes, state {row['state']}"
             f"{', pinned' if row['pinned'] else ''}, heat {row['heat']:.2f}"]
    if row["type"] != "file":
        return lines + ["  not a regular file: policies act on regular files only"]
    row = augment(pa.Table.from_pylist([row]), needed_columns(*[r.match for r in policy.rules]) |
                  {"mtime_age", "ctime_age"}, now_ns).to_pylist()[0]
    lines += _safety(row, policy)
    decided = False
    for rule in policy.rules:
        matched = rule.match.evaluate_row(row, now_ns)
        facts = "; ".join(rule.match.explain(row, now_ns)) or rule.match.text
        if decided:
            lines.append(f"  rule {rule.name} ({rule.action}): not consulted, an earlier rule decided")
        elif matched:
            lines.append(f"  rule {rule.name} ({rule.action}): MATCHES: {facts} -> decides")
            decided = True
        else:
            lines.append(f"  rule {rule.name} ({rule.action}): no match: {facts}")
    if not decided:
        lines.append("  no rule matched" + ("; the file is a watermark candidate" if policy.watermark else ""))
    return lines


def _safety(row: dict, policy: Policy) -> list[str]:
    out = []
    youngest = min(row["mtime_age"], row["ctime_age"])
    if row["state"] != FileState.RELEASED and youngest < policy.safety.min_age:
        out.append(f"  safety: modified {format_duration(youngest)} ago, within {format_duration(policy.safety.min_age)}:"
                   " never touched now")
    if policy.safety.skip_hardlinks and row["nlink"] > 1:
        out.append(f"  safety: hard-linked (nlink {row['nlink']}): skipped")
    return out
