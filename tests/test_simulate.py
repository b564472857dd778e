"""``tiering simulate``: a replay with the real planner, counted exactly on a hand-made trace, and the verb."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from tiering.core.inventory import SCHEMA as INVENTORY
from tiering.ops.simulate import Scenario, simulate
from tiering.ops.simulate.report import Prices
from tiering.policy import parse_policy
from tiering.trace.schema import SCHEMA as TRACE, kind_array

NS, H, MiB = 1_000_000_000, 3600 * 1_000_000_000, 1 << 20
T0 = 1_767_225_600 * NS


def inventory(names: list[str], size: int = MiB, age: int = 90 * 24 * H) -> pa.Table:
    n = len(names)
    return pa.table({"path": pa.array([x.encode() for x in names], pa.binary()),
                     "type": pa.array(["file"] * n).dictionary_encode().cast(INVENTORY.field("type").type),
                     "size": np.full(n, size), "blocks": np.full(n, size // 512),
                     "mode": pa.array(np.full(n, 0o100644, np.uint32)), "uid": pa.array(np.zeros(n, np.uint32)),
                     "gid": pa.array(np.zeros(n, np.uint32)), "atime_ns": np.full(n, T0 - age),
                     "mtime_ns": np.full(n, T0 - age), "ctime_ns": np.full(n, T0 - age),
                     "ino": pa.array(np.arange(1, n + 1, dtype=np.uint64)), "nlink": pa.array(np.ones(n, np.uint32))},
                    schema=INVENTORY)


def trace(rows: list[tuple[int, str, str]]) -> pa.Table:
    return pa.table({"time_ns": [t for t, _, _ in rows], "path": pa.array([p.encode() for _, p, _ in rows]),
                     "bytes": [MiB] * len(rows), "kind": kind_array([k for _, _, k in rows]),
                     "tier": pa.array(["hot"] * len(rows)).dictionary_encode().cast(TRACE.field("tier").type)},
                    schema=TRACE)


RELEASE_B = ('[[rules]]\nname = "cold-b"\nmatch = \'name == "b" and atime_age > 1h\'\naction = "release"\n'
             '[safety]\nmin_age = "0s"\n')


def test_a_replay_counts_misses_restores_and_moves_as_the_real_planner_decides():
    reads = trace([(T0 + 600 * NS, "a", "read"), (T0 + 3 * H, "b", "read"), (T0 + 3 * H + NS, "b", "open"),
                   (T0 + 10 * H, "b", "read")])
    sim = simulate(reads, inventory(["a", "b", "c"]), [("rule", parse_policy(RELEASE_B))], [10 * MiB],
                   Scenario(capacity=1, restore_latency=0.1, restore_bandwidth=MiB), prices=Prices.of(None, None))
    row = sim.rows[0]
    # The replay starts at the first access (0h10), with a cycle that releases b (untouched for 90 days); b's
    # read at 3h waits on a restore (0.1 s + 1 s), the open a second later hits; b is more than an hour cold
    # again at the 4h10 cycle, released, and missed at 10h. Cycles: that first one, then hourly to 9h10.
    assert (row["reads"], row["misses"], row["hit_ratio"]) == (4, 2, 0.5)
    assert row["initial_release_bytes"] == MiB and row["bytes_released"] == MiB and row["bytes_down"] == 2 * MiB
    assert row["bytes_up"] == 0  # the copy made by the first release still stands: a release of b needs no upload
    assert row["restore_wait_seconds"] == pytest.approx(2 * 1.1)
    assert row["peak_used"] == 3 * MiB and row["cycles"] == 10


def test_the_watermark_keeps_a_small_hot_tier_below_its_capacity():
    names = [f"d/{i}" for i in range(40)]
    rng = np.random.default_rng(0)
    reads = trace([(T0 + int(t), names[i], "read") for t, i in
                   sorted(zip(rng.integers(0, 48 * H, 400), rng.integers(0, 40, 400)))])
    policy = parse_policy('[watermark]\nhigh = "80%"\nlow = "60%"\norder = "lru"\n[safety]\nmin_age = "0s"\n')
    sim = simulate(reads, inventory(names), [("lru", policy)], [0.5], Scenario(capacity=1),
                   prices=Prices.of(None, None))
    row = sim.rows[0]
    assert row["capacity"] == 20 * MiB and row["over_capacity_steps"] == 0 and row["peak_used_ratio"] <= 1.0
    assert 0 < row["misses"] < row["reads"] and row["watermark_cycles"] > 0
    assert row["initial_release_bytes"] >= 20 * MiB  # 40 MiB fitted under 80 % of 20 MiB at the start


def test_the_verb_compares_policies_and_sizes_as_json_and_plots_them(tmp_path):
    wl = tmp_path / "wl"
    gen = subprocess.run([sys.executable, "-m", "tiering", "trace", "generate", str(wl), "--files", "2000",
                          "--accesses", "20000", "--days", "3"], capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    (tmp_path / "lru.toml").write_text('[watermark]\nhigh = "90%"\nlow = "80%"\n[safety]\nmin_age = "1h"\n')
    (tmp_path / "heat.toml").write_text('[watermark]\nhigh = "90%"\nlow = "80%"\norder = "heat"\n')
    done = subprocess.run([sys.executable, "-m", "tiering", "simulate", "--trace", str(wl / "trace.parquet"),
                           "--inventory", str(wl / "inventory.parquet"), "-p", str(tmp_path / "lru.toml"),
                           "-p", str(tmp_path / "heat.toml"), "--capacity", "10%", "--capacity", "60%", "--json",
                           "--plot", str(tmp_path / "sim.png"), "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["policy"], r["capacity"] > rows[0]["capacity"]) for r in rows] == [
        ("lru", False), ("heat", False), ("lru", True), ("heat", True)]
    for small, big in ((rows[0], rows[2]), (rows[1], rows[3])):
        assert small["hit_ratio"] < big["hit_ratio"] and small["bytes_down"] > big["bytes_down"]
    assert (tmp_path / "sim.png").read_bytes()[:4] == b"\x89PNG"
    table = subprocess.run([sys.executable, "-m", "tiering", "simulate", "--trace", str(wl / "trace.parquet"),
                            "--inventory", str(wl / "inventory.parquet"), "-p", str(tmp_path / "lru.toml"),
                            "--capacity", "1x"], capture_output=True, text=True)
    assert table.returncode == 2 and table.stderr.count("\n") == 1 and "--capacity '1x'" in table.stderr
