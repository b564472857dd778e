"""A scan spread over a real Dask cluster (issue 21.2): the same rows as a one-process scan.

The cluster is ``distributed.LocalCluster`` with two worker processes, started once for this module. The tree
is skewed (one directory of thousands of files, a deep chain, many small ones), with odd names (newlines,
non-UTF-8 bytes, spaces), and a subtree is deleted while the scan runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from tiering.scan import Snapshot, write_snapshot

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1", worker_dashboard_address=None) as local:
        yield f"dask://127.0.0.1:{local.scheduler_address.rsplit(':', 1)[1]}"


@pytest.fixture
def no_budget(monkeypatch):
    """Every task hands back what it has not read after its first directory (the first task: the root alone),
    so the big directory, the deep chain and the rest are spread over both workers as they are found."""
    from tiering.scan import distributed as scan_dask

    monkeypatch.setattr(scan_dask, "DEFAULT_BUDGET", 0.0)


def make_skewed_tree(root: Path) -> None:
    big = root / "big dir"
    big.mkdir(parents=True)
    for i in range(800):
        (big / f"shard {i:05d}.tar").write_bytes(b"x" * (i % 5))
    deep = root / "deep"
    for level in range(12):
        deep = deep / f"l{level}"
    deep.mkdir(parents=True)
    (deep / "leaf").write_bytes(b"leaf")
    for d in range(30):
        small = root / "small" / f"{d:02d}"
        small.mkdir(parents=True)
        for i in range(d % 4):
            (small / f"f{i}").write_bytes(b"y")
    odd = os.fsencode(root) + b"/odd \xff\xfe\nname"
    os.mkdir(odd)
    with open(odd + b"/new\nline \x80.bin", "wb") as f:
        f.write(b"z")
    os.symlink("big dir", root / "link to big")
    doomed = root / "doomed"
    for d in range(8):
        (doomed / f"d{d}").mkdir(parents=True)
        for i in range(5):
            (doomed / f"d{d}" / f"f{i}").write_bytes(b"")


def rows(snapshot: Path) -> pa.Table:
    """Every row, sorted by path; directories' atimes left out (reading a directory may move its atime)."""
    table = pa.Table.from_batches(list(Snapshot(snapshot)))
    is_dir = pc.equal(table["type"].cast(pa.string()), "dir")
    atime = pc.if_else(is_dir, pa.scalar(0, pa.int64()), table["atime_ns"])
    table = table.set_column(table.schema.get_field_index("atime_ns"), "atime_ns", atime)
    return table.sort_by([("path", "ascending")])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A skewed tree and its rows from a one-process scan (the tests below only read it)."""
    top = tmp_path_factory.mktemp("tree")
    make_skewed_tree(top / "hot")
    return top / "hot", one_process(top / "hot", top / "one.parquet")


def one_process(root: Path, out: Path) -> pa.Table:
    write_snapshot(root, out, jobs=1, buckets=1)
    return rows(out)


def test_a_dask_scan_writes_the_rows_of_a_one_process_scan_each_worker_its_own_files(tmp_path, cluster, no_budget,
                                                                                       tree):
    root, expected = tree
    out = tmp_path / "dask.parquet"
    summary = write_snapshot(root, out, buckets=4, executor=cluster, batch_rows=1000)
    assert summary.files == pc.sum(pc.equal(expected["type"].cast(pa.string()), "file")).as_py()
    assert summary.entries == expected.num_rows and not summary.errors
    assert rows(out).equals(expected)
    assert Snapshot(out).buckets == 4 and ds.dataset(out, partitioning="hive").count_rows() == expected.num_rows
    writers = {f.name for f in out.glob("bucket=*/*.parquet")}
    assert len(writers) == 2, writers  # one file per worker (each worker writes its own partitions)


def test_a_subtree_deleted_during_a_dask_scan_is_counted_vanished_and_the_rest_is_exact(tmp_path, cluster,
                                                                                         no_budget):
    root = tmp_path / "hot"
    make_skewed_tree(root)
    before = one_process(root, tmp_path / "before.parquet")
    deleted = []

    def delete_once(progress) -> None:  # after the first task (the root alone): doomed is listed, not read
        if not deleted:
            shutil.rmtree(root / "doomed")
            deleted.append(progress.dirs)

    summary = write_snapshot(root, tmp_path / "dask.parquet", buckets=2, executor=cluster, progress=delete_once)
    found = rows(tmp_path / "dask.parquet")
    inside = pa.array([p.startswith(b"doomed/") for p in before["path"].to_pylist()])
    assert found.equals(before.filter(pc.invert(inside)))  # doomed itself was listed before it went
    assert summary.errors == {"vanished": 1} and summary.error_examples["vanished"] == (b"doomed",)


def test_tiering_scan_executor_dask_from_the_command_line(tmp_path, cluster, tree):
    from conftest import write_config

    root, expected = tree
    cfg = write_config(tmp_path, 'url = "cap"', hot=root)
    cli = str(Path(sys.executable).with_name("tiering"))
    done = subprocess.run([cli, "scan", "-c", str(cfg), "--executor", cluster, "--buckets", "2"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    latest = tmp_path / "state" / "inventory" / "latest.parquet"
    assert rows(latest).equals(expected)
    bad = subprocess.run([cli, "scan", "-c", str(cfg), "--executor", "dask://nowhere"], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "dask://HOST:PORT" in bad.stderr
    # The config's [scan] executor, when the command line names none.
    cfg.write_text(cfg.read_text().replace("[tiers.cap]", f'[scan]\nexecutor = "{cluster}"\n[tiers.cap]'))
    out = tmp_path / "from-config.parquet"
    done = subprocess.run([cli, "scan", "-c", str(cfg), "--buckets", "1", "--out", str(out)], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.is_dir() and rows(out).equals(expected)  # a cluster's snapshot: a directory of the workers' files
    cfg.write_text(cfg.read_text().replace(cluster, "dask://host-without-port"))
    bad = subprocess.run([cli, "scan", "-c", str(cfg)], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "[scan] executor" in bad.stderr, bad.stderr


# -- the plan on the same cluster (issue 21.3) ----------------------------------------------------------------------

PLAN_EXAMPLES = int(os.environ.get("PLAN_DASK_EXAMPLES", "6"))


def test_the_plan_on_dask_equals_the_in_memory_plan(cluster):
    """Generated worlds (tests/test_plan_outofcore.py's), each partition planned by a worker."""
    import tempfile

    from hypothesis import HealthCheck, given, settings
    from test_plan_outofcore import NOW, canonical, catalog_table, worlds, write_partitioned

    from tiering.plan import make_plan
    from tiering.plan.distributed import plan_on_cluster
    from tiering.policy import parse_policy

    @settings(max_examples=PLAN_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(worlds())
    def check(world):
        rows, catalog_rows, text, usage, buckets = world
        policy = parse_policy(text, "generated.toml", None)
        catalog = catalog_table(catalog_rows) if catalog_rows else None
        with tempfile.TemporaryDirectory() as tmp:
            snap = write_partitioned(rows, Path(tmp) / "inventory.parquet", buckets)
            kwargs = dict(usage=usage, default_tier="cap")
            in_memory = make_plan(iter(snap), catalog, policy, NOW, **kwargs)
            streamed = None if catalog is None else catalog.to_batches(max_chunksize=3)
            on_dask = plan_on_cluster(cluster, snap, streamed, policy, NOW, **kwargs)
            assert sorted(p.name for p in Path(tmp).iterdir()) == ["inventory.parquet"]  # the spill is gone
        assert canonical(on_dask) == canonical(in_memory)

    check()


def test_tiering_plan_executor_dask_prints_the_plan_of_one_process(tmp_path, cluster, tree):
    from conftest import write_config

    root, _ = tree
    cfg = write_config(tmp_path, 'url = "cap"', hot=root)
    policy = tmp_path / "policy.toml"
    policy.write_text('[[rules]]\nname = "tars"\nmatch = \'suffix == ".tar" and size > 2\'\naction = "archive"\n'
                      'max_files = 7\n[[rules]]\nname = "rest"\nmatch = \'size > 0\'\naction = "archive"\n'
                      '[safety]\nmin_age = "0s"\n')
    cli = str(Path(sys.executable).with_name("tiering"))

    def plan(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([cli, "plan", "-c", str(cfg), "-p", str(policy), "--json", *extra],
                              capture_output=True, text=True, timeout=60, cwd=tmp_path)

    scanned = subprocess.run([cli, "scan", "-c", str(cfg), "--buckets", "4"], capture_output=True, text=True,
                             timeout=60, cwd=tmp_path)
    assert scanned.returncode == 0, scanned.stderr
    here, there = plan(), plan("--executor", cluster)
    assert here.returncode == 0 and there.returncode == 0, there.stderr
    assert len(here.stdout.splitlines()) > 300
    assert sorted(here.stdout.splitlines()) == sorted(there.stdout.splitlines())


def test_relative_paths_mean_the_coordinators_working_directory_not_the_workers(tmp_path, cluster, tree,
                                                                                 monkeypatch):
    from test_plan_outofcore import NOW

    from tiering.plan import make_plan, read_inventory
    from tiering.plan.distributed import plan_on_cluster
    from tiering.policy import parse_policy

    root, expected = tree
    monkeypatch.chdir(tmp_path)
    write_snapshot(root, Path("relative.parquet"), buckets=2, executor=cluster)
    assert rows(tmp_path / "relative.parquet").equals(expected)
    from tiering.scan.snapshot import CLUSTER_BUCKETS

    write_snapshot(root, Path("first.parquet"), executor=cluster)  # a first scan on a cluster: many partitions
    assert Snapshot(tmp_path / "first.parquet").buckets == CLUSTER_BUCKETS > 1
    assert rows(tmp_path / "first.parquet").equals(expected)
    policy = parse_policy('[[rules]]\nname = "r"\nmatch = \'size > 1\'\naction = "archive"\n', "p.toml", None)
    catalog = pa.table({"path": pa.array([b"big dir/shard 00004.tar"]), "state": ["archived"], "tier": ["cap"],
                        "heat": [0.0], "pinned": [False], "size": [4], "mtime_ns": [0], "ino": [0]})
    here = make_plan(read_inventory("relative.parquet"), catalog, policy, NOW)
    there = plan_on_cluster(cluster, read_inventory("relative.parquet"), catalog.to_batches(), policy, NOW)
    assert len(there) == len(here) > 0 and there.actions.sort_by("path").equals(here.actions.sort_by("path"))
