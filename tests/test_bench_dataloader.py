"""The dataloader emulation: AU near 1 on fast storage, below 0.9 when reads are throttled."""

from __future__ import annotations

import re
import subprocess
import sys
import threading

import pyarrow.parquet as pq
import pytest

from bench.dataloader import emulate as dl
from bench.campaign import new_campaign
from bench.results import SCHEMA, table
from bench.dataloader.samples import HotDataset, StoreDataset

KiB = 1024


def check_consistent(points: list[dl.LoadPoint], cap: int) -> int:
    """``fed`` is the largest k at AU >= 0.9, and the search proved k + 1 starves (unless capped)."""
    fed = dl.fed(points)
    assert fed == max((p.accelerators for p in points if p.au >= dl.AU_TARGET), default=0)
    if fed < cap:
        assert any(p.accelerators == fed + 1 and p.au < dl.AU_TARGET for p in points)
    return fed


def test_fast_storage_keeps_the_accelerators_busy(tmp_path):
    dataset = HotDataset(tmp_path / "samples", 64, 4 * KiB)
    pipeline = dl.Pipeline(batch=4, compute_s=0.02)
    rows = dl.run(dataset, pipeline, [2], campaign=new_campaign("dataloader"), tier="hot", max_accelerators=2)
    assert [(r["numjobs"], r["accelerators"]) for r in rows] == [(2, 1), (2, 2)]
    assert all(r["au"] > 0.9 for r in rows)
    assert dl.fed_by_workers(rows) == {2: 2}
    first = rows[0]
    assert first["samples_s"] == pytest.approx(first["iops"])
    # At AU ~ 1 one accelerator consumes its full demand: batch / compute samples/s.
    assert 0.7 * pipeline.demand < first["samples_s"] <= 1.05 * pipeline.demand
    assert first["bw_bytes_s"] == pytest.approx(first["samples_s"] * 4 * KiB)
    assert first["profile"] == "storage-path-b4-20ms" and first["op"] == "load"
    assert "page cache" in first["warning"]
    assert table(rows).schema == SCHEMA
    assert not (tmp_path / "samples").exists()  # created by the run, so removed by it


def test_throttled_reads_starve_the_accelerator(tmp_path):
    dataset = HotDataset(tmp_path / "samples", 32, 4 * KiB)
    dataset.ensure()
    # One reader needs 8 x 5 ms = 40 ms per batch for a 20 ms step: AU about 0.5.
    pipeline = dl.Pipeline(batch=8, compute_s=0.02, read_delay_s=0.005)
    points = list(dl.sweep(dataset, pipeline, [1], max_accelerators=4))
    assert [p.accelerators for p in points] == [1]
    assert 0.3 < points[0].au < 0.75
    assert points[0].lat_p50 >= 0.005
    assert check_consistent(points, 4) == 0
    assert dataset.root.is_dir()  # an existing dataset is left alone by sweep()


def test_more_readers_feed_more_accelerators(tmp_path):
    dataset = HotDataset(tmp_path / "samples", 64, 4 * KiB)
    dataset.ensure()
    # A batch takes 4 reads x 8 ms = 32 ms against a 20 ms step: one reader starves its
    # accelerator; four readers deliver a batch every ~8 ms, enough for two.
    pipeline = dl.Pipeline(batch=4, compute_s=0.02, read_delay_s=0.008)
    points = list(dl.sweep(dataset, pipeline, [1, 4], max_accelerators=2))
    by_workers = {w: [p for p in points if p.workers == w] for w in (1, 4)}
    assert check_consistent(by_workers[1], 2) == 0
    assert check_consistent(by_workers[4], 2) == 2
    assert by_workers[1][0].au < 0.8


def test_search_bisects_between_good_and_bad(tmp_path, monkeypatch):
    # A tier that feeds exactly 5 accelerators: the search must measure 1, 2, 4, 8, then 6, 5.
    def fake(dataset, pipeline, workers, k):
        return dl.LoadPoint(workers, k, 8, 8 * k, 0, 1.0, 0.95 if k <= 5 else 0.5, 0, 0, 0, 0)

    monkeypatch.setattr(dl, "run_point", fake)
    points = list(dl.search(None, dl.Pipeline(), 1, max_accelerators=64))
    assert [p.accelerators for p in points] == [1, 2, 4, 8, 6, 5]
    assert check_consistent(points, 64) == 5
    capped = list(dl.search(None, dl.Pipeline(), 1, max_accelerators=3))
    assert [p.accelerators for p in capped] == [1, 2, 3]


def test_each_epoch_is_shuffled_and_sharded():
    pipeline = dl.Pipeline(batch=4, seed=1)
    ranks = dl._shards(16, 2, 2, pipeline)
    seen = sorted(i for batches in ranks for batch in batches for i in batch)
    assert seen == list(range(16))  # one epoch, split across two ranks without overlap
    assert [i for b in ranks[0] for i in b] != list(range(0, 16, 2))  # shuffled
    [later] = dl._shards(16, 1, 8, pipeline)  # two epochs: each a permutation, in a new order
    assert sorted(later[0] + later[1] + later[2] + later[3]) == list(range(16))
    assert later[:4] != later[4:]


