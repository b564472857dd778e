"""The out-of-core plan (issue 21.3) equals the in-memory plan on the same inputs: a property test.

Inventories, catalog states and policies are generated (skewed sizes, tied access times and inodes, hard links,
stubs, dirty archives, pins, capped rules, every watermark order with usage above and below the mark); the
inventory is written as a partitioned snapshot and planned three ways: in memory as one stream, out of core
with the catalog as a table, and out of core with the catalog streamed in small batches (spilled to disk);
and as one file, with the catalog as a table and streamed (filtered to the inventory's paths as it comes).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiering.core.inventory import SCHEMA
from tiering.plan import Usage, make_plan, read_inventory
from tiering.plan.outofcore import plan_partitions
from tiering.policy import parse_policy
from tiering.scan import PartitionedWriter, Snapshot

NS = 10**9
DAY = 86400 * NS
NOW = 1_800_000_000 * NS
GiB = 2**30

MATCHES = ['atime_age > 30d', 'size > 1GiB', 'path ~ "a/**"', 'suffix in [".tar", ".pt"]', 'uid == 1001',
           'state == "released"', 'state == "archived" or state == "dirty"', 'heat > 2', 'not pinned',
           'atime_age > 100d and size < 5GiB', 'depth > 2', 'type == "file"']
ACTIONS = ["archive", "release", "restore", "pin", "exclude"]
DIRS = [b"a/", b"a/b/", b"a/b/c/", b"d/", b"", b"e/\xff/"]


@st.composite
def worlds(draw):
    n = draw(st.integers(0, 90))
    rows = []
    for i in range(n):
        size = draw(st.sampled_from([0, 1, 4096, 10**6, GiB, 3 * GiB, 7 * GiB]))
        atime = draw(st.sampled_from([0.01, 5, 40, 40, 120, 400]))  # repeats: ties fall to inode then path
        rows.append(dict(
            path=draw(st.sampled_from(DIRS)) + b"f%03d" % i + draw(st.sampled_from([b".tar", b".pt", b".log", b""])),
            type=draw(st.sampled_from(["file"] * 8 + ["dir", "symlink"])), size=size,
            blocks=draw(st.sampled_from([(size + 511) // 512, 0])), mode=0o100644,
            uid=draw(st.sampled_from([1000, 1001])), gid=100, atime_ns=NOW - int(atime * DAY),
            mtime_ns=NOW - int(draw(st.sampled_from([0.001, 50, 500])) * DAY),
            ctime_ns=NOW - int(draw(st.sampled_from([0.001, 50, 500])) * DAY),
            ino=draw(st.integers(1, 12)), nlink=draw(st.sampled_from([1, 1, 1, 2]))))
    catalog = []
    for row in rows:
        if draw(st.booleans()):
            state = draw(st.sampled_from(["resident", "archived", "released"]))
            same = draw(st.booleans())  # an archived file changed since is dirty
            catalog.append(dict(path=row["path"], state=state, tier=draw(st.sampled_from([None, "cap", "far"])),
                                heat=draw(st.sampled_from([0.0, 1.0, 3.0, 3.0])), pinned=draw(st.booleans()),
                                size=row["size"] if same else row["size"] + 1, mtime_ns=row["mtime_ns"],
                                ino=row["ino"]))
    for i in range(draw(st.integers(0, 5))):  # the catalog knows files the scan did not see
        catalog.append(dict(path=b"gone/%d" % i, state="archived", tier="cap", heat=1.0, pinned=False, size=5,
                            mtime_ns=0, ino=1))
    rules = []
    for i in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(ACTIONS))
        rule = f'[[rules]]\nname = "r{i}"\nmatch = \'{draw(st.sampled_from(MATCHES))}\'\naction = "{action}"\n'
        if action in ("archive", "release", "restore") and draw(st.booleans()):
            rule += f"max_files = {draw(st.integers(1, 6))}\n"
        if action in ("archive", "release", "restore") and draw(st.booleans()):
            rule += f"max_bytes = {draw(st.sampled_from([1, 4096, GiB, 8 * GiB]))}\n"
        rules.append(rule)
    text = "".join(rules) + f'[safety]\nmin_age = "1h"\nskip_hardlinks = {str(draw(st.booleans())).lower()}\n'
    usage = None
    if draw(st.booleans()):
        order = draw(st.sampled_from(["lru", "heat", "expression"]))
        low = draw(st.sampled_from(["10%", "60%", "79%"]))
        text += f'[watermark]\nhigh = "80%"\nlow = "{low}"\norder = "{order}"\n'
        if order == "expression":
            text += "weight = 'size / 1GiB + heat'\n"
        if draw(st.booleans()):
            text += f"match = '{draw(st.sampled_from(MATCHES))}'\n"
        usage = Usage(total=100 * GiB, used=draw(st.sampled_from([50, 81, 95, 100])) * GiB)
    unique = {r["path"]: r for r in rows}  # one row per path, as a scan gives
    return list(unique.values()), catalog, text, usage, draw(st.sampled_from([2, 4, 8]))


def catalog_table(rows: list[dict]) -> pa.Table:
    return pa.table({
        "path": pa.array([r["path"] for r in rows], pa.binary()),
        "state": pa.array([r["state"] for r in rows], pa.string()),
        "tier": pa.array([r["tier"] for r in rows], pa.string()),
        "heat": pa.array([r["heat"] for r in rows], pa.float64()),
        "pinned": pa.array([r["pinned"] for r in rows], pa.bool_()),
        "size": pa.array([r["size"] for r in rows], pa.int64()),
        "mtime_ns": pa.array([r["mtime_ns"] for r in rows], pa.int64()),
        "ino": pa.array([r["ino"] for r in rows], pa.int64()),
    })


def write_partitioned(rows: list[dict], directory: Path, buckets: int) -> Snapshot:
    directory.mkdir()
    with PartitionedWriter(directory, buckets) as writer:
        for batch in pa.Table.from_pylist(rows, schema=SCHEMA).to_batches(max_chunksize=7):
            writer.write_batch(batch)
    writer.finish()
    return Snapshot(directory, batch_rows=5)


def canonical(plan) -> tuple:
    """The plan as a comparable value. Rows of an uncapped rule keep the inventory's order, which a hash join
    may shuffle; their rank is that position, so for them compare the set of rows, everything else exactly."""
    capped = {r.name for r in plan.policy.rules if r.max_files is not None or r.max_bytes is not None}
    rows = plan.actions.to_pylist()
    groups = [(r["action"], r["rule"]) for r in rows]
    exact = [r for r in rows if r["rule"] in capped or r["rule"] == "watermark"]
    loose = sorted((tuple(sorted((k, v) for k, v in r.items() if k != "rank")) for r in rows
                    if r["rule"] not in capped and r["rule"] != "watermark"), key=repr)
    return groups, exact, loose, plan.counts, plan.freed


#: Kept small for the suite (~5 s); a soak: PLAN_OOC_EXAMPLES=1000 pytest tests/test_plan_outofcore.py
EXAMPLES = int(os.environ.get("PLAN_OOC_EXAMPLES", "20"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(worlds())
def test_the_out_of_core_plan_equals_the_in_memory_plan(world):
    rows, catalog_rows, text, usage, buckets = world
    policy = parse_policy(text, "generated.toml", None)
    catalog = catalog_table(catalog_rows) if catalog_rows else None
    with tempfile.TemporaryDirectory() as tmp:
        snap = write_partitioned(rows, Path(tmp) / "inventory.parquet", buckets)
        kwargs = dict(usage=usage, default_tier="cap")
        in_memory = make_plan(iter(snap), catalog, policy, NOW, **kwargs)
        out_of_core = make_plan(snap, catalog, policy, NOW, **kwargs)
        streamed = plan_partitions(snap, None if catalog is None else catalog.to_batches(max_chunksize=3), policy,
                                   NOW, **kwargs)
        # The same inventory as one file, in another row order: the same plan still.
        single = Path(tmp) / "single.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), single)
        one_file = make_plan(read_inventory(single), catalog, policy, NOW, **kwargs)
        # ... and with the catalog streamed (as Catalog.state_batches gives it): kept to the inventory's paths.
        one_file_streamed = make_plan(read_inventory(single), None if catalog is None else
                                      catalog.to_batches(max_chunksize=3), policy, NOW, **kwargs)
        assert sorted(Path(tmp).iterdir()) == sorted([Path(tmp) / "inventory.parquet", single])  # no spill left
    expected = canonical(in_memory)
    assert canonical(out_of_core) == expected
    assert canonical(streamed) == expected
    assert canonical(one_file)[1:] == expected[1:]
    assert canonical(one_file_streamed)[1:] == expected[1:]
    if catalog is None:  # no hash join at all: the same rows in the same order, ranks included
        assert out_of_core.actions.equals(in_memory.actions)


def test_a_partitioned_snapshot_is_planned_out_of_core_by_default_and_one_file_in_memory(tmp_path):
    rows = [dict(path=b"d/f%d" % i, type="file", size=GiB, blocks=GiB // 512, mode=0o100644, uid=1000, gid=100,
                 atime_ns=NOW - (i + 10) * DAY, mtime_ns=NOW - 400 * DAY, ctime_ns=NOW - 400 * DAY, ino=i, nlink=1)
            for i in range(40)]
    snap = write_partitioned(rows, tmp_path / "p.parquet", 4)
    text = '[[rules]]\nname = "cold"\nmatch = \'atime_age > 20d\'\naction = "release"\nmax_files = 5\n' \
           '[watermark]\nhigh = "80%"\nlow = "75%"\n'
    policy = parse_policy(text, "t.toml", None)
    usage = Usage(total=100 * GiB, used=90 * GiB)
    plan = make_plan(read_inventory(tmp_path / "p.parquet"), None, policy, NOW, usage=usage)
    assert read_inventory(tmp_path / "p.parquet").partitioned
    # The rule claims f11..f39 and keeps the five coldest; the watermark takes what no rule claimed, coldest
    # first, until it frees 90 - 75 - 5 = 10 GiB more.
    assert [r["path"] for r in plan.rows()] == [b"d/f%d" % i for i in range(39, 34, -1)] + \
        [b"d/f%d" % i for i in range(10, 0, -1)]
    assert plan.counts["cold: over the cap, left for the next run"] == 29 - 5
    assert plan.freed == 15 * GiB
    assert canonical(plan) == canonical(make_plan(iter(snap), None, policy, NOW, usage=usage))


def test_explain_reads_the_one_partition_holding_the_path(tmp_path):
    from tiering.plan.explain import find_row

    rows = [dict(path=b"d/f%d" % i, type="file", size=i, blocks=1, mode=0o100644, uid=1000, gid=100, atime_ns=NOW,
                 mtime_ns=NOW, ctime_ns=NOW, ino=i, nlink=1) for i in range(30)]
    write_partitioned(rows, tmp_path / "p.parquet", 8)
    catalog = catalog_table([dict(path=b"d/f7", state="released", tier="cap", heat=2.0, pinned=True, size=70,
                                  mtime_ns=NOW, ino=7)])
    row = find_row(read_inventory(tmp_path / "p.parquet"), catalog, b"d/f7")
    assert (row["size"], row["state"], row["pinned"], row["tier"]) == (70, "released", True, "cap")
    assert find_row(read_inventory(tmp_path / "p.parquet"), catalog, b"d/nope") is None


def test_spilled_catalog_rows_are_read_back_in_bounded_groups_kept_to_the_partitions_paths(tmp_path, monkeypatch):
    import pyarrow.feather as feather

    from tiering.plan import outofcore
    from tiering.plan.join import catalog_frame

    monkeypatch.setattr(outofcore, "_SPILL_ROWS", 5)  # a group fills after two files of three rows
    files = []
    for f in range(7):
        rows = [dict(path=b"p%d-%d" % (f, i), state="archived", tier="cap", heat=0.0, pinned=False, size=i,
                     mtime_ns=0, ino=i) for i in range(3)]
        files.append(tmp_path / f"{f}.arrow")
        feather.write_feather(catalog_frame(catalog_table(rows)), files[-1])
    wanted = pa.chunked_array([[b"p0-1", b"p3-2", b"p6-0", b"nowhere"]])
    got = outofcore.read_spilled(files, wanted)
    assert sorted(got["cat_path"].to_pylist()) == [b"p0-1", b"p3-2", b"p6-0"]
    assert got.schema == catalog_frame(None).schema
    assert outofcore.read_spilled([], wanted).num_rows == 0
