"""Delta partitions: a full snapshot kept current from change events, without a full rescan.

Beside a full snapshot ``scan-STAMP.parquet`` (either form) the daemon appends
deltas in ``scan-STAMP.deltas/`` (``tiering.daemon.changes`` says where the
kernel delivers the events), one directory per batch of changed paths::

    scan-STAMP.deltas/_state.json                  complete?, and "through": the time it is current as of
    scan-STAMP.deltas/00000001/bucket=NNNNN.parquet  rows of the changed paths, same key as the snapshot
    scan-STAMP.deltas/00000001/_trees.parquet        directories whose whole subtree was replaced

A delta's rows are ``inventory.SCHEMA`` plus ``gone``: the ``lstat`` of each
changed path as it is when the batch is written (never what an event said),
or a tombstone (``gone`` true) for a path no longer there or now a special
file. Partitions use the snapshot's key and bucket count (``crc32(path) %
buckets``), so a reader merges partition ``b`` of the snapshot with partition
``b`` of each delta only. A directory deleted or moved is a *tree*:
every row at or under it is dropped (in every partition) and its subtree as
it is now is listed into the same delta, so a moved directory's descendants
follow it without one event each. A delta directory is written under a hidden
temporary name, fsynced, then renamed: a reader sees a whole delta or none.
More than ``MAX_DELTAS`` deltas are folded into one (``DeltaLog.compact``), so a
long stretch between full scans costs readers a few files per partition, not
one per batch.

Merging (``Deltas.apply``): deltas in order, each one first drops its trees,
then replaces the rows of its paths (the latest row of a path wins, a
tombstone removes it). The trust contract: the deltas count only while
``_state.json`` says ``complete``. A dropped event (``FAN_Q_OVERFLOW``) or a
lost listener marks them incomplete; then readers use the full snapshot as it
was scanned and ``inventory_age`` is infinite, so the next plan rescans in full
rather than use a partial listing as a whole one. A newer full snapshot marked
latest supersedes the deltas of every older one (``prune_deltas``).

What deltas do not follow: reads (``atime``) are not change events; a
directory's ``atime`` moves when something lists it, and a file's when it is
read, at most once a day under ``relatime``. Heat comes from the access guard
and the rescans' comparison, as before.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tiering.core.inventory import DIR, FILE, SCHEMA, SYMLINK, bucket_of
from tiering.scan.batches import to_record_batch
from tiering.scan.walker import MAX_BATCH_ROWS, STATE_DIR, TYPE_CODES, Walker
from tiering.stores.localfile import fsync_path

SUFFIX = ".deltas"
STATE_FILE = "_state.json"
TREES_FILE = "_trees.parquet"
DELTA_SCHEMA = SCHEMA.append(pa.field("gone", pa.bool_(), nullable=False))
_TREES_SCHEMA = pa.schema([pa.field("path", pa.binary(), nullable=False)])
_DELTA_NAME = re.compile(r"\d{8}")
#: Deltas kept side by side before they are folded into one (each reader opens every one per partition).
MAX_DELTAS = 32


def deltas_dir(snapshot: str | os.PathLike[str]) -> Path:
    """Where the deltas of ``snapshot`` (a symlink such as ``latest.parquet`` is followed) live."""
    real = Path(os.path.realpath(snapshot))
    return real.with_name(real.name.removesuffix(".parquet") + SUFFIX)


@dataclass(frozen=True)
class DeltaState:
    """``_state.json``: whether the deltas are a whole account of the changes, and since when not."""

    complete: bool
    through: float  # Unix time the snapshot plus its deltas are current as of
    reason: str | None = None  # why they are incomplete


def read_state(snapshot: str | os.PathLike[str]) -> DeltaState | None:
    """The deltas' state (None: nobody follows this snapshot's changes)."""
    try:
        raw = json.loads((deltas_dir(snapshot) / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    return DeltaState(bool(raw["complete"]), float(raw["through"]), raw.get("reason"))


def inventory_age(snapshot: str | os.PathLike[str], now: float) -> float:
    """How old the inventory ``snapshot`` gives is: since it was written, or since its deltas were last
    current; infinite when its deltas are incomplete (it must not be trusted as current)."""
    written = os.stat(snapshot).st_mtime
    state = read_state(snapshot)
    if state is None:
        return max(0.0, now - written)
    if not state.complete:
        return math.inf
    return max(0.0, now - max(written, state.through))


class Deltas:
    """The deltas of one snapshot a reader merges (none unless they are complete): ``apply`` per partition."""

    def __init__(self, snapshot: str | os.PathLike[str]) -> None:
        self.snapshot = snapshot
        self.dir = deltas_dir(snapshot)
        state = read_state(snapshot)
        self.parts = _listing(self.dir) if state is not None and state.complete else []
        self._trees = [_read_trees(p) for p in self.parts]

    def __bool__(self) -> bool:
        return bool(self.parts)

    def apply(self, table: pa.Table, bucket: int) -> pa.Table:
        """Partition ``bucket`` of the snapshot (``table``, any columns including ``path``) as of the last
        delta: trees dropped, then each changed path's latest row, tombstones removed."""
        try:
            return _fold(table, zip(self.parts, self._trees), bucket)
        except _Compacted:  # the deltas listed were folded into one meanwhile: list them again
            self.__init__(self.snapshot)
            return self.apply(table, bucket)


