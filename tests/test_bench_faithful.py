"""The DLIO-faithful dataloader mode: decoded samples, reader processes, shared-memory hand-off, a barrier per step.

Real processes and real files; what is checked is what the mode promises
(the samples decode to what was written, every batch crosses process
boundaries through shared memory and is cleaned up, samples/s counts every
step as DLIO does, failures stop the point and leave nothing behind), not
timings, except one loose bound on a compute-bound point.
"""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from bench.dataloader import emulate as dl
from bench.dataloader.faithful import SHM_DIR, SampleFiles, profile_name, run, run_point
from tiering.core.errors import UserError

KiB = 1024


def no_leftovers() -> None:
    assert not mp.active_children()
    assert not list(SHM_DIR.glob("tiering-dl-*"))


@pytest.mark.parametrize("fmt, shape", [("npz", (64, 64)), ("raw", (4096,))])
def test_samples_are_written_in_the_format_and_decode_back(tmp_path, fmt, shape):
    files = SampleFiles(tmp_path / fmt, 4, 4 * KiB, fmt)
    assert files.ensure() and not files.ensure()
    first = files.decode(0)
    assert first.shape == shape and first.dtype == np.uint8 and first.any()
    if fmt == "npz":
        with np.load(files.path(0)) as archive:  # what DLIO's npz reader opens: x and y
            assert set(archive.files) == {"x", "y"}
        assert files.file_bytes() > 4 * KiB  # the npz header is part of what is read
    else:
        assert files.path(0).read_bytes() == first.tobytes()


def test_a_point_runs_ranks_and_readers_as_processes_and_cleans_up(tmp_path):
    files = SampleFiles(tmp_path / "npz", 32, 4 * KiB)
    files.ensure()
    point = run_point(files, dl.Pipeline(batch=4, compute_s=0.02, min_steps=2), 2, 2)
    assert point.steps == 4 and point.accelerators == 2 and point.workers == 2
    assert point.samples == 2 * 4 * 4  # samples/s counts every step (AU leaves the first one out), as DLIO does
    assert point.bytes == point.samples * files.file_bytes()
    assert 0 < point.au <= 1 and point.seconds >= 4 * 0.02
    assert 0 < point.lat_p50 <= point.lat_p99
    no_leftovers()


def test_a_compute_bound_point_keeps_its_accelerator_busy(tmp_path):
    files = SampleFiles(tmp_path / "raw", 16, 4 * KiB, "raw")
    files.ensure()
    point = run_point(files, dl.Pipeline(batch=2, compute_s=0.05, min_steps=6), 2, 1)
    # Nominal compute over the window: tiny samples, 50 ms steps; loose for a shared machine.
    assert point.au > 0.7
    assert point.samples_s == pytest.approx(point.samples / point.seconds)
    assert point.samples_s <= 2 / 0.05 * 1.05  # never more than the accelerator's demand


def test_a_missing_sample_stops_the_point_and_leaves_nothing(tmp_path):
    files = SampleFiles(tmp_path / "npz", 8, 1 * KiB)
    files.ensure()
    files.path(5).unlink()
    with pytest.raises(FileNotFoundError):
        run_point(files, dl.Pipeline(batch=2, compute_s=0.001), 2, 2)
    no_leftovers()


def test_run_names_the_mode_and_searches(tmp_path):
    files = SampleFiles(tmp_path / "npz", 16, 4 * KiB)
    pipeline = dl.Pipeline(batch=2, compute_s=0.01, min_steps=3)
    rows = run(files, pipeline, [1], campaign="c", tier="hot", max_accelerators=1)
    assert [r["profile"] for r in rows] == ["dlio-npz-b2-10ms"] == [profile_name(pipeline, "npz")]
    assert rows[0]["engine"] == "dataloader" and rows[0]["accelerators"] == 1
    assert not files.root.exists()  # created by the run, so removed by it
    with pytest.raises(UserError, match="--format"):
        SampleFiles(tmp_path, 1, 1, "tfrecord")


