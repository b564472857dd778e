"""``tiering scan`` and ``tiering plan`` against a real Dask cluster (issue 21): a ``dask scheduler`` and two
``dask worker`` processes started here from the ``distributed`` package (``bench.scan_dask.DaskCluster``), not a
``LocalCluster`` inside the test process.

The workers run this project's interpreter from another working directory than the commands, and each is its own
process group, killed at the end of the module whatever happened. The tree is tests/test_scan_dask.py's: a big
directory, a deep chain, many small ones, names with newlines and bytes that are not UTF-8.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pg_fixtures import PG_PASSWORD, pg_server, pg_url  # noqa: F401 (fixtures)
from test_pg_many_writers import setup
from test_scan_dask import make_skewed_tree, one_process, rows

from bench.scan_dask import DaskCluster
from tiering.scan import Snapshot, write_snapshot

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``dask://127.0.0.1:PORT`` of a scheduler with two single-thread worker processes."""
    work = tmp_path_factory.mktemp("dask")
    elsewhere = tmp_path_factory.mktemp("workers-cwd")
    env = {**os.environ, "PGCAT_TEST_PW": PG_PASSWORD}  # the workers' own secret (see the last tests)
    with DaskCluster(work, 2, python=sys.executable, cwd=elsewhere, env=env) as running:
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


# -- secrets stay on their nodes: a task carries ``${VAR}``, the worker resolves it --------------------------------

def apply_on_cluster(tmp_path: Path, cluster, url: str, variable: str) -> subprocess.CompletedProcess:
    """``tiering -v apply --executor`` (debug logging) of 6 files with the PostgreSQL catalog ``url``, its
    password written as ``${variable}``, which this command's environment holds."""
    cfg, _ = setup(tmp_path, url, files=6)
    cfg.write_text(cfg.read_text().replace("${PGCAT_TEST_PW}", f"${{{variable}}}"))
    env = {k: v for k, v in os.environ.items() if k not in ("TIERING_CONFIG", "TIERING_HOME")}
    return subprocess.run([sys.executable, "-m", "tiering", "-v", "apply", "--json", "-c", str(cfg), "--executor",
                           cluster.address], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**env, variable: PG_PASSWORD})


def test_workers_act_with_the_catalog_password_of_their_own_environment(tmp_path, cluster, pg_url):
    from tiering.catalog import Catalog

    done = apply_on_cluster(tmp_path, cluster, pg_url, "PGCAT_TEST_PW")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["actions"] == {"archive": {"done": 6}}
    with Catalog.open(pg_url) as cat:
        assert {command for (command,) in cat._read("SELECT command FROM runs")} >= {"worker"}
    logs = b"".join(log.read_bytes() for log in cluster.work.glob("*.log"))
    assert PG_PASSWORD.encode() not in logs and PG_PASSWORD not in done.stderr


def test_a_worker_without_the_variable_fails_by_its_name_the_password_never_travels(tmp_path, cluster, pg_url):
    """The coordinator knows ``$ONLY_HERE_PW``, the workers do not: had the password travelled with the tasks
    (the whole loaded config, password resolved, was pickled to them), the workers would have used it."""
    done = apply_on_cluster(tmp_path, cluster, pg_url, "ONLY_HERE_PW")
    assert done.returncode == 2, done.stderr  # a configuration error, named
    assert "${ONLY_HERE_PW}" in done.stderr and "not set in its environment" in done.stderr, done.stderr
    assert PG_PASSWORD not in done.stderr + done.stdout
    logs = b"".join(log.read_bytes() for log in cluster.work.glob("*.log"))
    assert PG_PASSWORD.encode() not in logs


def s3_config(tmp_path, catalog_url: str = "") -> Path:
    """A config whose one tier is S3 with its secret key as ``${S3_SECRET}`` (``catalog_url``: a line for
    ``[catalog]``)."""
    cfg = tmp_path / "tiering.toml"
    cfg.write_text('default_tier = "s3"\n[hot]\npath = "hot"\n[catalog]\npath = "state/c.db"\n' + catalog_url +
                   '[tiers.s3]\nurl = "s3://bucket/p"\nendpoint = "http://127.0.0.1:1"\naccess_key_id = "id"\n'
                   'secret_access_key = "${S3_SECRET}"\n')
    (tmp_path / "hot").mkdir()
    return cfg


def test_a_task_carries_references_not_secrets(tmp_path, monkeypatch):
    """What ``without_secrets`` gives the tasks: a pickle with neither the catalog's password nor a tier's
    secret key; ``with_secrets`` on the worker gets both back from its environment."""
    import pickle

    from tiering.config import load_config
    from tiering.mover.distributed import references, resolve, with_secrets, without_secrets

    monkeypatch.setenv("PW", "pg-secret-1")
    monkeypatch.setenv("S3_SECRET", "s3-secret-2")
    config = load_config(s3_config(tmp_path, 'url = "postgresql://me:${PW}@db:5432/cat"\n'))
    assert b"pg-secret-1" in pickle.dumps(config) and b"s3-secret-2" in pickle.dumps(config)  # as loaded
    sent = pickle.dumps(without_secrets(config))
    assert b"pg-secret-1" not in sent and b"s3-secret-2" not in sent
    assert with_secrets(pickle.loads(sent)) == config
    # The store a worker opens for an offloaded put/get (a SQLite catalog): its options, the same way.
    options = references(config, "s3", config.tier("s3").options)
    assert options["secret_access_key"] == "${S3_SECRET}" and b"s3-secret-2" not in pickle.dumps(options)
    assert resolve(options["secret_access_key"], "the key") == "s3-secret-2"


def test_a_migration_side_sent_to_workers_carries_references_not_secrets(tmp_path, monkeypatch):
    """``migrate``/``sync --executor dask://``: a configured tier's side travels with its secret as the
    ``${VAR}`` reference (``EndpointSpec.for_workers``), and opens from the worker's own environment."""
    import pickle

    from tiering.migrate.request import make_job

    monkeypatch.setenv("S3_SECRET", "s3-secret-3")
    cfg = s3_config(tmp_path)
    (tmp_path / "src").mkdir()
    job = make_job(str(tmp_path / "src"), "s3", config=cfg)
    assert b"s3-secret-3" in pickle.dumps(job.dst)  # in this process, as loaded
    sent = job.dst.for_workers()
    assert b"s3-secret-3" not in pickle.dumps(sent) and dict(sent.options)["secret_access_key"] == "${S3_SECRET}"
    store = pickle.loads(pickle.dumps(sent)).open().store  # a worker with the variable opens it
    assert store is not None
    monkeypatch.delenv("S3_SECRET")
    with pytest.raises(Exception, match=r"\$\{S3_SECRET\}.*not set"):
        pickle.loads(pickle.dumps(sent)).open()
