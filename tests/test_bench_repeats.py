"""Repeats per point: the median run is kept, every run's output too, and the spread is flagged past 10 %."""

from __future__ import annotations

import json
import shutil

import pyarrow.parquet as pq
import pytest

from bench.fio.sweep import open_campaign, point_line, run_campaign
from bench.stats import SPREAD_LIMIT, median_index, spread, spread_warning
from tiering.core.errors import UserError


def test_median_index_and_spread():
    assert median_index([30.0, 10.0, 20.0]) == 2
    assert median_index([4.0, 1.0, 3.0, 2.0]) == 3  # lower median of an even count
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert spread([100.0]) is None and spread([0.0, 0.0]) is None
    assert spread_warning(0.2) and "10%" in spread_warning(0.2)
    assert spread_warning(SPREAD_LIMIT) is None and spread_warning(None) is None


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def test_a_point_runs_three_times_and_keeps_the_median_run(tmp_path):
    (tmp_path / "disk").mkdir()
    result = run_campaign(open_campaign(tmp_path / "disk", "randread-4k", numjobs="1", iodepth="1", runtime=1,
                                        ramp=0, size="1MiB", out=tmp_path / "out", repeats=3))
    (point,) = result.points
    assert len(point.throughput) == 3
    runs = sorted((tmp_path / "out" / "disk" / "4k" / "repeats").glob("randread-1-1.r*.json"))
    assert [p.name for p in runs] == [f"randread-1-1.r{k}.json" for k in (1, 2, 3)]
    kept = point.result_path.read_text()
    assert kept == runs[median_index(point.throughput)].read_text()  # the median run is where fio-plot looks
    (row,) = pq.read_table(result.results_path).to_pylist()
    assert row["repeats"] == 3 and row["spread"] == pytest.approx(spread(point.throughput))
    assert row["bw_bytes_s"] == pytest.approx(sorted(point.throughput)[1])
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["repeats"] == 3 and manifest["points"][0]["throughput_runs"] == list(point.throughput)
    flagged = (row["spread"] > SPREAD_LIMIT) == ("across repeats" in (row["warning"] or ""))
    assert flagged and point_line(row).endswith("!") == (row["spread"] > SPREAD_LIMIT)


def test_repeats_must_be_positive(tmp_path):
    with pytest.raises(UserError, match="--repeats"):
        open_campaign(tmp_path, "randread-4k", repeats=0)


# -- objects and dataloader: the same repeats ------------------------------------------


def test_object_points_keep_the_median_run_and_its_spread(seaweed, tmp_path, request, monkeypatch):
    from conftest import tier_config

    import bench.objects as objects
    from bench.objects import point_row, sweep
    from tiering.config import load_config, open_tier

    store = open_tier(load_config(tier_config("s3", tmp_path, request, monkeypatch)), "cap")
    seen: list[list] = []
    real = objects.median_run
    monkeypatch.setattr(objects, "median_run", lambda runs: (seen.append(list(runs)), real(runs))[1])
    try:
        points = list(sweep(store, [4096], [2], total_bytes=32 * 1024, workdir=tmp_path, epoch_objects=8,
                            epoch_size=1024, repeats=3))
        assert [p.op for p in points] == ["put", "get", "list+get"] and len(seen) == 3
        for point, runs in zip(points, seen):
            rates = [r.mb_per_s for r in runs]
            assert len(runs) == 3 and point.repeats == 3
            assert point.mb_per_s == sorted(rates)[1]  # the median run, all its figures together
            assert point.lat_p99 == runs[median_index(rates)].lat_p99
            assert point.spread == pytest.approx((max(rates) - min(rates)) / sorted(rates)[1])
            row = point_row(point, campaign="c", tier="cap", target=store.url)
            assert row["repeats"] == 3 and row["spread"] == point.spread
            assert ("across repeats" in (row["warning"] or "")) == (point.spread > SPREAD_LIMIT)
        assert list(store.list()) == []  # every run's objects deleted
    finally:
        store.close()


def test_dataloader_points_keep_the_median_run_and_its_spread(tmp_path):
    from bench.dataloader import emulate as dl
    from bench.dataloader.samples import HotDataset

    runs: list = []
    rows = dl.run(HotDataset(tmp_path / "samples", 32, 4096), dl.Pipeline(batch=4, compute_s=0.005, min_steps=2),
                  [1], campaign="c", tier="hot", max_accelerators=2, repeats=3, on_run=runs.append)
    assert len(runs) == 3 * len(rows) and rows
    for i, row in enumerate(rows):
        mine = runs[3 * i : 3 * i + 3]
        rates = [r.samples_s for r in mine]
        assert {r.accelerators for r in mine} == {row["accelerators"]} and row["repeats"] == 3
        assert row["samples_s"] == sorted(rates)[1] and row["au"] == mine[median_index(rates)].au
        assert row["spread"] == pytest.approx(spread(rates))
        assert ("across repeats" in (row["warning"] or "")) == (row["spread"] > SPREAD_LIMIT)


def test_dataloader_repeats_must_be_positive(tmp_path):
    from bench.dataloader import emulate as dl
    from bench.dataloader.samples import HotDataset

    with pytest.raises(UserError, match="--repeats"):
        dl.run(HotDataset(tmp_path / "samples", 8, 1024), dl.Pipeline(), [1], campaign="c", tier="hot", repeats=0)
    assert not (tmp_path / "samples").exists()  # refused before the data set was created
