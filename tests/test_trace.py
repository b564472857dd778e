"""The access trace: the rotated, bounded Parquet recorder, reading and exporting it, the daemon recording
real opens and writes into it, and the synthetic workload generator."""

from __future__ import annotations

import csv
import json
import time

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from unattended import MiB, make_file, start, stop, tiering, wait_for, write_setup

from tiering.config import load_config
from tiering.core.errors import ConfigError
from tiering.trace.generate import MARKER, Workload, generate
from tiering.trace.log import TraceLog, trace_files
from tiering.trace.read import export_trace, read_trace


def test_the_recorder_rotates_by_rows_keeps_its_bound_and_reads_back_in_time_order(tmp_path):
    trace = TraceLog(tmp_path / "t", max_bytes=1 << 20, max_rows=1000, rotate=3600)
    for i in range(5000):  # every 1000 accesses: one file, written whole
        trace.record("read", [f"d/{i % 97}".encode()], 4096, "hot", at_ns=10_000 - i)
    trace.close()
    assert len(trace_files(tmp_path / "t")) == 5 and trace.removed == 0
    table = read_trace(tmp_path / "t")
    times = table["time_ns"].to_numpy()
    assert table.num_rows == 5000 and (np.diff(times) >= 0).all() and times[0] == 10_000 - 4999
    assert set(pc.unique(table["kind"].cast("string")).to_pylist()) == {"read"}
    small = TraceLog(tmp_path / "t", max_bytes=1, max_rows=1000)  # a bound below one file: the newest stays
    small.record("open", [b"x"], 1, "hot", at_ns=20_000)
    small.close()
    left = trace_files(tmp_path / "t")
    assert small.removed == 5 and len(left) == 1 and read_trace(tmp_path / "t")["path"][0].as_py() == b"x"


def test_a_trace_file_stays_compact(tmp_path):
    trace = TraceLog(tmp_path, max_rows=10_000_000)
    rng = np.random.default_rng(1)
    names = [f"datasets/ds-{i % 20:04d}/shard-{i:06d}.tar".encode() for i in range(20_000)]
    t0 = time.time_ns()
    picks = rng.integers(0, len(names), 200_000)
    trace.record("read", [names[i] for i in picks], 64 * MiB, "hot", at_ns=[t0 + k * 1_000_000 for k in range(len(picks))])
    path = trace.flush()
    per_access = path.stat().st_size / len(picks)
    assert per_access < 8, per_access  # the [trace] docs promise a few bytes an access


