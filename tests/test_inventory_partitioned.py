"""The partitioned inventory (issue 21.1): the same rows as one file, readable by anyone, old files still read."""

from __future__ import annotations

import json
import time
import os
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tiering.core.inventory import PARTITION_ROWS, SCHEMA, bucket_of, buckets_for
from tiering.scan import (
    Scan,
    ScanProgress,
    Snapshot,
    iter_snapshot,
    mark_latest,
    prune_snapshots,
    snapshot_summary,
    write_snapshot,
)


def make_tree(root: Path) -> None:
    """Skewed directories (one big, several small, one empty), odd names, a symlink."""
    for i in range(300):
        (root / "big").mkdir(parents=True, exist_ok=True)
        (root / "big" / f"shard-{i:05d}.tar").write_bytes(b"x" * (i % 7))
    for d in range(6):
        (root / "small" / str(d)).mkdir(parents=True)
        for i in range(d + 1):
            (root / "small" / str(d) / f"f{i}").write_bytes(b"y")
    (root / "empty").mkdir()
    odd = os.fsencode(root) + b"/odd-\xff\xfe name\n.bin"
    with open(odd, "wb") as f:
        f.write(b"z")
    os.symlink("big", root / "link")


def table(path: Path) -> pa.Table:
    return pa.Table.from_batches(list(iter_snapshot(path)), schema=SCHEMA)


def test_a_partitioned_snapshot_holds_the_same_rows_as_one_file_and_each_row_in_its_bucket(tmp_path):
    root = tmp_path / "root"
    make_tree(root)
    write_snapshot(root, tmp_path / "settle.parquet", jobs=1)  # reading directories may bump their atime once
    one = tmp_path / "one.parquet"
    parts = tmp_path / "parts.parquet"
    summary_one = write_snapshot(root, one, jobs=1, batch_rows=50)
    summary = write_snapshot(root, parts, jobs=2, batch_rows=50, buckets=8)
    assert one.is_file() and parts.is_dir()
    single, split = table(one), table(parts)
    assert split.num_rows == single.num_rows == summary.entries == summary_one.entries == 322 + 9 + 1
    assert split.sort_by("path").equals(single.sort_by("path"))
    snap = Snapshot(parts)
    assert snap.buckets == 8 and snap.partitioned
    for b in range(8):
        rows = snap.partition(b)
        assert all(zlib.crc32(p) % 8 == b for p in rows["path"].to_pylist())
    assert sum(snap.partition(b).num_rows for b in range(8)) == single.num_rows
    assert snapshot_summary(parts)["files"] == summary.files == 300 + 21 + 1
    # Anyone reads it with pyarrow.dataset; Hive partitioning gives the bucket back as a column.
    dataset = ds.dataset(parts, format="parquet", partitioning="hive")
    read = dataset.to_table()
    assert read.num_rows == single.num_rows
    assert [int(b) for b in read["bucket"].to_pylist()] == [zlib.crc32(p) % 8 for p in read["path"].to_pylist()]
    layout = json.loads((parts / "_tiering.json").read_text())
    assert layout["buckets"] == 8 and layout["key"] == "zlib.crc32(path) % buckets"


def test_the_bucket_key_is_crc32_of_the_path_bytes():
    paths = pa.array([b"datasets/x.tar", b"a/b/c", b"\xff\xfe", b""], pa.binary())
    assert list(bucket_of(paths, 16)) == [zlib.crc32(p) % 16 for p in paths.to_pylist()]
    assert list(bucket_of(paths, 1)) == [0, 0, 0, 0]
    assert zlib.crc32(b"datasets/x.tar") % 16 == bucket_of(pa.array([b"datasets/x.tar"]), 16)[0]
    assert (buckets_for(0), buckets_for(PARTITION_ROWS), buckets_for(PARTITION_ROWS + 1),
            buckets_for(100 * PARTITION_ROWS)) == (1, 1, 2, 128)


def test_a_snapshot_written_the_old_way_still_reads(tmp_path):
    """A single Parquet file written as before partitioning (its summary in the file's metadata)."""
    rows = {"path": [b"a", b"b/c"], "type": ["file", "dir"], "size": [1, 0], "blocks": [8, 0],
            "mode": [0o100644, 0o40755], "uid": [0, 0], "gid": [0, 0], "atime_ns": [1, 2], "mtime_ns": [1, 2],
            "ctime_ns": [1, 2], "ino": [5, 6], "nlink": [1, 2]}
    old = tmp_path / "scan-20250101T000000.000000Z.parquet"
    with pq.ParquetWriter(old, SCHEMA, compression="zstd") as writer:
        writer.write_table(pa.Table.from_pydict(rows, schema=SCHEMA))
        writer.add_key_value_metadata({"tiering.scan.summary": json.dumps({"files": 1, "dirs": 1, "symlinks": 0})})
    assert table(old).to_pydict()["path"] == [b"a", b"b/c"]
    snap = Snapshot(old)
    assert snap.buckets == 1 and not snap.partitioned and snap.partition(0).num_rows == 2
    assert snapshot_summary(old)["files"] == 1


