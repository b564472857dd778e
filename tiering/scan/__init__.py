"""The scanner: the hot tier's inventory as Arrow record batches and Parquet snapshots.

Public API::

    Scan(root, jobs=None, batch_rows=65536, progress=None, io="auto", threads=8)  # iterate pa.RecordBatch; .summary
    write_snapshot(root, out_path, ..., io="auto") -> ScanSummary   # stream a scan into Parquet
    iter_snapshot(path) -> Iterator[pa.RecordBatch]           # read one back (either form)
    Snapshot(path)                                            # iterate it, or .partition(b) one bucket at a time
    fresh_snapshot(config) -> Path                            # scan the hot tier now, mark it latest
    prune_snapshots(latest, keep) -> int                      # keep the newest ``keep``
    ScanProgress, ScanSummary                                 # frozen values

Rows follow ``tiering.core.inventory.SCHEMA``. Names are imported lazily so that
scan worker processes, which import ``tiering.scan.walker`` and
``tiering.scan.pool`` only, start without loading pyarrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tiering.core.lazy import lazy_exports

_EXPORTS = {
    "Scan": "scanner",
    "DEFAULT_BATCH_ROWS": "scanner",
    "default_jobs": "scanner",
    "ScanProgress": "results",
    "ScanSummary": "results",
    "write_snapshot": "snapshot",
    "iter_snapshot": "snapshot",
    "Snapshot": "snapshot",
    "PartitionedWriter": "snapshot",
    "snapshot_summary": "snapshot",
    "snapshot_dir": "snapshot",
    "new_snapshot_path": "snapshot",
    "mark_latest": "snapshot",
    "fresh_snapshot": "snapshot",
    "prune_snapshots": "snapshot",
    "STATE_DIR": "walker",
}
__all__ = [
    "DEFAULT_BATCH_ROWS", "PartitionedWriter", "STATE_DIR", "Scan", "ScanProgress", "ScanSummary", "Snapshot", "default_jobs", "fresh_snapshot",
    "iter_snapshot", "mark_latest", "new_snapshot_path", "prune_snapshots", "snapshot_dir", "snapshot_summary",
    "write_snapshot",
]

if TYPE_CHECKING:  # pragma: no cover
    from tiering.scan.results import ScanProgress, ScanSummary
    from tiering.scan.scanner import DEFAULT_BATCH_ROWS, Scan, default_jobs
    from tiering.scan.snapshot import (
        PartitionedWriter,
        Snapshot,
        fresh_snapshot,
        iter_snapshot,
        mark_latest,
        new_snapshot_path,
        prune_snapshots,
        snapshot_dir,
        snapshot_summary,
        write_snapshot,
    )
    from tiering.scan.walker import STATE_DIR


__getattr__ = lazy_exports(__name__, _EXPORTS)
