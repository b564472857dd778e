"""Inventory snapshots: one scan streamed into one Parquet file.

A snapshot is written under a hidden temporary name beside its final name,
flushed to disk, then renamed into place: a crash leaves at most a stray
``.scan-*.tmp`` file, never a half snapshot under the real name. The scan's
summary travels in the file's key-value metadata (``tiering.scan.summary``).

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
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tiering.config import Config, check_locations
from tiering.core.inventory import SCHEMA
from tiering.stores.localfile import fsync_path
from tiering.scan.results import ProgressCallback, ScanSummary
from tiering.scan.scanner import DEFAULT_BATCH_ROWS, Scan

LATEST = "latest.parquet"
SUMMARY_KEY = "tiering.scan.summary"
# Paths are unique, so a dictionary would only cost time; these repeat a lot.
_DICTIONARY_COLUMNS = ["type", "mode", "uid", "gid", "nlink"]


def write_snapshot(root: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                   jobs: int | None = None, batch_rows: int = DEFAULT_BATCH_ROWS,
                   progress: ProgressCallback | None = None, io: str = "auto") -> ScanSummary:
    """Scan ``root`` (see ``Scan``; ``io`` is the config's ``[hot] io``) into the Parquet file
    ``out_path``; return the summary."""
    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with Scan(root, jobs=jobs, batch_rows=batch_rows, progress=progress, io=io) as scan, \
                pq.ParquetWriter(tmp, SCHEMA, compression="zstd", use_dictionary=_DICTIONARY_COLUMNS) as writer:
            for batch in scan:
                writer.write_batch(batch)
            summary = replace(scan.summary, snapshot=out)
            writer.add_key_value_metadata({SUMMARY_KEY: json.dumps(summary.to_json())})
        fsync_path(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(out.parent)
    return summary


def iter_snapshot(path: str | os.PathLike[str], *, batch_rows: int = DEFAULT_BATCH_ROWS,
                  columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of a snapshot (``inventory.SCHEMA``, or just ``columns``)."""
    with pq.ParquetFile(path) as file:
        yield from file.iter_batches(batch_size=batch_rows, columns=columns)


def snapshot_summary(path: str | os.PathLike[str]) -> dict:
    """The summary a snapshot was written with, as ``ScanSummary.to_json()`` made it."""
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
    """Point ``latest.parquet`` (beside ``snapshot``) at it, atomically."""
    link = snapshot.with_name(LATEST)
    tmp = snapshot.with_name(f".{LATEST}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(snapshot.name, tmp)
    os.replace(tmp, link)
    return link


def fresh_snapshot(config: Config, jobs: int | None = None) -> Path:
    """Scan the hot tier now; returns the new snapshot (also marked latest)."""
    check_locations(config)  # each time: a symlink or mount may have changed since the config was loaded
    target = new_snapshot_path(snapshot_dir(config.catalog_path))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_snapshot(config.hot_path, target, jobs=jobs, io=config.hot_io)
    mark_latest(target)
    return target


def prune_snapshots(latest: Path, keep: int) -> int:
    """Delete all but the newest ``keep`` scan snapshots beside ``latest`` (never ``latest``)."""
    snapshots = sorted(latest.parent.glob("scan-*.parquet"))  # names sort by their UTC stamp
    removed = 0
    for old in snapshots[:-keep]:
        if old != latest:
            old.unlink(missing_ok=True)
            removed += 1
    return removed
