"""The ``[trace]`` table: the access trace the daemon and the access guard record.

Every key is optional; these are the defaults::

    [trace]
    record = true          # the daemon records each open and write it counts as heat, the access
                           # guard each restore it does for a reader (``tiering trace export``)
    # dir = "..."          # where the Parquet files go (default: a "trace" folder beside the catalog)
    max_bytes = "1GiB"     # the folder's bound: past it, the oldest files are removed
    rotate = "5m"          # a new file this often (what is recorded meanwhile waits in memory: a
                           # crash loses at most this long of the trace, never the catalog's heat)
    max_rows = 1000000     # or as soon as this many accesses wait

A trace file costs about 6 bytes per access (a dictionary of paths per file, times
delta-encoded, zstd: 5.7 on a generated month of a million accesses), so the default
bound holds some 150 million accesses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiering.config.values import Table

TRACE_KEYS = ("record", "dir", "max_bytes", "rotate", "max_rows")
DURATION_KEYS = frozenset({"rotate"})
SIZE_KEYS = frozenset({"max_bytes"})


@dataclass(frozen=True)
class TraceConfig:
    """The resolved ``[trace]`` table (``rotate`` in seconds; ``dir`` None: beside the catalog)."""

    record: bool = True
    dir: Path | None = None
    max_bytes: int = 1 << 30
    rotate: float = 300.0
    max_rows: int = 1_000_000

    def folder(self, catalog_path: Path) -> Path:
        """Where the trace files are for a catalog at ``catalog_path``."""
        return self.dir or catalog_path.parent / "trace"


def parse_trace(table: Table, base: Path) -> TraceConfig:
    """Check and resolve the ``[trace]`` table."""
    table.check_keys(TRACE_KEYS)
    d = TraceConfig()
    rotate = table.duration("rotate", d.rotate)
    if rotate <= 0:
        raise table.error("rotate", f"{rotate:g}s is not positive", "expected a duration above zero, like '5m'")
    return TraceConfig(record=table.boolean("record", d.record), dir=table.path("dir", base, None),
                       max_bytes=table.size("max_bytes", d.max_bytes, minimum=1 << 20),
                       rotate=rotate, max_rows=table.integer("max_rows", d.max_rows, minimum=1000))


def trace_values(t: TraceConfig) -> dict[str, Any]:
    """The table as ``describe`` prints it (unset optional keys left out)."""
    values = {"record": t.record, "dir": t.dir, "max_bytes": t.max_bytes, "rotate": t.rotate, "max_rows": t.max_rows}
    return {k: v for k, v in values.items() if v is not None}