class _Compacted(Exception):
    """A delta listed a moment ago is gone: ``DeltaLog`` folded it into a newer one."""


def _fold(table: pa.Table, parts, bucket: int, keep_gone: bool = False) -> pa.Table:
    """``table`` (rows of partition ``bucket``) with the deltas ``parts`` (``(directory, trees)``) applied in
    order; ``keep_gone``: tombstones stay as rows (``table`` has the ``gone`` column), for a compaction."""
    columns = [c for c in table.column_names if c != "gone"]
    for part, trees in parts:
        if trees:
            table = table.filter(pc.invert(_under(table["path"], trees)))
        file = part / f"bucket={bucket:05d}.parquet"
        try:
            rows = pq.read_table(file, columns=[*columns, "gone"], partitioning=None)
        except FileNotFoundError:
            if not part.is_dir():
                raise _Compacted(part) from None
            continue  # no changed path of this partition in that delta
        table = table.filter(pc.invert(pc.is_in(table["path"], value_set=rows["path"].combine_chunks())))
        if not keep_gone:
            rows = rows.filter(pc.invert(rows["gone"])).select(columns)
        table = pa.concat_tables([table, rows.cast(table.schema)])
    return table


def _listing(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if _DELTA_NAME.fullmatch(p.name))
    except FileNotFoundError:
        return []