def test_the_partition_count_follows_the_latest_snapshot_beside_it(tmp_path):
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"x")
    first = write_snapshot(root, tmp_path / "scan-1.parquet", jobs=1).snapshot
    assert first.is_file()  # no latest yet: one file
    big = tmp_path / "scan-0.parquet"  # stands in for an earlier scan of 3 M entries
    with pq.ParquetWriter(big, SCHEMA) as writer:
        writer.add_key_value_metadata({"tiering.scan.summary": json.dumps({"files": 3 * PARTITION_ROWS, "dirs": 0})})
    mark_latest(big)
    second = write_snapshot(root, tmp_path / "scan-2.parquet", jobs=1).snapshot
    assert second.is_dir() and Snapshot(second).buckets == 4
    mark_latest(second)
    third = write_snapshot(root, tmp_path / "scan-3.parquet", jobs=1).snapshot
    assert third.is_file()  # the last scan was small again
    mark_latest(third)
    assert prune_snapshots(third, 1) == 3 and sorted(p.name for p in tmp_path.glob("scan-*")) == ["scan-3.parquet"]


def test_a_failed_partitioned_snapshot_leaves_nothing_under_its_name(tmp_path):
    root = tmp_path / "root"
    make_tree(root)
    out = tmp_path / "snap" / "inventory.parquet"
    out.parent.mkdir()

    def fail(progress: ScanProgress) -> None:
        if progress.files > 100:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_snapshot(root, out, jobs=1, batch_rows=20, progress=fail, buckets=4)
    assert os.listdir(out.parent) == []


def test_scan_rows_are_unchanged_by_partitioning(tmp_path):
    """The scanner itself is untouched: a partitioned write adds no row and drops none."""
    root = tmp_path / "root"
    make_tree(root)
    write_snapshot(root, tmp_path / "settle.parquet", jobs=1)
    with Scan(root, jobs=1) as scan:
        scanned = pa.Table.from_batches(list(scan), schema=SCHEMA)
    out = tmp_path / "p.parquet"
    write_snapshot(root, out, jobs=1, buckets=2)
    assert table(out).sort_by("path").equals(scanned.sort_by("path"))


@pytest.mark.parametrize("old_buckets,new_buckets", [(4, 4), (2, 8), (8, 2), (1, 4), (3, 2)])
def test_the_daemons_rescan_compares_partition_by_partition_to_the_same_changes(tmp_path, old_buckets, new_buckets):
    from tiering.daemon.rescan import changes

    hot = tmp_path / "hot"
    make_tree(hot)
    for layout, buckets in (("old", old_buckets), ("old1", 1)):
        write_snapshot(hot, tmp_path / f"{layout}.parquet", jobs=1, buckets=buckets)
    now = time.time_ns()
    big = sorted((hot / "big").iterdir())
    for path in big[:40]:  # read
        os.utime(path, ns=(now, path.stat().st_mtime_ns))
    for path in big[40:70]:  # written
        os.utime(path, ns=(now - 7200 * 10**9, now))
    (hot / "small" / "0" / "new").write_bytes(b"n")
    (hot / "small" / "1" / "f0").unlink()
    for layout, buckets in (("new", new_buckets), ("new1", 1)):
        write_snapshot(hot, tmp_path / f"{layout}.parquet", jobs=1, buckets=buckets)
    counted = {os.fsencode(big[0].relative_to(hot))}
    expected = changes(tmp_path / "old1.parquet", tmp_path / "new1.parquet", counted)
    found = changes(tmp_path / "old.parquet", tmp_path / "new.parquet", counted)
    assert len(expected.accessed) == 39 and len(expected.written) == 31
    assert sorted(found.accessed) == sorted(expected.accessed) and sorted(found.written) == sorted(expected.written)


def test_tiering_scan_buckets_writes_that_many_partitions_and_refuses_other_counts(tmp_path):
    import subprocess
    import sys

    from conftest import write_config

    cfg = write_config(tmp_path, 'url = "cap"')
    make_tree(tmp_path / "hot")
    cli = str(Path(sys.executable).with_name("tiering"))
    out = tmp_path / "snap.parquet"
    done = subprocess.run([cli, "scan", "-c", str(cfg), "--buckets", "4", "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert Snapshot(out).buckets == 4 and json.loads((out / "_tiering.json").read_text())["buckets"] == 4
    summary = json.loads(done.stdout)
    assert ds.dataset(out, partitioning="hive").count_rows() == summary["files"] + summary["dirs"] + summary["symlinks"]
    bad = subprocess.run([cli, "scan", "-c", str(cfg), "--buckets", "3"], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "power of two" in bad.stderr
