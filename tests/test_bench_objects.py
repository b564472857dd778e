"""The object sweep runs through the Store layer and cleans up after itself."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from bench.objects import objects_for, point_row, sweep
from bench.results import SCHEMA, table


def test_sweep_measures_every_point_and_leaves_nothing(store_case, tmp_path):
    seen = []
    points = list(sweep(store_case.store, [4096, 65536], [1, 4], total_bytes=64 * 1024, workdir=tmp_path,
                        on_point=seen.append, epoch_objects=16, epoch_size=2048))
    assert points == seen
    assert [(p.op, p.object_size, p.concurrency) for p in points] == [
        (op, size, conc) for size in (4096, 65536) for conc in (1, 4) for op in ("put", "get")
    ] + [("list+get", 2048, 1), ("list+get", 2048, 4)]
    for p in points:
        expected = 16 if p.op == "list+get" else objects_for(p.object_size, 64 * 1024)
        assert p.objects == expected
        assert p.seconds > 0 and p.ops_per_s > 0 and p.mb_per_s > 0
        assert 0 < p.lat_p50 <= p.lat_p99 <= p.lat_p999 and p.lat_mean > 0
        if p.op == "get":
            assert 0 < p.ttfb_p50 <= p.ttfb_p99
        else:
            assert p.ttfb_p50 is None
    assert list(store_case.store.list()) == []

    rows = [point_row(p, campaign="c1", tier=store_case.name, target=store_case.store.url) for p in points]
    data = table(rows)
    assert data.schema == SCHEMA
    get = rows[1]
    assert (get["engine"], get["op"], get["block_size"], get["numjobs"]) == ("objects", "get", 4096, 1)
    assert get["bw_bytes_s"] == pytest.approx(get["iops"] * 4096)
    assert get["bytes"] == points[1].objects * 4096
    assert get["ttfb_p50_s"] == points[1].ttfb_p50 and "iodepth" not in get and "au" not in get


def test_objects_for_bounds():
    assert objects_for(64 * 1024, 64 * 1024 * 1024) == 1024
    assert objects_for(1 << 30, 1 << 20) == 8
    assert objects_for(1, 1 << 30) == 10_000


def test_cli_prints_and_writes_results(tmp_path):
    (tmp_path / "tiering.toml").write_text('[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n'
                                          '[tiers.hdd]\nurl = "cap"\n')
    (tmp_path / "cap").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", "from tiering.cli import main; main()", "bench", "objects", "--tier", "hdd",
         "--config", str(tmp_path / "tiering.toml"), "--sizes", "4KiB", "--concurrency", "1,2", "--total", "64KiB",
         "--epoch-objects", "16", "--epoch-size", "1KiB", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["op", "size", "conc"] and len(lines) == 1 + 6 + 1
    rows = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert [(r["op"], r["numjobs"]) for r in rows] == [("put", 1), ("get", 1), ("put", 2), ("get", 2),
                                                       ("list+get", 1), ("list+get", 2)]
    assert {r["engine"] for r in rows} == {"objects"} and len({r["campaign"] for r in rows}) == 1