def test_export_writes_one_parquet_or_csv_file_within_a_window(tmp_path):
    trace = TraceLog(tmp_path / "t")
    trace.record("open", [b"a", "ü/é".encode()], [10, 20], "hot", at_ns=[100, 200])
    trace.record("restore", [b"a"], 10, "cap", at_ns=150)
    trace.close()
    assert export_trace(tmp_path / "t", tmp_path / "all.parquet") == 3
    table = pq.read_table(tmp_path / "all.parquet")
    assert table.column_names == ["time_ns", "path", "bytes", "kind", "tier"]
    assert table.to_pylist()[1] == {"time_ns": 150, "path": b"a", "bytes": 10, "kind": "restore", "tier": "cap"}
    assert export_trace(tmp_path / "t", tmp_path / "w.csv", since_ns=150, until_ns=201) == 2
    with (tmp_path / "w.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == ["a", "ü/é"] and rows[1]["kind"] == "open"


def test_trace_config_defaults_and_a_bad_value_is_one_line(tmp_path):
    cfg = write_setup(tmp_path, "[watermark]\nhigh = 0.9\nlow = 0.8\n")
    config = load_config(cfg)
    assert config.trace.record and config.trace.max_bytes == 1 << 30 and config.trace.rotate == 300
    assert config.trace.folder(config.catalog_path) == tmp_path / "state" / "trace"
    cfg.write_text(cfg.read_text() + '[trace]\nrotate = "0s"\n')
    with pytest.raises(ConfigError, match=r"\[trace\] rotate: 0s is not positive"):
        load_config(cfg)


def test_the_daemon_records_opens_and_writes_of_the_hot_tier(tmp_path):
    cfg = write_setup(tmp_path, '[[rules]]\nname = "none"\nmatch = "false"\naction = "exclude"\n',
                      'debounce = "100ms"\nmetrics_port = 0\n[trace]\nrotate = "1s"\n')
    hot = tmp_path / "hot"
    shard = make_file(hot / "ds/shard-0.tar", MiB)
    proc = start("daemon", "-c", str(cfg), log=tmp_path / "daemon.log")
    try:
        wait_for(lambda: ": done in " in (tmp_path / "daemon.log").read_text(), 30, "the daemon's first cycle")
        time.sleep(0.5)  # (inotify watches are in place once the first cycle ran; be sure)
        for _ in range(3):
            shard.read_bytes()
        (hot / "ckpt.pt").write_bytes(b"x" * 4096)
        folder = tmp_path / "state" / "trace"
        wait_for(lambda: trace_files(folder), 20, "a trace file")
    finally:
        stop(proc)
    done = tiering("trace", "export", "-c", str(cfg), str(tmp_path / "out.parquet"))
    assert done.returncode == 0, done.stderr
    rows = pq.read_table(tmp_path / "out.parquet").to_pylist()
    opens = [r for r in rows if r["path"] == b"ds/shard-0.tar" and r["kind"] == "open"]
    writes = [r for r in rows if r["path"] == b"ckpt.pt" and r["kind"] == "write"]
    assert len(opens) == 3 and all(r["bytes"] == MiB and r["tier"] == "hot" for r in opens), rows
    assert writes and writes[-1]["bytes"] == 4096, rows
    assert abs(opens[0]["time_ns"] - time.time_ns()) < 120e9
    # The recorded trace replays as it is, against the daemon's own latest scan (the config's defaults).
    sim = tiering("simulate", "-c", str(cfg), "-p", str(tmp_path / "policy.toml"), "--capacity", "100%", "--json")
    assert sim.returncode == 0, sim.stderr
    (row,) = [json.loads(line) for line in sim.stdout.splitlines()]
    assert row["reads"] >= 3 and row["hit_ratio"] == 1.0 and row["misses"] == 0, row


def test_the_generator_reads_datasets_in_epochs_and_writes_checkpoints_it_rarely_reads():
    w = Workload(files=5000, accesses=50_000, days=7, seed=3, shards_per_dataset=100)
    inventory, trace = generate(w)
    again = generate(w)[1]
    assert trace.equals(again)  # one seed, one trace
    paths = inventory["path"].to_pylist()
    ids = trace["path"].chunk(0).indices.to_numpy()
    kinds = trace["kind"].chunk(0).dictionary.to_pylist()
    kind = np.asarray(kinds)[trace["kind"].chunk(0).indices.to_numpy()]
    assert 45_000 < trace.num_rows < 60_000 and (np.diff(trace["time_ns"].to_numpy()) >= 0).all()
    shard_reads = np.array([paths[i].startswith(b"datasets/") for i in ids]) & (kind == "read")
    ckpt = np.array([paths[i].startswith(b"runs/") for i in ids])
    assert shard_reads.sum() > 0.9 * trace.num_rows
    assert (kind[ckpt] == "write").sum() > 5 * max(1, (kind[ckpt] == "read").sum())  # written, rarely read
    assert sum(p.endswith(MARKER.encode()) for p in paths) > 1 and not any(paths[i].endswith(MARKER.encode()) for i in ids)
    # Popularity is skewed: the most read dataset takes far more than an even share of reads.
    datasets = [paths[i].split(b"/")[1] for i in ids[shard_reads]]
    _, counts = np.unique(datasets, return_counts=True)
    assert counts.max() > 3 * counts.mean()
