"""``TraceLog``: accesses recorded as rotated Parquet files in one folder, bounded in size.

Recorders call ``record`` from any thread; it only appends to a buffer. The
buffer becomes one Parquet file (``trace-<first time_ns>-<host>-<pid>.parquet``,
written under a temporary name and renamed into place, so a reader never sees
half a file) every ``rotate`` seconds or ``max_rows`` accesses, whichever comes
first, and at ``close``. After each file, the oldest files of the folder are
removed until the folder holds at most ``max_bytes``: several recorders (the
daemon, each host's access guard) may share one folder and its bound.

The trace is a record for people and the simulator, never an input of a
decision: a crash loses what was still buffered, nothing else.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tiering.trace.schema import KINDS, SCHEMA

log = logging.getLogger("tiering.trace")

PREFIX, SUFFIX = "trace-", ".parquet"


class TraceLog:
    """One recorder's trace into ``folder`` (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike[str], *, max_bytes: int = 1 << 30, rotate: float = 300.0,
                 max_rows: int = 1_000_000, clock=time.time_ns) -> None:
        self.folder = Path(folder)
        self.max_bytes, self.rotate, self.max_rows, self.clock = max_bytes, rotate, max_rows, clock
        self.tag = f"{socket.gethostname().split('.')[0] or 'localhost'}-{os.getpid()}"
        self.written = 0  # files written
        self.removed = 0  # files removed to keep the bound
        self._lock = threading.Lock()
        self._rows: tuple[list[int], list[bytes], list[int], list[int], list[str | None]] = ([], [], [], [], [])
        self._due = time.monotonic() + rotate

    @classmethod
    def of(cls, config) -> TraceLog | None:
        """The trace a ``Config`` asks for (its ``[trace]``), or None when it records none."""
        t = config.trace
        if not t.record:
            return None
        return cls(t.folder(config.catalog_path), max_bytes=t.max_bytes, rotate=t.rotate, max_rows=t.max_rows)

    def record(self, kind: str, paths: Iterable[bytes], sizes: Iterable[int] | int = 0, tier: str | None = None,
               at_ns: Iterable[int] | int | None = None) -> None:
        """Note one access of ``kind`` per path (``sizes``: bytes each, or one number for all; ``at_ns``: when
        each was, or one time for all, default now); cheap, no I/O unless a rotation is due."""
        paths = list(paths)
        at = self.clock() if at_ns is None else at_ns
        at = [at] * len(paths) if isinstance(at, int) else list(at)
        sizes = [sizes] * len(paths) if isinstance(sizes, int) else list(sizes)
        code = KINDS.index(kind)
        with self._lock:
            times, names, counts, kinds, tiers = self._rows
            times.extend(at)
            names.extend(paths)
            counts.extend(sizes)
            kinds.extend([code] * len(paths))
            tiers.extend([tier] * len(paths))
            due = len(times) >= self.max_rows or time.monotonic() >= self._due
        if due:
            self.flush()

    def tick(self) -> None:
        """Rotate if it is time (a recorder calls this now and then: a quiet hour still ends in a file)."""
        if time.monotonic() >= self._due:
            self.close()

    def flush(self) -> Path | None:
        """Write what is buffered as one file now (None when nothing was); then keep the folder's bound."""
        with self._lock:
            rows, self._rows = self._rows, ([], [], [], [], [])
            self._due = time.monotonic() + self.rotate
        if not rows[0]:
            return None
        table = _table(*rows)
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / f"{PREFIX}{min(rows[0]):020d}-{self.tag}{SUFFIX}"
        tmp = final.with_name(f".{final.name}.tmp")
        write_trace(table, tmp)
        os.replace(tmp, final)
        self.written += 1
        self.removed += keep_bound(self.folder, self.max_bytes)
        return final

    def close(self) -> None:
        """Write what is left."""
        try:
            self.flush()
        except OSError as exc:  # the trace never stops its recorder
            log.warning("trace %s: %s (the last accesses were not recorded)", self.folder, exc)


def _table(times: list[int], names: list[bytes], counts: list[int], kinds: list[int],
           tiers: list[str | None]) -> pa.Table:
    order = sorted(range(len(times)), key=times.__getitem__)  # rows arrive nearly sorted: cheap
    kind = pa.DictionaryArray.from_arrays(pa.array([kinds[i] for i in order], pa.int8()), pa.array(KINDS))
    tier = pa.array([tiers[i] for i in order], pa.string()).dictionary_encode()
    return pa.table([pa.array([times[i] for i in order], pa.int64()), pa.array([names[i] for i in order], pa.binary()),
                     pa.array([counts[i] for i in order], pa.int64()), kind,
                     tier.cast(SCHEMA.field("tier").type)], schema=SCHEMA)


def write_trace(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """``table`` (the trace schema) as one compact Parquet file: paths and kinds by dictionary, times
    delta-encoded, zstd."""
    pq.write_table(table, path, compression="zstd", use_dictionary=["path", "kind", "tier"],
                   column_encoding={"time_ns": "DELTA_BINARY_PACKED", "bytes": "DELTA_BINARY_PACKED"},
                   row_group_size=1 << 20)


def trace_files(folder: Path) -> list[Path]:
    """The folder's finished trace files, oldest first (by the first access each holds)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(SUFFIX)),
                  key=lambda p: p.name)


def keep_bound(folder: Path, max_bytes: int) -> int:
    """Remove the oldest trace files until ``folder`` holds at most ``max_bytes`` of them; how many went."""
    files = trace_files(folder)
    sizes = []
    for path in files:
        try:
            sizes.append(path.stat().st_size)
        except FileNotFoundError:  # another recorder removed it first
            sizes.append(0)
    total, removed = sum(sizes), 0
    for path, size in zip(files[:-1], sizes[:-1]):  # the newest file always stays
        if total <= max_bytes:
            break
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        total -= size
    return removed