def test_cli_defaults_to_dlio_on_the_hot_tier_and_refuses_it_elsewhere(tmp_path):
    (tmp_path / "tiering.toml").write_text('[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n'
                                          '[tiers.hdd]\nurl = "cap"\n')
    (tmp_path / "hot").mkdir()
    (tmp_path / "cap").mkdir()
    common = [sys.executable, "-m", "tiering", "bench", "dataloader", "--config", str(tmp_path / "tiering.toml"),
              "--workers", "1", "--sample-size", "4KiB", "--batch", "2", "--compute-ms", "5", "--samples", "8",
              "--max-accelerators", "1"]
    done = subprocess.run([*common, "--tier", "hot", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("mode: dlio (DLIO-faithful)")
    (row,) = pq.read_table(tmp_path / "out" / "results.parquet").to_pylist()
    assert row["profile"] == "dlio-npz-b2-5ms"
    refused = subprocess.run([*common, "--tier", "hdd", "--mode", "dlio"], capture_output=True, text=True, timeout=60,
                             check=False)
    assert refused.returncode == 2 and "use --mode storage" in refused.stderr


def test_existing_files_of_another_tool_are_read_in_name_order(tmp_path):
    theirs = tmp_path / "train"
    theirs.mkdir()
    for i in (2, 0, 1):  # DLIO's generator names them img_<i>_of_<n>.npz, x of shape (dim, dim, samples)
        np.savez(theirs / f"img_{i}_of_3.npz", x=np.full((8, 8, 1), i, dtype=np.uint8), y=np.zeros(1))
    files = SampleFiles.existing(theirs)
    assert files.count == 3 and files.names == ("img_0_of_3.npz", "img_1_of_3.npz", "img_2_of_3.npz")
    assert not files.ensure() and files.decode(2).shape == (8, 8, 1) and files.decode(2).max() == 2
    with pytest.raises(UserError, match="no \\*.bin sample files"):
        SampleFiles.existing(tmp_path / "train" / "..", "raw")


def test_repeats_run_each_point_again_and_keep_the_median(tmp_path):
    from bench.stats import spread

    runs: list = []
    files = SampleFiles(tmp_path / "bench" / "raw", 16, 4 * KiB, "raw")
    rows = run(files, dl.Pipeline(batch=4, compute_s=0.005, min_steps=2), [1], campaign="c", tier="hot",
               max_accelerators=1, repeats=3, on_run=runs.append)
    (row,) = rows
    rates = [p.samples_s for p in runs]
    assert len(runs) == 3 and row["repeats"] == 3 and row["samples_s"] == sorted(rates)[1]
    assert row["spread"] == pytest.approx(spread(rates)) and row["profile"].startswith("dlio-raw-")
    assert not (tmp_path / "bench").exists()  # the data set and the bench folder it made are gone
    no_leftovers()


def test_a_worker_has_at_most_prefetch_batches_built_or_in_the_making(tmp_path):
    """PyTorch hands a worker its next index only when a batch is taken: ``prefetch_factor`` batches per worker
    at most, counting the one being built. Here the test is the training process of one real reader process:
    it takes nothing for a while (the reader must stop at 2 batches), then one batch (the reader builds one more)."""
    import multiprocessing as mp
    import os
    import time

    from bench.dataloader.faithful import _hand_off, _reader

    files = SampleFiles(tmp_path / "raw", 16, 4 * KiB, "raw")
    files.ensure()
    ctx = mp.get_context("fork")
    inbox, slots = ctx.Queue(), ctx.Semaphore(2)
    batches = [[2 * i, 2 * i + 1] for i in range(5)]
    reader = ctx.Process(target=_reader, args=(files, batches, inbox, slots, 2, f"tiering-dl-{os.getpid()}-t-"))
    reader.start()
    try:
        def waiting_after(seconds: float) -> int:
            time.sleep(seconds)
            return inbox.qsize()

        assert waiting_after(0.5) == 2  # not 3: the reader waits for room before building another
        for taken in range(len(batches)):
            segment, nbytes, shape, _ = inbox.get(timeout=10)
            _hand_off(segment.detach(), nbytes, shape)
            slots.release()
            if taken == 0:
                assert waiting_after(0.3) == 2  # one taken, one more built
        reader.join(timeout=10)
        assert reader.exitcode == 0
    finally:
        reader.kill()
        reader.join()
    no_leftovers()


def test_a_reader_formats_the_ranks_index_map_before_each_sample_as_dlio_does(tmp_path):
    """DLIO 2.0's ``read_index`` formats the rank's whole index map on every read; the faithful mode pays the
    same: a map of ``ceil(files / ranks)`` entries of (absolute path, 0), and its cost shows in the sample
    latencies against the same point without it."""
    import os

    from bench.dataloader.faithful import index_map

    files = SampleFiles(tmp_path / "ds", 2000, 256, "raw")
    files.ensure()
    share = index_map(files, 1000)
    assert len(share) == 1000 and share[7] == (os.path.abspath(files.path(7)), 0)
    pipeline = dl.Pipeline(batch=4, compute_s=0.0, min_steps=2)
    with_map = run_point(files, pipeline, 1, 2)
    without = run_point(files, pipeline, 1, 2, dlio_index=False)
    assert with_map.lat_mean > without.lat_mean + 2e-5, (with_map.lat_mean, without.lat_mean)  # ~0.1+ ms a sample
