"""A known duration: ``--dry-run`` lists the points and the estimated time, runs nothing, and the estimate holds.

For fio sweeps, object sweeps and the dataloader emulation alike; a bad value is a one-line usage error.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.fio.sweep import DATA_DIR, LAYOUT_BYTES_S, RUN_OVERHEAD_S, estimate, open_campaign, run_campaign

needs_fio = pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (Debian: apt-get install fio)")
MiB = 1 << 20


def fio_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return bench_cli("fio", *args)


def bench_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tiering", "bench", *args], capture_output=True, text=True,
                          timeout=60, check=False)


@needs_fio
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


@needs_fio
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


# -- objects --------------------------------------------------------------------------

OBJECT_SWEEP = ["--sizes", "4KiB,64KiB", "--concurrency", "1,4", "--total", "256KiB", "--epoch-objects", "20",
                "--epoch-size", "1KiB", "--repeats", "2"]


def test_objects_dry_run_lists_points_and_the_estimate_and_writes_nothing(seaweed, tmp_path, request, monkeypatch):
    from conftest import tier_config

    from bench.objects import ASSUMED_BYTES_S, ASSUMED_REQUEST_S, plan
    from tiering.config import load_config, open_tier

    cfg = tier_config("s3", tmp_path, request, monkeypatch)
    done = bench_cli("objects", "--tier", "cap", "--config", str(cfg), *OBJECT_SWEEP, "--out", str(tmp_path / "out"),
                     "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    points = [line for line in lines if "concurrency" in line and "object(s)" in line]
    assert [line.split()[1:2] + line.split()[3:4] + line.split()[5:6] for line in points] == [
        [op, size, conc] for size in ("4KiB", "64KiB") for conc in ("1", "4") for op in ("put", "get")
    ] + [["list+get", "1KiB", "1"], ["list+get", "1KiB", "4"]]
    assert "64 object(s)" in points[0] and "8 object(s)" in points[4]  # --total 256KiB of each size (at least 8)
    assert "10 point(s) x 2 run(s)" in lines[-1] and "estimated total" in lines[-1]
    # put at concurrency 1: 64 requests at the assumed round trip, 256 KiB at the assumed rate
    expected = plan([4096, 65536], [1, 4], total_bytes=256 * 1024, epoch_objects=20, epoch_size=1024, repeats=2)
    assert expected.points[0].seconds == pytest.approx(64 * ASSUMED_REQUEST_S + 256 * 1024 / ASSUMED_BYTES_S)
    as_json = json.loads(bench_cli("objects", "--tier", "cap", "--config", str(cfg), *OBJECT_SWEEP, "-n",
                                   "--json").stdout)
    assert as_json["estimated_s"] == pytest.approx(expected.total_s) and len(as_json["points"]) == 10
    # per run: put + get of 256 KiB (4 KiB objects) and of 8 x 64 KiB at each concurrency, two list+get passes;
    # the epoch objects are uploaded once
    assert as_json["bytes"] == 2 * (2 * 2 * (256 + 512) * 1024 + 2 * 20 * 1024) + 20 * 1024
    store = open_tier(load_config(cfg), "cap")
    try:
        assert list(store.list()) == []  # nothing was written to the store
    finally:
        store.close()
    assert not (tmp_path / "out").exists()


def test_object_bytes_and_points_reach_their_planned_totals(tmp_path):
    from bench.objects import plan, sweep
    from tiering.stores import open_store

    (tmp_path / "cap").mkdir()
    store = open_store(str(tmp_path / "cap"), {})
    moved: list[int] = []
    args = dict(total_bytes=64 * 1024, epoch_objects=10, epoch_size=1024, repeats=2)
    points = list(sweep(store, [4096, 16384], [1, 3], workdir=tmp_path, on_bytes=moved.append, **args))
    expected = plan([4096, 16384], [1, 3], **args)
    assert [(p.op, p.object_size, p.concurrency, p.objects) for p in points] == [
        (p.op, p.object_size, p.concurrency, p.objects) for p in expected.points]
    assert sum(moved) == expected.total_bytes  # what the bytes bar counts, to its end


# -- dataloader -----------------------------------------------------------------------


def loader_config(tmp_path: Path) -> Path:
    (tmp_path / "hot").mkdir()
    (tmp_path / "cap").mkdir()
    cfg = tmp_path / "tiering.toml"
    cfg.write_text('[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n[tiers.hdd]\nurl = "cap"\n')
    return cfg


LOADER = ["--samples", "64", "--sample-size", "4KiB", "--batch", "4", "--compute-ms", "20", "--workers", "1,2",
          "--max-accelerators", "4"]


def test_dataloader_dry_run_lists_points_and_the_estimate_and_creates_nothing(tmp_path):
    from bench.dataloader.plan import ASSUMED_WRITE_BYTES_S, POINT_OVERHEAD_S

    cfg = loader_config(tmp_path)
    done = bench_cli("dataloader", "--tier", "hot", "--config", str(cfg), *LOADER, "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    points = [line.split() for line in lines if "accelerators" in line and "steps" in line]
    # The doubling path of each worker count; steps: 64 samples / (k x 4), at least the pipeline's 8.
    assert [(p[2], p[4], p[6]) for p in points] == [(w, k, s) for w in ("1", "2")
                                                   for k, s in (("1", "16"), ("2", "8"), ("4", "8"))]
    # 2 x (16 + 8 + 8) steps of 20 ms, 6 start-ups, 3 runs each, plus writing the 256 KiB data set
    expected = 3 * (2 * 32 * 0.02 + 6 * POINT_OVERHEAD_S) + 64 * 4096 / ASSUMED_WRITE_BYTES_S
    assert "6 point(s) x 3 run(s)" in lines[-2] and "estimated total" in lines[-2], lines
    assert lines[-1].startswith("note: a starved point ends the doubling")
    as_json = json.loads(bench_cli("dataloader", "--tier", "hot", "--config", str(cfg), *LOADER, "-n",
                                   "--json").stdout)
    assert as_json["estimated_s"] == pytest.approx(expected) and as_json["repeats"] == 3
    storage = bench_cli("dataloader", "--tier", "hdd", "--config", str(cfg), *LOADER, "--repeats", "1", "-n")
    assert storage.returncode == 0 and "storage path only" in storage.stdout and "6 point(s) x 1 run(s)" in storage.stdout
    assert list((tmp_path / "hot").iterdir()) == [] and list((tmp_path / "cap").iterdir()) == []  # no data set


@pytest.mark.parametrize("verb, args, says", [
    ("objects", ["--repeats", "0"], "--repeats: '0': expected a positive value"),
    ("objects", ["--repeats", "two"], "--repeats: 'two' is not a whole number"),
    ("objects", ["--sizes", "0"], "--sizes: '0': expected a positive value"),
    ("objects", ["--epoch-objects", "-1"], "--epoch-objects: -1: expected 0"),
    ("dataloader", ["--repeats", "0"], "--repeats: '0': expected a positive value"),
    ("dataloader", ["--repeats", "1.5"], "--repeats: '1.5' is not a whole number"),
    ("dataloader", ["--workers", "0"], "--workers: '0': expected a positive value"),
    ("dataloader", ["--mode", "fast"], "--mode: 'fast': expected dlio or storage"),
])
def test_bad_values_are_one_line_usage_errors(tmp_path, verb, args, says):
    cfg = loader_config(tmp_path)
    tier = "hdd" if verb == "objects" else "hot"
    done = bench_cli(verb, "--tier", tier, "--config", str(cfg), *args, "--dry-run")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith(f"tiering: error: {says}")
    assert done.stdout == ""


# -- the progress bars ----------------------------------------------------------------


def in_terminal(*args: str) -> str:
    """Run ``tiering bench ARGS`` with stdout and stderr on a pseudo-terminal; everything it drew."""
    import os
    import pty

    main, child = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "160"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "tiering", "bench", *args], stdout=child, stderr=child,
                            stdin=subprocess.DEVNULL, env=env)
    os.close(child)
    drawn = bytearray()
    try:
        while chunk := _read(main):
            drawn += chunk
    finally:
        os.close(main)
        assert proc.wait(timeout=60) == 0, drawn.decode(errors="replace")
    return drawn.decode(errors="replace")


def _read(fd: int) -> bytes:
    import os

    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child closed the terminal
        return b""


@pytest.mark.parametrize("verb, args", [
    ("objects", ["--tier", "hdd", "--sizes", "4KiB", "--concurrency", "1,2", "--total", "64KiB", "--epoch-objects",
                 "0", "--repeats", "2"]),
    ("dataloader", ["--tier", "hot", "--mode", "storage", *LOADER, "--max-accelerators", "1", "--compute-ms", "5",
                    "--repeats", "2"]),
])
def test_a_terminal_gets_bars_over_points_and_bytes_and_json_gets_none(tmp_path, verb, args):
    cfg = loader_config(tmp_path)
    drawn = in_terminal(verb, "--config", str(cfg), *args)
    assert "points" in drawn and "bytes" in drawn and "left" in drawn, drawn
    assert f"{4 if verb == 'objects' else 2}/{4 if verb == 'objects' else 2} points" in drawn  # it reached the end
    quiet = in_terminal(verb, "--config", str(cfg), *args, "--json")
    assert "points" not in quiet and "left" not in quiet
    assert all(json.loads(line) for line in quiet.splitlines() if line.startswith("{"))


@needs_fio
def test_a_terminal_gets_bars_over_fio_runs_and_bytes(tmp_path):
    drawn = in_terminal("fio", "--target", str(tmp_path), "--profile", "randread-4k", "--numjobs", "1,2", "--iodepth",
                        "1", "--runtime", "1", "--ramp", "0", "--size", "1MiB", "--repeats", "1", "--out",
                        str(tmp_path / "out"))
    assert "2/2 runs" in drawn and "left" in drawn, drawn  # it reached the end
    assert re.search(r"bytes .*\d+(\.\d+)?[KMG]iB measured", drawn), drawn  # the bytes fio moved, counted up


def test_quiet_draws_no_bar(tmp_path):
    cfg = loader_config(tmp_path)
    drawn = in_terminal("objects", "--config", str(cfg), "--tier", "hdd", "--sizes", "4KiB", "--concurrency", "1",
                        "--total", "32KiB", "--epoch-objects", "0", "--repeats", "1", "-q")
    assert "points" not in drawn and "put" in drawn  # the rows, no bar
