"""The catalog at scale: state read as a stream (both backends), the summary and recovery by index.

``Catalog.state_batches`` must give exactly ``state_table``'s rows, batch by batch, on SQLite and on a real
PostgreSQL server (tests/pg_fixtures.py), so the out-of-core plan never holds the whole catalog.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pytest
from pg_fixtures import pg_server, pg_url  # noqa: F401 - fixtures

from tiering.catalog import Catalog, FileRecord


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    if request.param == "sqlite":
        return tmp_path / "catalog.db"
    return request.getfixturevalue("pg_url")


def _fill(target, n: int) -> None:
    states = ("resident", "archived", "released", "dirty")
    with Catalog.open(target, writer=True) as cat:
        for i in range(n):
            odd = i % 7 == 3  # some records with the nullable columns left empty
            cat.put(FileRecord(b"d/f\xff\n%05d" % i, states[i % 4], tier=None if odd else "cold",
                               size=None if odd else i * 10, mtime_ns=None if odd else i, ino=(1 << 64) - 1 - i,
                               heat=float(i % 5), heat_at=None if odd else 100.0, pinned=i % 11 == 0))


def test_state_batches_stream_exactly_the_state_table(target):
    _fill(target, 300)
    with Catalog.open(target) as cat:
        whole = cat.state_table(now=200.0, half_life=100.0)
        batches = list(cat.state_batches(now=200.0, half_life=100.0, batch_rows=64))
    assert len(batches) >= 4 and all(b.num_rows <= 64 for b in batches)  # a stream, not one table
    streamed = pa.Table.from_batches(batches)
    assert streamed.schema == whole.schema
    key = [("path", "ascending")]
    assert streamed.sort_by(key).equals(whole.sort_by(key))
    assert streamed.num_rows == 300 and streamed["heat"].null_count == 0


def test_state_batches_of_an_empty_catalog_is_empty(target):
    _fill(target, 0)
    with Catalog.open(target) as cat:
        assert sum(b.num_rows for b in cat.state_batches(now=1.0, half_life=1.0)) == 0


def test_the_scale_bench_builds_a_catalog_and_times_status_and_recover(tmp_path):
    """bench/catalog_scale.py at a toy size: the bulk-built catalog is one tiering opens and recovers."""
    import time

    from bench.catalog_scale import build, disk_estimate, step

    build(tmp_path, 3000, 20, 7, time.time_ns(), lambda line: None)
    with Catalog.open(tmp_path / "state" / "catalog.db") as cat:
        assert sum(n for n, _ in cat.counts().values()) == 3000 and len(cat.open_entries()) == 7
        assert cat.get(b"d000000/f0000000005.bin") is not None
    status = step("status", tmp_path)
    assert status["files"] == 3000 and status["interrupted"] == 7
    assert step("recover", tmp_path)["settled"] == 7
    assert step("recover", tmp_path)["settled"] == 7  # the step puts its entries back: it repeats
    assert 20e9 < disk_estimate(10**8) < 40e9


def test_explain_reads_one_record_with_the_state_tables_heat(tmp_path):
    """``plan --explain`` reads the one record it explains (by key), decayed as ``state_table`` decays it."""
    import time

    from conftest import write_config

    from tiering.config import load_config
    from tiering.ops.workflow import catalog_row

    config = load_config(write_config(tmp_path, 'url = "cap"'))
    assert catalog_row(config, b"x") is None  # no catalog yet
    rec = FileRecord(b"d/\xff odd", "released", tier="cap", size=7, mtime_ns=5, ino=(1 << 64) - 3, heat=4.0,
                     heat_at=time.time() - 3600, pinned=True)
    with Catalog.open(config.catalog_path, writer=True) as cat:
        cat.put(rec)
        cat.put(FileRecord(b"other", "archived", size=1))
    row = catalog_row(config, rec.path)
    with Catalog.open(config.catalog_path) as cat:
        whole = cat.state_table(time.time(), config.heat_half_life)
    expected = whole.filter(pa.compute.equal(whole["path"], rec.path))
    assert row.num_rows == 1 and row.schema == expected.schema
    assert row.drop_columns(["heat"]).equals(expected.drop_columns(["heat"]))
    assert abs(row["heat"][0].as_py() - expected["heat"][0].as_py()) < 1e-3
    assert catalog_row(config, b"unknown").num_rows == 0


@pytest.mark.parametrize("read", ["state_batches", "state_table"])
def test_a_bulk_read_leaves_this_processs_sqlite_locks_alone(tmp_path, read):
    """ADBC's SQLite driver carries its own copy of SQLite; in this process, closing its files would drop the
    locks of ``sqlite3``'s connections (POSIX locks are per process), and another process could truncate the
    WAL under an open read transaction here: the corruption sqlite.org/howtocorrupt.html (2.2.1) describes."""
    import sqlite3
    import subprocess
    import sys

    path = tmp_path / "catalog.db"
    _fill(path, 50)
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM files").fetchone() == (50,)  # a read transaction, held open
    checkpoint = (f"import sqlite3; c = sqlite3.connect({str(path)!r}, isolation_level=None, timeout=0); "
                  "c.execute(\"INSERT INTO files (path, state, updated_at) VALUES (randomblob(8), 'resident', 0)\"); "
                  "print(c.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()[0])")

    def truncated_elsewhere() -> bool:
        done = subprocess.run([sys.executable, "-c", checkpoint], capture_output=True, text=True, timeout=30)
        return done.stdout.strip() == "0"  # 0: not busy, the WAL was reset under our reader

    assert not truncated_elsewhere()
    with Catalog.open(path) as cat:
        rows = sum(b.num_rows for b in cat.state_batches(1.0, 1.0)) if read == "state_batches" else \
            cat.state_table(1.0, 1.0).num_rows
    assert rows == 51
    assert not truncated_elsewhere()  # our reader still holds the WAL back
    assert reader.execute("SELECT count(*) FROM files").fetchone() == (50,)
    reader.execute("COMMIT")
    reader.close()
