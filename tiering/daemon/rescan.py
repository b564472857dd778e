"""The periodic incremental rescan: what file events missed, from two inventory snapshots.

inotify loses events when its queue overflows, and a tree with more
directories than ``fs.inotify.max_user_watches`` is only partly watched. So
every ``[daemon] rescan`` the daemon scans the hot tier again and compares the
new snapshot with the previous one, column-wise in Arrow (bounded by two
narrow columns per file, never a Python object per file):

- a regular file whose ``atime`` moved forward was read: one access, unless
  file events already counted accesses for it since the previous rescan
  (best effort: noatime mounts never move atime, relatime only once a day);
- a regular file that is new or whose ``mtime`` moved forward was written:
  offered to auto-archive (the mover still skips files open for writing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

_COLUMNS = ["path", "type", "atime_ns", "mtime_ns"]


@dataclass(frozen=True)
class Changes:
    """Regular files read (atime moved) and written (new, or mtime moved) between two snapshots."""

    accessed: list[bytes]
    written: list[bytes]


def changes(old: Path, new: Path, already_counted: set[bytes] = frozenset()) -> Changes:
    """Compare snapshot ``new`` with ``old``; accesses in ``already_counted`` are left out."""
    before, after = _files(old), _files(new)
    joined = after.join(before, keys="path", join_type="left outer", right_suffix="_old")
    seen_before = pc.is_valid(joined["mtime_ns_old"])
    written = pc.or_kleene(pc.invert(seen_before), pc.greater(joined["mtime_ns"], joined["mtime_ns_old"]))
    read = pc.and_kleene(seen_before, pc.greater(joined["atime_ns"], joined["atime_ns_old"]))
    accessed = [p for p in joined.filter(pc.fill_null(read, False))["path"].to_pylist() if p not in already_counted]
    return Changes(accessed, joined.filter(pc.fill_null(written, False))["path"].to_pylist())


def _files(snapshot: Path) -> pa.Table:
    table = pq.read_table(snapshot, columns=_COLUMNS)
    table = table.filter(pc.equal(table["type"].cast(pa.string()), "file"))
    return table.select(["path", "atime_ns", "mtime_ns"])
