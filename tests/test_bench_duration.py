"""A known duration: ``--dry-run`` lists the points and the estimated time, runs nothing, and the estimate holds."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.fio.sweep import DATA_DIR, LAYOUT_BYTES_S, RUN_OVERHEAD_S, estimate, open_campaign, run_campaign

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (Debian: apt-get install fio)")
MiB = 1 << 20


def fio_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tiering", "bench", "fio", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_dry_run_lists_points_and_the_estimate_and_runs_nothing(tmp_path):
    (tmp_path / "t").mkdir()
    args = ["--target", str(tmp_path / "t"), "--profile", "large-shards", "--numjobs", "1,2,4,8", "--iodepth", "1,16",
            "--bs", "1MiB", "--size", "64MiB", "--runtime", "30", "--ramp", "5", "--out", str(tmp_path / "out"),
            "--dry-run"]
    done = fio_cli(*args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    points = [line for line in lines if "numjobs" in line and "data set" in line]
    assert len(points) == 8 and "iodepth  16  numjobs   8  data set 512MiB" in points[-1]
    # 8 points x 3 runs x (5 + 30 + overhead) s, plus 512 MiB laid out once
    expected = 8 * 3 * (35 + RUN_OVERHEAD_S) + 512 * MiB / LAYOUT_BYTES_S
    assert "24 fio run(s)" in lines[-2] and "estimated total 14m13s" in lines[-2], lines[-2]
    assert round(expected) == 14 * 60 + 13
    assert "MLPerf Storage asks for >= 5x" in lines[-1]
    assert json.loads(fio_cli(*args, "--json").stdout)["estimated_s"] == pytest.approx(expected)
    assert not (tmp_path / "out").exists() and not (tmp_path / "t" / DATA_DIR).exists()  # nothing ran


def test_the_estimate_holds_for_a_real_sweep(tmp_path):
    (tmp_path / "t").mkdir()
    campaign = open_campaign(tmp_path / "t", "randread-4k", numjobs="1,2", iodepth="1", runtime=1, ramp=0.5,
                             size="1MiB", repeats=2, out=tmp_path / "out")
    predicted = estimate(campaign).total_s
    assert predicted == pytest.approx(4 * (1.5 + RUN_OVERHEAD_S) + 2 * MiB / LAYOUT_BYTES_S)
    started = time.monotonic()
    runs = []
    run_campaign(campaign, on_run=lambda *at: runs.append(at))
    took = time.monotonic() - started
    assert runs == [(4096, 1, 1, 1), (4096, 1, 1, 2), (4096, 1, 2, 1), (4096, 1, 2, 2)]  # what a progress bar sees
    # Loose on purpose (a shared machine): the estimate is the right size, not a stopwatch.
    assert 0.7 * predicted <= took <= 1.6 * predicted, (predicted, took)
