"""Inventory snapshots: one scan streamed into Parquet, one file or one partitioned dataset.

A snapshot of up to ``PARTITION_ROWS`` rows is one Parquet file, as it always
was. A larger one is a partitioned Parquet dataset: a directory holding
``bucket=NNNNN/part-0.parquet`` for each non-empty partition, where a row's
partition is ``zlib.crc32(path) % buckets`` (``tiering.core.inventory``: the
key and why it is the whole path and not its parent directory), plus
``_tiering.json`` (the scan summary, the bucket count and the key). Anyone
reads either form with ``pyarrow.dataset.dataset(path)`` (``partitioning="hive"``
adds the ``bucket`` column; files starting with ``_`` are skipped by default);
``Snapshot`` reads both, partition by partition. How many partitions: the
caller's ``buckets``, else sized from the row count of the latest snapshot
beside it (a namespace changes slowly between scans), else one.

A snapshot is written under a hidden temporary name beside its final name,
flushed to disk, then renamed into place: a crash leaves at most a stray
``.scan-*.tmp`` file or directory, never a half snapshot under the real name.
A single-file snapshot's summary travels in its key-value metadata
(``tiering.scan.summary``).

Default layout, next to the catalog (``snapshot_dir``)::

    <catalog dir>/inventory/scan-20250102T030405.123456Z.parquet
    <catalog dir>/inventory/latest.parquet -> scan-20250102T030405.123456Z.parquet

``latest.parquet`` is a relative symlink, replaced atomically after each
successful scan (``mark_latest``); older snapshots are kept until ``prune_snapshots``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tiering.config import Config, check_locations
from tiering.core.errors import UserError
from tiering.core.inventory import BUCKET_KEY_DOC, BUCKETS_KEY, SCHEMA, bucket_of, buckets_for
from tiering.stores.localfile import fsync_path
from tiering.scan.delta import Deltas, prune_deltas
from tiering.scan.results import ProgressCallback, ScanSummary
from tiering.scan.scanner import DEFAULT_BATCH_ROWS, Scan

LATEST = "latest.parquet"
SUMMARY_KEY = "tiering.scan.summary"
#: A partitioned snapshot's own description (a leading ``_``: dataset readers skip it).
LAYOUT_FILE = "_tiering.json"
# Paths are unique, so a dictionary would only cost time; these repeat a lot.
_DICTIONARY_COLUMNS = ["type", "mode", "uid", "gid", "nlink"]
#: Partitions of a first scan on a Dask cluster (no earlier snapshot to size it from).
CLUSTER_BUCKETS = 256
#: A partition's rows are buffered up to this many before they become one row group.
_ROW_GROUP_ROWS = 1 << 16
#: ... and all buffers are flushed when together they hold this many rows (memory stays bounded).
_BUFFERED_ROWS = 1 << 20


def write_snapshot(root: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                   jobs: int | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
                   progress: ProgressCallback | None = None, io: str = "auto",
                   buckets: int | None = None, executor: str | None = None) -> ScanSummary:
    """Scan ``root`` (see ``Scan``; ``io`` is the config's ``[hot] io``) into the snapshot ``out_path``; return
    the summary. ``buckets``: partitions (1: one Parquet file); default: sized from the latest snapshot beside
    ``out_path``, one when there is none (``CLUSTER_BUCKETS`` on a cluster). ``executor``: ``dask://HOST:PORT`` scans on that Dask cluster
    (``tiering.scan.distributed``: each worker writes its own files of a partitioned snapshot, always a
    directory); None or "threads" here, with ``jobs`` processes."""
    out = Path(out_path)
    on_cluster = bool(executor) and executor != "threads"
    # A first scan on a cluster is likely a big one: partitions enough for ~256 M rows, not one.
    buckets = buckets or _buckets_like_latest(out, CLUSTER_BUCKETS if on_cluster else 1)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if on_cluster:
            summary = _write_on_cluster(executor, root, tmp, out, buckets, batch_rows, progress, io)
        else:
            with Scan(root, jobs=jobs, batch_rows=batch_rows, progress=progress, io=io) as scan:
                if buckets == 1:
                    summary = _write_file(scan, tmp, out)
                else:
                    summary = _write_partitioned(scan, tmp, out, buckets)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    fsync_path(out.parent)
    return summary


def _write_file(scan: Scan, tmp: Path, out: Path) -> ScanSummary:
    with pq.ParquetWriter(tmp, SCHEMA, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS) as writer:
        for batch in scan:
            writer.write_batch(batch)
        summary = replace(scan.summary, snapshot=out)
        writer.add_key_value_metadata({SUMMARY_KEY: json.dumps(summary.to_json())})
    fsync_path(tmp)
    return summary


def _write_partitioned(scan: Scan, tmp: Path, out: Path, buckets: int) -> ScanSummary:
    tmp.mkdir()
    with PartitionedWriter(tmp, buckets) as writer:
        for batch in scan:
            writer.write_batch(batch)
    summary = replace(scan.summary, snapshot=out)
    writer.finish(summary.to_json())
    return summary


def _write_on_cluster(executor: str, root: str | os.PathLike[str], tmp: Path, out: Path, buckets: int,
                      batch_rows: int, progress: ProgressCallback | None, io: str) -> ScanSummary:
    from tiering.core.mounts import hot_io
    from tiering.scan.distributed import connect, scan_on_cluster
    from tiering.scan.inflight import DEFAULT_THREADS

    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise UserError(f"{root}: no such directory (the tree to scan)")
    threads = DEFAULT_THREADS if hot_io(io, root) == "threads" else 0
    tmp.mkdir()
    client = connect(executor)
    try:
        summary = scan_on_cluster(client, root, tmp, buckets, batch_rows=batch_rows, threads=threads,
                                  progress=progress)
    finally:
        client.close()
    summary = replace(summary, snapshot=out)
    write_layout(tmp, buckets, summary.entries, summary.to_json())
    return summary


class PartitionedWriter:
    """Rows into ``directory/bucket=NNNNN/<part>.parquet`` by ``bucket_of(path)``, keeping their order within
    a partition; ``finish`` writes ``_tiering.json`` and makes everything durable. Several writers may share a
    directory under different ``part`` names (a distributed scan: one per worker thread); each makes its own
    files durable with ``sync``, and one ``write_layout`` describes the whole."""

    def __init__(self, directory: Path, buckets: int, part: str = "part-0") -> None:
        self.directory, self.buckets, self.part = directory, buckets, part
        self._writers: dict[int, pq.ParquetWriter] = {}
        self._buffers: dict[int, list[pa.RecordBatch]] = {}
        self._buffered: dict[int, int] = {}
        self.rows = 0

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        ids = bucket_of(batch["path"], self.buckets)
        order = np.argsort(ids, kind="stable")  # stable: a partition keeps the scan's order
        bounds = np.searchsorted(ids[order], np.arange(self.buckets + 1))
        for b in np.flatnonzero(np.diff(bounds)):
            part = batch.take(pa.array(order[bounds[b]:bounds[b + 1]]))
            self._buffers.setdefault(int(b), []).append(part)
            self._buffered[int(b)] = self._buffered.get(int(b), 0) + part.num_rows
            if self._buffered[int(b)] >= _ROW_GROUP_ROWS:
                self._flush(int(b))
        self.rows += batch.num_rows
        if sum(self._buffered.values()) >= _BUFFERED_ROWS:
            for b in list(self._buffers):
                self._flush(b)

    def _flush(self, bucket: int) -> None:
        parts = self._buffers.pop(bucket, [])
        self._buffered.pop(bucket, None)
        if not parts:
            return
        writer = self._writers.get(bucket)
        if writer is None:
            path = self.directory / partition_dir(bucket) / f"{self.part}.parquet"
            path.parent.mkdir(exist_ok=True)
            writer = self._writers[bucket] = pq.ParquetWriter(
                path, SCHEMA, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS)
            writer.add_key_value_metadata({BUCKETS_KEY: str(self.buckets)})
        writer.write_table(pa.Table.from_batches(parts, schema=SCHEMA), row_group_size=_ROW_GROUP_ROWS)

    def close(self) -> None:
        for b in list(self._buffers):
            self._flush(b)
        for writer in self._writers.values():
            writer.close()

    @property
    def files(self) -> list[Path]:
        """The Parquet files this writer made, one per partition it wrote rows to."""
        return [self.directory / partition_dir(b) / f"{self.part}.parquet" for b in sorted(self._writers)]

    def sync(self) -> None:
        """fsync this writer's files and their directories (after ``close``)."""
        for file in self.files:
            fsync_path(file)
            fsync_path(file.parent)

    def finish(self, summary: dict | None = None) -> None:
        """Describe the layout (and the scan) in ``_tiering.json``; fsync every file and directory."""
        self.sync()
        write_layout(self.directory, self.buckets, self.rows, summary)

    def __enter__(self) -> PartitionedWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_layout(directory: Path, buckets: int, rows: int, summary: dict | None) -> None:
    """``_tiering.json`` of a partitioned snapshot in ``directory``, durable with the directory itself."""
    layout = {"buckets": buckets, "key": BUCKET_KEY_DOC, "rows": rows, "summary": summary}
    (directory / LAYOUT_FILE).write_text(json.dumps(layout))
    fsync_path(directory / LAYOUT_FILE)
    fsync_path(directory)


def partition_dir(bucket: int) -> str:
    """The directory of one partition (Hive style, so dataset readers can recover the ``bucket`` column)."""
    return f"bucket={bucket:05d}"


def _buckets_like_latest(out: Path, first: int = 1) -> int:
    latest = out.parent / LATEST
    try:
        summary = snapshot_summary(latest)
    except (OSError, KeyError, ValueError, pa.ArrowException):
        return first  # no earlier scan here (or an unreadable one)
    return buckets_for(summary.get("files", 0) + summary.get("dirs", 0) + summary.get("symlinks", 0))


class Snapshot:
    """A snapshot on disk, either form: iterate it for its batches (partition after partition, each in its
    scan order), or read one partition at a time with ``partition``. Complete deltas beside it
    (``tiering.scan.delta``) are merged in, so it reads as the current inventory; ``deltas=False``: as scanned."""

    def __init__(self, path: str | os.PathLike[str], *, batch_rows: int = DEFAULT_BATCH_ROWS,
                 columns: list[str] | None = None, deltas: bool = True) -> None:
        self.path, self.batch_rows, self.columns = Path(path), batch_rows, columns
        self._deltas = Deltas(self.path) if deltas else None
        if self.path.is_dir():
            layout = json.loads((self.path / LAYOUT_FILE).read_text())
            self.buckets = int(layout["buckets"])
            self._files = [sorted((self.path / partition_dir(b)).glob("*.parquet")) for b in range(self.buckets)]
        else:
            self.buckets, self._files = 1, [[self.path]]

    @property
    def partitioned(self) -> bool:
        return self.buckets > 1

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self._deltas:
            for b in range(self.buckets):
                yield from self.partition(b).to_batches(max_chunksize=self.batch_rows)
            return
        for files in self._files:
            for file in files:
                with pq.ParquetFile(file) as parquet:
                    yield from parquet.iter_batches(batch_size=self.batch_rows, columns=self.columns)

    def partition(self, bucket: int) -> pa.Table:
        """All rows of one partition, in scan order (an empty table when it has none)."""
        merge = bool(self._deltas)
        columns = self.columns if not merge or self.columns is None or "path" in self.columns \
            else ["path", *self.columns]  # merging goes by path
        tables = [pq.read_table(file, columns=columns, partitioning=None) for file in self._files[bucket]]
        schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        if merge:
            table = self._deltas.apply(table, bucket)
            if columns is not self.columns:
                table = table.select(self.columns)
        return table


def iter_snapshot(path: str | os.PathLike[str], *, batch_rows: int = DEFAULT_BATCH_ROWS,
                  columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of a snapshot, either form (``inventory.SCHEMA``, or just ``columns``)."""
    yield from Snapshot(path, batch_rows=batch_rows, columns=columns)


def snapshot_summary(path: str | os.PathLike[str]) -> dict:
    """The summary a snapshot was written with, as ``ScanSummary.to_json()`` made it."""
    if Path(path).is_dir():
        return json.loads((Path(path) / LAYOUT_FILE).read_text())["summary"]
    metadata = pq.read_metadata(path).metadata or {}
    return json.loads(metadata[SUMMARY_KEY.encode()])


def snapshot_dir(catalog_path: Path) -> Path:
    """Where snapshots live by default: ``inventory/`` beside the catalog."""
    return catalog_path.parent / "inventory"


def new_snapshot_path(directory: Path, now: dt.datetime | None = None) -> Path:
    """A fresh snapshot name in ``directory``, stamped with the UTC time."""
    now = now or dt.datetime.now(dt.UTC)
    return directory / f"scan-{now.astimezone(dt.UTC):%Y%m%dT%H%M%S.%fZ}.parquet"


def mark_latest(snapshot: Path) -> Path:
    """Point ``latest.parquet`` (beside ``snapshot``) at it, atomically; the deltas of older snapshots are
    superseded (removed)."""
    link = snapshot.with_name(LATEST)
    tmp = snapshot.with_name(f".{LATEST}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(snapshot.name, tmp)
    os.replace(tmp, link)
    prune_deltas(link)
    return link


def fresh_snapshot(config: Config, jobs: int | None = None) -> Path:
    """Scan the hot tier now (on the config's ``[scan] executor``); returns the new snapshot (also marked latest)."""
    check_locations(config)  # each time: a symlink or mount may have changed since the config was loaded
    target = new_snapshot_path(snapshot_dir(config.catalog_path))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_snapshot(config.hot_path, target, jobs=jobs, io=config.hot_io, executor=config.scan_executor)
    mark_latest(target)
    return target


def prune_snapshots(latest: Path, keep: int) -> int:
    """Delete all but the newest ``keep`` scan snapshots beside ``latest`` (never ``latest``)."""
    snapshots = sorted(latest.parent.glob("scan-*.parquet"))  # names sort by their UTC stamp
    removed = 0
    for old in snapshots[:-keep]:
        if old != latest:
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
            removed += 1
    return removed
