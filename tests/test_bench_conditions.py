"""fio sweeps' conditions: the page cache is dropped only on request and never for direct I/O,
and the data set is measured against host memory (MLPerf Storage's 5x rule).

Whether a drop happened is read from the kernel, not from our own manifest: a
sentinel file outside the campaign is read into the page cache first, and
``mincore(2)`` tells afterwards whether its pages are still resident.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import pytest
from bench_cache_fixtures import resident_fraction

from bench.fio.env import (
    DROP_NEEDLESS,
    DROP_NOT_REQUESTED,
    DROPPED,
    MEMORY_FILESYSTEMS,
    cache_warning,
    environment,
    mount_of,
)
from bench.fio.sweep import open_campaign, run_campaign

pytestmark = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (Debian: apt-get install fio)")

MiB = 1 << 20


@pytest.fixture
def disk(tmp_path) -> Path:
    mount = mount_of(tmp_path)
    if mount is None or mount.fstype in MEMORY_FILESYSTEMS:
        pytest.skip(f"{tmp_path} is not on a disk-backed filesystem")
    (tmp_path / "disk").mkdir()
    return tmp_path / "disk"


@pytest.fixture
def sentinel(disk) -> Path:
    """A file read into the page cache; a machine-wide drop evicts it."""
    path = disk.parent / "sentinel"
    path.write_bytes(os.urandom(4 * MiB))
    os.sync()
    path.read_bytes()
    if resident_fraction(path) < 0.9:
        pytest.skip("the sentinel did not stay in the page cache (memory pressure)")
    return path


def can_drop() -> bool:
    return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)


def supports_direct(directory: Path) -> bool:
    try:
        os.close(os.open(directory / "probe", os.O_CREAT | os.O_WRONLY | os.O_DIRECT))
        return True
    except OSError:
        return False
    finally:
        (directory / "probe").unlink(missing_ok=True)


def run(target: Path, out: Path, **options):
    options = {"numjobs": "1", "iodepth": "1", "runtime": 1, "ramp": 0, "size": "2MiB", "out": out, "repeats": 1, **options}
    result = run_campaign(open_campaign(target, "randread-4k", **options))
    return result, json.loads(result.manifest_path.read_text())


def test_direct_io_never_drops_the_page_cache_even_when_asked(disk, sentinel, tmp_path):
    if not supports_direct(disk):
        pytest.skip("no O_DIRECT on this filesystem")
    _, manifest = run(disk, tmp_path / "out", numjobs="1,2", direct=True, drop_caches=True)
    assert resident_fraction(sentinel) > 0.9  # the machine's cache was left alone
    assert manifest["cache_drop"] == {"requested": True, "direct": True, "root": os.geteuid() == 0,
                                      "done": DROP_NEEDLESS, "points_dropped": 0, "points": 2}
    assert [p["cache_drop"] for p in manifest["points"]] == [DROP_NEEDLESS] * 2


def test_buffered_runs_do_not_drop_unless_asked(disk, sentinel, tmp_path):
    result, manifest = run(disk, tmp_path / "out")
    assert resident_fraction(sentinel) > 0.9
    assert manifest["cache_drop"]["done"] == DROP_NOT_REQUESTED and manifest["cache_drop"]["points_dropped"] == 0
    assert "caches not dropped" in result.points[0].warning


def test_buffered_runs_drop_when_asked(disk, sentinel, tmp_path):
    if not can_drop():
        pytest.skip("dropping the page cache needs root and a writable /proc/sys")
    result, manifest = run(disk, tmp_path / "out", drop_caches=True)
    assert resident_fraction(sentinel) < 0.5  # the kernel really dropped it
    assert manifest["cache_drop"]["done"] == DROPPED and manifest["cache_drop"]["points_dropped"] == 1
    assert result.points[0].cache_dropped


def test_manifest_records_the_data_set_against_host_memory(disk, tmp_path):
    _, manifest = run(disk, tmp_path / "out", numjobs="1,2", size="1MiB")
    memory = manifest["memory"]
    assert memory["dataset_bytes"] == 2 * MiB and memory["ram_bytes"] == manifest["ram_bytes"]
    assert memory["dataset_to_ram"] == pytest.approx(2 * MiB / manifest["ram_bytes"])
    assert memory["required_to_ram"] == 5 and memory["meets_mlperf_rule"] is False
    assert [p["dataset_to_ram"] for p in manifest["points"]] == pytest.approx(
        [MiB / manifest["ram_bytes"], 2 * MiB / manifest["ram_bytes"]])


@pytest.mark.parametrize(("dataset_to_ram", "direct", "dropped", "expected"), [
    (0.5, False, False, "caches not dropped"),
    (2.0, False, True, "under 5x host memory"),  # bigger than RAM, still under MLPerf Storage's rule
    (2.0, False, False, "under 5x host memory"),
    (4.99, False, True, "under 5x host memory"),
    (5.0, False, True, None),
    (0.01, True, False, None),  # O_DIRECT: the page cache is out of the path
])
def test_cache_warning_follows_the_5x_rule(disk, dataset_to_ram, direct, dropped, expected):
    env = dataclasses.replace(environment(disk, shutil.which("fio")), ram_bytes=1 << 30)
    dataset = int(dataset_to_ram * (1 << 30))
    warning = cache_warning(env, dataset_bytes=dataset, moved_bytes=dataset // 2, reads=True, direct=direct,
                            dropped=dropped)
    assert warning is None if expected is None else expected in warning


def test_cli_says_a_drop_is_ignored_with_direct(disk, tmp_path):
    import subprocess
    import sys

    if not supports_direct(disk):
        pytest.skip("no O_DIRECT on this filesystem")
    done = subprocess.run([sys.executable, "-m", "tiering", "bench", "fio", "--target", str(disk), "--profile",
                           "randread-4k", "--numjobs", "1", "--iodepth", "1", "--runtime", "1", "--ramp", "0",
                           "--size", "1MiB", "--direct", "--drop-caches", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "--drop-caches ignored: O_DIRECT bypasses the page cache" in done.stderr