class DeltaLog:
    """Appends deltas to the snapshot ``snapshot`` of the hot tier ``root`` (``buckets``: its partitions)."""

    def __init__(self, snapshot: str | os.PathLike[str], root: str | os.PathLike[str], buckets: int) -> None:
        self.snapshot, self.root, self.buckets = Path(os.path.realpath(snapshot)), Path(root), buckets
        self.dir = deltas_dir(snapshot)
        self._seq = 0

    @property
    def superseded(self) -> bool:
        """A newer full snapshot was marked latest and removed these deltas (``prune_deltas``)."""
        return not self.dir.is_dir()

    def begin(self, through: float) -> None:
        """Start following: the snapshot is current as of ``through`` (when the changes since are all known)."""
        self.dir.mkdir(exist_ok=True)
        self._seq = max((int(p.name) for p in _listing(self.dir)), default=0)
        self._write_state(DeltaState(True, through))

    def append(self, paths: frozenset[bytes] | set[bytes], trees: frozenset[bytes] | set[bytes],
               through: float) -> int:
        """One delta of these changed paths and trees, as they are now; returns its rows (tombstones
        included). Nothing is written when the deltas were pruned (a newer full snapshot superseded them)."""
        if self.superseded:
            return 0
        if paths or trees:
            rows, trees = changed_rows(self.root, paths, trees)
            self._seq += 1
            self._write(f"{self._seq:08d}", rows, trees)
            if len(parts := _listing(self.dir)) > MAX_DELTAS:
                self.compact(parts)
        else:
            rows = DELTA_SCHEMA.empty_table()
        self._write_state(DeltaState(True, through))
        return rows.num_rows

    def compact(self, parts: list[Path]) -> None:
        """Fold the deltas ``parts`` into one newer delta, then remove them. A reader that listed them still
        reads right: the fold applied after them changes nothing, and one that finds them gone lists again."""
        trees = [_read_trees(p) for p in parts]
        self._seq += 1
        self._publish(f"{self._seq:08d}", ((b, _fold(DELTA_SCHEMA.empty_table(), zip(parts, trees), b, keep_gone=True))
                                           for b in range(self.buckets)),
                      _outermost({t for each in trees for t in each}))
        for part in parts:
            shutil.rmtree(part, ignore_errors=True)

    def incomplete(self, reason: str) -> None:
        """Stop trusting the deltas (a dropped event, a lost listener): readers fall back to the full snapshot
        and the next plan scans in full."""
        if not self.superseded:
            state = read_state(self.snapshot)
            self._write_state(DeltaState(False, state.through if state else 0.0, reason))

    def _write(self, name: str, rows: pa.Table, trees: list[bytes]) -> None:
        ids = bucket_of(rows["path"], self.buckets)
        self._publish(name, ((int(b), rows.filter(pa.array(ids == b))) for b in np.unique(ids)), trees)

    def _publish(self, name: str, parts: Iterable[tuple[int, pa.Table]], trees: list[bytes]) -> None:
        """One delta ``name``: each (bucket, rows) of ``parts`` that has rows, and ``trees``, written under a
        temporary name, fsynced, then renamed into place (a reader sees a whole delta or none)."""
        tmp = self.dir / f".{name}.{os.getpid()}.tmp"
        tmp.mkdir()
        try:
            for b, rows in parts:
                if rows.num_rows:
                    file = tmp / f"bucket={b:05d}.parquet"
                    pq.write_table(rows, file, compression="zstd")
                    fsync_path(file)
            self._write_trees(tmp, trees)
            fsync_path(tmp)
            os.replace(tmp, self.dir / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_path(self.dir)

    @staticmethod
    def _write_trees(directory: Path, trees: list[bytes]) -> None:
        if trees:
            pq.write_table(pa.table({"path": pa.array(trees, pa.binary())}, schema=_TREES_SCHEMA),
                           directory / TREES_FILE)
            fsync_path(directory / TREES_FILE)

    def _write_state(self, state: DeltaState) -> None:
        tmp = self.dir / f".{STATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"complete": state.complete, "through": state.through, "reason": state.reason}))
        fsync_path(tmp)
        os.replace(tmp, self.dir / STATE_FILE)
        fsync_path(self.dir)


def changed_rows(root: str | os.PathLike[str], paths: frozenset[bytes] | set[bytes],
                 trees: frozenset[bytes] | set[bytes]) -> tuple[pa.Table, list[bytes]]:
    """(``DELTA_SCHEMA`` rows of the changed paths and of everything under the trees as they are now, the
    outermost trees). Rows are made the way the scanner makes them (``Walker``), so a merged inventory has the
    same values a fresh scan would."""
    outer = _outermost(trees)
    points = sorted(p for p in paths if not _inside(p, outer))
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        raws, gone = _walk(fd, points, outer)
    finally:
        os.close(fd)
    found = pa.Table.from_batches([to_record_batch(r) for r in raws if r.rows], schema=SCHEMA)
    found = found.append_column("gone", pa.array(np.zeros(found.num_rows, bool)))
    tombs = _tombstones(gone)
    return pa.concat_tables([found.cast(DELTA_SCHEMA), tombs]), outer


def _walk(fd: int, points: list[bytes], trees: list[bytes]) -> tuple[list, list[bytes]]:
    walker, raws, gone, stack = Walker(fd, MAX_BATCH_ROWS), [], [], []
    honest: dict[bytes, bool] = {}  # parent directory -> reached without a symlink
    for rel in sorted({*points, *trees}):
        st = _lstat(fd, rel, honest)
        if st is None or stat.S_IFMT(st.st_mode) not in TYPE_CODES or rel == STATE_DIR:
            gone.append(rel)
            continue
        if not walker.room_for(1):
            raws.append(walker.take())
        walker.record(b"", [rel], [st], stack if rel in trees else [])
        while stack:
            raws.extend(walker.scan(stack.pop(), stack))
    raws.append(walker.take())
    return raws, gone


def _lstat(fd: int, rel: bytes, honest: dict[bytes, bool]) -> os.stat_result | None:
    """``lstat`` of ``rel`` under the root ``fd``, None when gone or when a parent is now a symlink (the
    scanner never follows one, so the path is not in a scan either)."""
    parent = rel.rpartition(b"/")[0]
    if parent and not honest.setdefault(parent, _no_symlinks(fd, parent)):
        return None
    try:
        return os.stat(rel, dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _no_symlinks(fd: int, parent: bytes) -> bool:
    at = b""
    for part in parent.split(b"/"):
        at = at + b"/" + part if at else part
        try:
            if not stat.S_ISDIR(os.stat(at, dir_fd=fd, follow_symlinks=False).st_mode):
                return False
        except OSError:
            return False
    return True


def _tombstones(paths: list[bytes]) -> pa.Table:
    """Rows that only say ``gone`` (their other values are zeros, never read)."""
    n = len(paths)
    zeros = pa.array(np.zeros(n, np.int64))
    kinds = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array([FILE, DIR, SYMLINK]))
    numbers = [zeros.cast(f.type) for f in SCHEMA if f.name not in ("path", "type")]
    arrays = [pa.array(paths, pa.binary()), kinds, *numbers, pa.array(np.ones(n, bool))]
    return pa.Table.from_arrays(arrays, schema=DELTA_SCHEMA)


def _outermost(trees: frozenset[bytes] | set[bytes]) -> list[bytes]:
    """The trees not inside another one (sorted: a parent sorts before its children under ``/`` joins)."""
    kept: list[bytes] = []
    for tree in sorted(trees, key=lambda p: p.split(b"/")):
        if not kept or not _inside(tree, kept[-1:]):
            kept.append(tree)
    return kept


def _inside(path: bytes, trees: list[bytes]) -> bool:
    return any(path == t or path.startswith(t + b"/") for t in trees)


def _under(paths: pa.ChunkedArray, trees: list[bytes]) -> pa.ChunkedArray:
    """Which of ``paths`` are one of ``trees`` or below one: one pass per distinct tree length, not per tree
    (an ``rm -rf`` makes a tree of every directory it removes)."""
    hit = pc.is_in(paths, value_set=pa.array(trees, pa.binary()))
    by_length: dict[int, list[bytes]] = {}
    for tree in trees:
        by_length.setdefault(len(tree) + 1, []).append(tree + b"/")  # compared as bytes: need not be UTF-8
    for length, prefixes in by_length.items():
        heads = pc.binary_slice(paths, 0, length)
        hit = pc.or_(hit, pc.is_in(heads, value_set=pa.array(prefixes, pa.binary())))
    return hit


def _read_trees(part: Path) -> list[bytes]:
    file = part / TREES_FILE
    return pq.read_table(file)["path"].to_pylist() if file.exists() else []


def prune_deltas(latest: str | os.PathLike[str]) -> int:
    """Remove the deltas of every snapshot beside ``latest`` but the one it names: a full scan supersedes them."""
    keep = deltas_dir(latest)
    removed = 0
    for old in keep.parent.glob(f"scan-*{SUFFIX}"):
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
    return removed
