"""The periodic incremental rescan: what file events missed, from two inventory snapshots.

inotify loses events when its queue overflows, and a tree with more
directories than ``fs.inotify.max_user_watches`` is only partly watched. So
every ``[daemon] rescan`` the daemon scans the hot tier again and compares the
new snapshot with the previous one, column-wise in Arrow (never a Python object
per file), one partition at a time (``tiering.scan.Snapshot``): rows of the
same path are in the same partition of both (``crc32(path) % buckets``), so
memory follows a partition's two narrow columns, not the namespace:

- a regular file whose ``atime`` moved forward was read: one access, unless
  file events already counted accesses for it since the previous rescan
  (best effort: noatime mounts never move atime, relatime only once a day);
- a regular file that is new or whose ``mtime`` moved forward was written:
  offered to auto-archive (the mover still skips files open for writing).

When the two snapshots have different partition counts, one count divides the
other (automatic sizing doubles it; ``tiering scan --buckets`` takes powers of
two), so the old partitions are regrouped under the new key as they are read,
each read once. Otherwise (a hand-made layout) the old snapshot's narrow
columns are read whole, as before partitioning.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiering.core.inventory import bucket_of
from tiering.scan import Snapshot

_COLUMNS = ["path", "type", "atime_ns", "mtime_ns"]


@dataclass(frozen=True)
class Changes:
    """Regular files read (atime moved) and written (new, or mtime moved) between two snapshots."""

    accessed: list[bytes]
    written: list[bytes]


def changes(old: Path, new: Path, already_counted: set[bytes] = frozenset()) -> Changes:
    """Compare snapshot ``new`` with ``old``, partition by partition; accesses in ``already_counted`` are
    left out."""
    accessed: list[bytes] = []
    written: list[bytes] = []
    for before, after in _pairs(Snapshot(old, columns=_COLUMNS), Snapshot(new, columns=_COLUMNS)):
        joined = _files(after).join(_files(before), keys="path", join_type="left outer", right_suffix="_old")
        seen_before = pc.is_valid(joined["mtime_ns_old"])
        wrote = pc.or_kleene(pc.invert(seen_before), pc.greater(joined["mtime_ns"], joined["mtime_ns_old"]))
        read = pc.and_kleene(seen_before, pc.greater(joined["atime_ns"], joined["atime_ns_old"]))
        accessed += [p for p in joined.filter(pc.fill_null(read, False))["path"].to_pylist()
                     if p not in already_counted]
        written += joined.filter(pc.fill_null(wrote, False))["path"].to_pylist()
    return Changes(accessed, written)


def _pairs(old: Snapshot, new: Snapshot) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(old rows, new rows) of the same paths' partition, for every partition of ``new``."""
    if old.buckets == new.buckets:
        for b in range(new.buckets):
            yield old.partition(b), new.partition(b)
    elif new.buckets % old.buckets == 0:  # more partitions now: each old one splits into several new ones
        for o in range(old.buckets):
            part = old.partition(o)
            ids = bucket_of(part["path"], new.buckets)
            for b in range(o, new.buckets, old.buckets):
                yield part.filter(pa.array(ids == b)), new.partition(b)
    elif old.buckets % new.buckets == 0:  # fewer now: each new one gathers several old ones
        for b in range(new.buckets):
            parts = [old.partition(o) for o in range(b, old.buckets, new.buckets)]
            yield pa.concat_tables(parts), new.partition(b)
    else:
        whole = pa.concat_tables(old.partition(o) for o in range(old.buckets))
        ids = bucket_of(whole["path"], new.buckets)
        for b in range(new.buckets):
            yield whole.filter(pa.array(np.equal(ids, b))), new.partition(b)


def _files(table: pa.Table) -> pa.Table:
    table = table.filter(pc.equal(table["type"].cast(pa.string()), "file"))
    return table.select(["path", "atime_ns", "mtime_ns"])
