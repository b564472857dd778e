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
