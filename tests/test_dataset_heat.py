"""Dataset-level heat: files of a declared dataset heat and cool together, in the plan, in ``plan --explain``,
and in the simulator, where it raises the hit ratio of an epoch-style trace over per-file heat."""

from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import pytest
from unattended import make_file, tiering, write_setup

from tiering.core.errors import PolicyError
from tiering.ops.simulate import Scenario, simulate
from tiering.ops.simulate.report import Prices
from tiering.policy import parse_policy
from tiering.trace.generate import Workload, generate

RULES = '[[rules]]\nname = "cold"\nmatch = \'atime_age > 7d\'\naction = "release"\n[safety]\nmin_age = "0s"\n'


def test_datasets_by_glob_and_by_marker_the_deepest_marker_first():
    policy = parse_policy(RULES + '[datasets]\ndirs = ["datasets/*"]\nmarkers = [".dataset"]\n')
    paths = pa.array([b"datasets/a/x.tar", b"datasets/a/sub/y", b"datasets/b/.dataset", b"datasets/b/z",
                      b"shared/m/.dataset", b"shared/m/q/r", b"shared/loose", b"top"])
    assert policy.datasets.roots(paths).to_pylist() == [
        b"datasets/a", b"datasets/a", b"datasets/b", b"datasets/b", b"shared/m", b"shared/m", None, None]


@pytest.mark.parametrize("table, error", [
    ('dirs = "datasets/["', "unclosed"), ("markers = ['a/b']", "not a file name"), ("dir = []", "unknown key 'dir'"),
])
def test_a_bad_datasets_table_is_one_policy_error(table, error):
    with pytest.raises(PolicyError, match=error):
        parse_policy(RULES + f"[datasets]\n{table}\n")


def _workspace(tmp_path, datasets: bool):
    policy = RULES + ('[datasets]\nmarkers = [".dataset"]\n' if datasets else "")
    cfg = write_setup(tmp_path, policy)
    hot = tmp_path / "hot"
    for name in ("a", "b"):
        make_file(hot / f"ds/{name}/.dataset", 0, age=30 * 86400)
        for i in range(3):
            make_file(hot / f"ds/{name}/shard-{i}.tar", 4096, age=30 * 86400)  # untouched for a month
    now = time.time()
    os.utime(hot / "ds/a/shard-0.tar", (now - 3600, now - 30 * 86400))  # one shard of a read an hour ago
    assert tiering("scan", "-c", str(cfg)).returncode == 0
    return cfg


@pytest.mark.parametrize("datasets", [False, True])
def test_reading_part_of_a_dataset_keeps_all_of_it_and_explain_says_why(tmp_path, datasets):
    cfg = _workspace(tmp_path, datasets)
    done = tiering("plan", "-c", str(cfg), "--json")
    assert done.returncode == 0, done.stderr
    released = sorted(json.loads(line)["path"] for line in done.stdout.splitlines())
    b_all = [f"ds/b/{n}" for n in (".dataset", "shard-0.tar", "shard-1.tar", "shard-2.tar")]
    if datasets:
        assert released == b_all  # a's read shard keeps all of a; b, untouched, goes whole
    else:
        assert released == sorted(["ds/a/.dataset", "ds/a/shard-1.tar", "ds/a/shard-2.tar", *b_all])
    explained = tiering("plan", "-c", str(cfg), "--explain", "ds/a/shard-2.tar")
    assert explained.returncode == 0, explained.stderr
    if datasets:
        assert "dataset ds/a: 4 files" in explained.stdout and "(ds/a/shard-0.tar)" in explained.stdout
        assert "STAYS because its dataset is hot" in explained.stdout and "would release it (rule cold)" in \
            explained.stdout, explained.stdout
        assert "rule cold (release): no match" in explained.stdout
        assert "stage it in as one unit: tiering restore --dataset ds/a" in explained.stdout
    else:
        assert "STAYS" not in explained.stdout and "rule cold (release): MATCHES" in explained.stdout


def test_dataset_heat_raises_the_hit_ratio_of_an_epoch_trace_over_per_file_heat():
    inventory, trace = generate(Workload(files=3000, accesses=30_000, days=5, seed=7, shards_per_dataset=150))
    base = '[watermark]\nhigh = "90%"\nlow = "80%"\norder = "lru"\n[safety]\nmin_age = "1h"\n'
    policies = [("per-file", parse_policy(base)),
                ("dataset", parse_policy(base + '[datasets]\nmarkers = [".dataset"]\n'))]
    sim = simulate(trace, inventory, policies, [0.3], Scenario(capacity=1), prices=Prices.of(None, None))
    per_file, dataset = sim.rows
    assert dataset["hit_ratio"] > per_file["hit_ratio"] + 0.1, (per_file, dataset)
    assert dataset["misses"] < per_file["misses"] / 2 and dataset["staged_files"] > 0
    assert dataset["over_capacity_steps"] == 0  # a stage-in fills the tier only up to the high watermark
    # Pooled heat alone (files restored one by one) still beats per-file heat, with fewer bytes restored.
    (alone,) = simulate(trace, inventory, policies[1:], [0.3], Scenario(capacity=1, stage_in=False),
                        prices=Prices.of(None, None)).rows
    assert alone["staged_files"] == 0 and alone["hit_ratio"] > per_file["hit_ratio"]
    assert alone["bytes_down"] < per_file["bytes_down"]


def test_the_watermark_demotes_a_dataset_whole_or_not_at_all():
    from test_simulate import T0, MiB, inventory

    from tiering.plan import Usage, make_plan

    inv = inventory([f"ds/a/{i}" for i in range(4)] + [f"ds/b/{i}" for i in range(4)] + ["loose"])
    day = 86400 * 10**9
    inv = inv.set_column(inv.schema.get_field_index("atime_ns"), "atime_ns",
                         pa.array([T0 - 10 * day] * 4 + [T0 - 5 * day] * 4 + [T0 - day]))
    base = '[watermark]\nhigh = "50%"\nlow = "45%"\norder = "lru"\n[safety]\nmin_age = "0s"\n'
    usage = Usage(16 * MiB, 9 * MiB)  # 1.8 MiB to free: two files of a, per file
    per_file = make_plan(inv.to_batches(), None, parse_policy(base), T0, usage=usage)
    whole = make_plan(inv.to_batches(), None, parse_policy(base + '[datasets]\ndirs = ["ds/*"]\n'), T0, usage=usage)
    assert per_file.actions["path"].to_pylist() == [b"ds/a/0", b"ds/a/1"]
    assert whole.actions["path"].to_pylist() == [b"ds/a/0", b"ds/a/1", b"ds/a/2", b"ds/a/3"]
    assert whole.freed == 4 * MiB and whole.actions["rank"].to_pylist() == [1, 2, 3, 4]
