"""``tiering scan`` and ``tiering plan`` against a real Dask cluster (issue 21): a ``dask scheduler`` and two
``dask worker`` processes started here from the ``distributed`` package (``bench.scan_dask.DaskCluster``), not a
``LocalCluster`` inside the test process.

The workers run this project's interpreter from another working directory than the commands, and each is its own
process group, killed at the end of the module whatever happened. The tree is tests/test_scan_dask.py's: a big
directory, a deep chain, many small ones, names with newlines and bytes that are not UTF-8.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_scan_dask import make_skewed_tree, one_process, rows

from bench.scan_dask import DaskCluster
from tiering.scan import Snapshot, write_snapshot

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask://127.0.0.1:PORT`` of a scheduler with two single-thread worker processes."""
    work = tmp_path_factory.mktemp("dask")
    elsewhere = tmp_path_factory.mktemp("workers-cwd")
    with DaskCluster(work, 2, python=sys.executable, cwd=elsewhere) as running:
        yield running


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    top = tmp_path_factory.mktemp("tree")
    make_skewed_tree(top / "hot")
    (top / "hot" / "doomed").rename(top / "hot" / "kept")  # (nothing is deleted during these scans)
    return top / "hot", one_process(top / "hot", top / "one.parquet")


def tiering(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """The real command line, as a user runs it: ``python -m tiering ARGS`` in ``cwd``."""
    return subprocess.run([sys.executable, "-m", "tiering", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def test_the_cluster_is_two_worker_processes_of_this_interpreter(cluster):
    assert cluster.address.startswith("dask://127.0.0.1:") and len(cluster.worker_pids) == 2
    for pid in cluster.worker_pids:
        assert Path(f"/proc/{pid}/exe").resolve() == Path(sys.executable).resolve()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory, cluster, tree):
    """``tiering scan --executor`` of the tree into the default place (a config's catalog dir): its directory and
    config."""
    from conftest import write_config

    root, _ = tree
    here = tmp_path_factory.mktemp("scanned")
    cfg = write_config(here, 'url = "cap"', hot=root)
    done = tiering(here, "scan", "-c", str(cfg), "--executor", cluster.address, "--buckets", "4")
    assert done.returncode == 0, done.stderr
    return here, cfg


def test_tiering_scan_on_the_cluster_writes_the_rows_of_a_one_process_scan(scanned, tree):
    here, _ = scanned
    latest = here / "state" / "inventory" / "latest.parquet"
    assert latest.resolve().is_dir() and Snapshot(latest).buckets == 4
    assert rows(latest).equals(tree[1])


def test_both_worker_processes_take_part_and_the_rows_are_exact(tmp_path, cluster, tree, monkeypatch):
    """With no budget each task hands back what it has not read after one directory, so the big directory, the
    deep chain and the small ones are spread over both workers; each writes its own files."""
    from tiering.scan import distributed as scan_dask

    monkeypatch.setattr(scan_dask, "DEFAULT_BUDGET", 0.0)
    monkeypatch.chdir(tmp_path)
    root, expected = tree
    summary = write_snapshot(root, "spread.parquet", buckets=2, executor=cluster.address)  # relative: ours
    assert not summary.errors and summary.entries == expected.num_rows
    assert rows(tmp_path / "spread.parquet").equals(expected)
    assert len({f.name for f in (tmp_path / "spread.parquet").glob("bucket=*/*.parquet")}) == 2


def test_tiering_plan_on_the_cluster_prints_the_plan_of_one_process(scanned, cluster):
    here, cfg = scanned
    policy = here / "policy.toml"
    policy.write_text('[[rules]]\nname = "tars"\nmatch = \'suffix == ".tar" and size > 2\'\naction = "archive"\n'
                      'max_files = 7\n[[rules]]\nname = "rest"\nmatch = \'size > 0\'\naction = "archive"\n'
                      '[safety]\nmin_age = "0s"\n')
    one = tiering(here, "plan", "-c", str(cfg), "-p", str(policy), "--json")
    there = tiering(here, "plan", "-c", str(cfg), "-p", str(policy), "--json", "--executor", cluster.address)
    assert one.returncode == 0 and there.returncode == 0, there.stderr
    assert len(one.stdout.splitlines()) > 300
    assert sorted(one.stdout.splitlines()) == sorted(there.stdout.splitlines())


def test_apply_verbose_on_the_cluster_tells_each_file_and_ends_cleanly(tmp_path, cluster):
    """``apply -v --executor``: the per-file lines wrap the mover, and the executor's offloading must be able
    to leave it again (it ended in ``AttributeError: 'Telling' object has no attribute 'store'``, exit 1, after
    every file was done)."""
    from conftest import write_config

    from tiering.stores.keys import encode_key

    data = {f"d/f{i}": b"x" * (i + 1) for i in range(5)}
    for rel, body in data.items():
        (tmp_path / "hot" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "hot" / rel).write_bytes(body)
    (tmp_path / "cap").mkdir()
    cfg = write_config(tmp_path, 'url = "cap"')
    (tmp_path / "policy.toml").write_text('[[rules]]\nname = "all"\nmatch = \'size > 0\'\naction = "archive"\n'
                                          '[safety]\nmin_age = "0s"\n')
    done = tiering(tmp_path, "apply", "-v", "-c", str(cfg), "-p", "policy.toml", "--executor", cluster.address)
    assert done.returncode == 0, done.stderr
    assert sorted(line for line in done.stderr.splitlines() if line.startswith("done: archive")) == \
        sorted(f"done: archive {rel} ({len(body)}B)" for rel, body in data.items())
    assert "Traceback" not in done.stderr
    for rel, body in data.items():
        assert (tmp_path / "cap" / encode_key(rel)).read_bytes() == body