def test_capacity_tier_reads_through_the_store(store_case):
    store = store_case.store
    dataset = StoreDataset(store, "tiering-bench/dl", 16, 8 * KiB, jobs=4)
    pipeline = dl.Pipeline(batch=4, compute_s=0.005, min_steps=2)
    rows = dl.run(dataset, pipeline, [2], campaign="c", tier=store_case.name, max_accelerators=1)
    assert len(rows) == 1 and rows[0]["bytes"] == 4 * 4 * 8 * KiB and rows[0]["target"].endswith("tiering-bench/dl/")
    assert rows[0]["lat_p50_s"] > 0
    assert list(store.list()) == []
    assert not [t for t in threading.enumerate() if t.name.startswith(("loader", "accelerator"))]


def test_a_failing_read_stops_the_run(tmp_path):
    dataset = HotDataset(tmp_path / "samples", 8, 1 * KiB)
    dataset.ensure()
    (tmp_path / "samples" / "sample-000003.bin").unlink()
    with pytest.raises(FileNotFoundError):
        dl.run_point(dataset, dl.Pipeline(batch=2, compute_s=0.001), 2, 2)
    assert not [t for t in threading.enumerate() if t.name.startswith(("loader", "accelerator"))]


def test_cli_writes_results(tmp_path):
    (tmp_path / "tiering.toml").write_text('[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n'
                                          '[tiers.hdd]\nurl = "cap"\n')
    (tmp_path / "hot").mkdir()
    (tmp_path / "cap").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", "from tiering.cli import main; main()", "bench", "dataloader", "--tier", "hot",
         "--config", str(tmp_path / "tiering.toml"), "--workers", "1,2", "--sample-size", "4KiB", "--batch", "4",
         "--compute-ms", "10", "--samples", "32", "--max-accelerators", "1", "--mode", "storage", "--repeats", "1",
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    # (how many are fed depends on this machine's load: other tests judge the AU; this one the output)
    assert re.search(r"^1 reader worker\(s\) per accelerator: [01] accelerator\(s\) fed at AU >= 90%$", done.stdout, re.M)
    rows = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert [(r["engine"], r["numjobs"], r["accelerators"]) for r in rows] == [("dataloader", 1, 1), ("dataloader", 2, 1)]
    assert not (tmp_path / "hot" / "tiering-bench").exists()


# -- --cache cold|warm ---------------------------------------------------------


def test_cold_evicts_before_each_point_and_warm_fills_first(tmp_path):
    from bench_cache_fixtures import resident_fraction

    from bench.fio.env import MEMORY_FILESYSTEMS, mount_of

    if mount_of(tmp_path) is None or mount_of(tmp_path).fstype in MEMORY_FILESYSTEMS:
        pytest.skip(f"{tmp_path} is not on a disk-backed filesystem")
    dataset = HotDataset(tmp_path / "samples", 16, 64 * KiB)
    dataset.ensure()
    files = sorted((tmp_path / "samples").glob("sample-*.bin"))
    dataset.warm()
    assert min(resident_fraction(f) for f in files) > 0.9
    dataset.evict()
    assert max(resident_fraction(f) for f in files) < 0.5
    evicted: list[float] = []

    class Observed(HotDataset):
        def evict(self) -> None:  # the real eviction, then what the kernel holds right after it
            super().evict()
            evicted.append(max(resident_fraction(f) for f in files))

    observed = Observed(tmp_path / "samples", 16, 64 * KiB)
    observed.warm()
    cold = dl.Pipeline(batch=4, compute_s=0.001, min_steps=2, cache="cold")
    # Two worker counts at one accelerator: two points whatever their AU on a loaded machine.
    dl.run(observed, cold, [1, 2], campaign="c", tier="hot", max_accelerators=1)
    assert len(evicted) == 2 and max(evicted) < 0.5  # before each of the two points, warm or not
    evicted.clear()
    warm = dl.Pipeline(batch=4, compute_s=0.001, min_steps=2, cache="warm")
    observed.evict()
    evicted.clear()
    rows = dl.run(observed, warm, [1], campaign="c", tier="hot", max_accelerators=2)
    assert evicted == [] and min(resident_fraction(f) for f in files) > 0.9  # warmed first, never evicted
    assert rows[0]["profile"] == "storage-path-b4-1ms-warm" and "warm cache by request" in rows[0]["warning"]


def test_cli_cache_option_is_checked(tmp_path):
    (tmp_path / "tiering.toml").write_text('[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n'
                                          '[tiers.hdd]\nurl = "cap"\n')
    (tmp_path / "hot").mkdir()
    (tmp_path / "cap").mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "tiering", "bench", "dataloader", "--tier", "hot", "--config", str(tmp_path / "tiering.toml"),
         "--samples", "8", "--sample-size", "4KiB", "--batch", "2", "--compute-ms", "1", "--workers", "1",
         "--max-accelerators", "1", "--cache", "tepid"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--cache: 'tepid': expected one of cold, warm" in done.stderr
