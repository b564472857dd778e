"""The catalog on a real PostgreSQL server (tests/pg_fixtures.py), and on both backends side by side.

The API tests of test_catalog.py run here again with ``db`` a fresh PostgreSQL database; the tests below
them cover what differs: the writer lock (an advisory lock), the durable ``begin``, one-line errors.
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import test_catalog as on_sqlite
from pg_fixtures import pg_server, pg_url  # noqa: F401 - fixtures

from tiering.catalog import Catalog, CatalogBusyError, FileRecord
from tiering.catalog.schema import SCHEMA_VERSION
from tiering.core.errors import CatalogError, ConfigError, UserError, exit_status


@pytest.fixture
def db(pg_url):
    """test_catalog.py's catalog, here a PostgreSQL database."""
    return pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """A catalog on each backend: a SQLite path or a PostgreSQL URL."""
    if request.param == "sqlite":
        return tmp_path / "state" / "catalog.db"
    return request.getfixturevalue("pg_url")


# The backend-neutral bodies of test_catalog.py, run against PostgreSQL.
test_records_round_trip_with_exact_path_bytes = on_sqlite.test_records_round_trip_with_exact_path_bytes
test_journal_tracks_open_actions_until_they_end = on_sqlite.test_journal_tracks_open_actions_until_they_end
test_heat_decays_with_the_half_life = on_sqlite.test_heat_decays_with_the_half_life
test_pins_are_kept_and_listed = on_sqlite.test_pins_are_kept_and_listed
test_pinned_and_heat_only_records_count_their_true_size = on_sqlite.test_pinned_and_heat_only_records_count_their_true_size
test_runs_are_recorded = on_sqlite.test_runs_are_recorded
test_read_only_catalog_refuses_writes = on_sqlite.test_read_only_catalog_refuses_writes
test_a_state_change_never_rolls_back_heat_or_pin = on_sqlite.test_a_state_change_never_rolls_back_heat_or_pin


def _integrity_errors() -> tuple[type[Exception], ...]:
    import psycopg

    return sqlite3.IntegrityError, psycopg.IntegrityError


def test_new_catalog_has_the_current_schema_and_big_inodes_round_trip(target):
    with Catalog.open(target, writer=True) as cat:
        assert cat.schema_version == SCHEMA_VERSION
        cat.put(FileRecord(b"fuse", "archived", ino=(1 << 64) - 5, size=1))
        assert cat.get(b"fuse").ino == (1 << 64) - 5
    with Catalog.open(target) as reader:  # a second open migrates nothing and reads the same
        assert reader.schema_version == SCHEMA_VERSION and reader.get(b"fuse").ino == (1 << 64) - 5


def test_state_table_is_the_same_arrow_table_on_both_backends(target):
    with Catalog.open(target, writer=True) as cat:
        cat.put(FileRecord(b"a", "archived", tier="hdd", size=5, mtime_ns=7, ino=9))
        cat.add_heat([b"b"], now=0.0, half_life=10.0, sizes={b"b": 3})
        cat.set_pinned([b"c"], True)
        table = cat.state_table(now=10.0, half_life=10.0)
    assert str(table.schema) == ("path: binary\nstate: string\ntier: string\nheat: double\npinned: bool\n"
                                 "size: int64\nmtime_ns: int64\nino: int64\nstorage_class: string\n"
                                 "archived_at: double")
    rows = {r["path"]: r for r in table.to_pylist()}
    assert rows[b"a"] == {"path": b"a", "state": "archived", "tier": "hdd", "heat": 0.0, "pinned": False,
                          "size": 5, "mtime_ns": 7, "ino": 9, "storage_class": None, "archived_at": None}
    assert rows[b"b"]["heat"] == pytest.approx(0.5) and rows[b"c"]["pinned"] is True


def test_a_bulk_read_keeps_nulls_and_types_past_the_first_batch(target):
    """SQLite's ADBC driver guesses a column's type from its first rows: a tier that is NULL for the first
    thousands of files (resident ones) and text later must still read as text, its NULLs as nulls."""
    import pyarrow as pa

    with Catalog.open(target, writer=True) as cat:
        cat.add_heat([f"a/{i:05d}".encode() for i in range(3000)], now=0.0, half_life=1.0)
        cat.put(FileRecord(b"z/last", "archived", tier="hdd", size=7, ino=(1 << 64) - 1, heat_at=2.5))
        table = cat.state_table(now=0.0, half_life=1.0)
        raw = cat.columns("files", {"path": pa.binary(), "tier": pa.string(), "heat_at": pa.float64(),
                                    "ino": pa.int64()})
    rows = {r["path"]: r for r in raw.to_pylist()}
    assert table.num_rows == 3001 and table.column("tier").null_count == 3000
    assert rows[b"z/last"] == {"path": b"z/last", "tier": "hdd", "heat_at": 2.5, "ino": -1}
    assert rows[b"a/00000"]["tier"] is None and rows[b"a/00000"]["heat_at"] == 0.0


def test_the_sqlite_bulk_read_matches_the_row_by_row_read(tmp_path):
    import pyarrow as pa

    from tiering.catalog.arrow import _rows_to_arrow, sqlite_columns

    db = tmp_path / "catalog.db"
    with Catalog.open(db, writer=True) as cat:
        cat.add_heat([b"r"], now=1.0, half_life=1.0, sizes={b"r": 4})
        cat.put(FileRecord(b"a", "archived", tier="hdd", checksum="blake3:00", size=3, mtime_ns=1, ino=2))
    types = {"path": pa.binary(), "state": pa.string(), "tier": pa.string(), "checksum": pa.string(),
             "size": pa.int64(), "mtime_ns": pa.int64(), "heat": pa.float64(), "heat_at": pa.float64()}
    conn = sqlite3.connect(db)
    try:
        assert sqlite_columns(db, conn, "files", types).equals(_rows_to_arrow(conn, "files", types))
    finally:
        conn.close()


def test_empty_state_table_keeps_its_types(target):
    with Catalog.open(target, writer=True) as cat:
        table = cat.state_table(now=1.0, half_life=1.0)
    assert table.num_rows == 0 and table.schema.field("pinned").type == "bool"


def test_concurrent_writers_are_group_committed_and_fail_alone(target):
    """Threads' writes share transactions; a bad record fails alone (SAVEPOINT redo) on both backends."""
    integrity = _integrity_errors()
    with Catalog.open(target, writer=True) as cat:
        def work(i: int) -> str:
            entry = cat.begin("archive", f"f{i}".encode(), "copying")
            if i % 10 == 0:
                try:
                    cat.put(FileRecord(f"f{i}".encode(), "bogus-state"))
                except integrity:
                    return "rejected"
            cat.end(entry, record=FileRecord(f"f{i}".encode(), "archived"))
            return "ok"

        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(work, range(200)))
        assert outcomes.count("rejected") == 20
        assert {e.path for e in cat.open_entries()} == {f"f{i}".encode() for i in range(0, 200, 10)}
    with Catalog.open(target) as reader:
        assert reader.counts()["archived"][0] == 180


def test_writers_on_an_event_loop_commit_together_and_fail_alone(target):
    integrity = _integrity_errors()
    with Catalog.open(target, writer=True) as cat:
        async def work(i: int) -> str:
            entry = await cat.begin_async("archive", f"f{i}".encode(), "copying")
            if i % 10 == 0:
                try:
                    await cat.put_async(FileRecord(f"f{i}".encode(), "bogus-state"))
                except integrity:
                    return "rejected"
            await cat.end_async(entry, record=FileRecord(f"f{i}".encode(), "archived"))
            return "ok"

        async def main() -> list[str]:
            return await asyncio.gather(*(work(i) for i in range(100)))

        assert asyncio.run(main()).count("rejected") == 10
        [entry] = [e.id for e in cat.open_entries() if e.path == b"f0"]  # (ids need not follow gather order)
        new = asyncio.run(cat.end_then_begin_async(entry, FileRecord(b"f0", "archived"), {"checksum": "c"},
                                                   "release", "stubbing"))
        assert [e.id for e in cat.open_entries() if e.path == b"f0"] == [new]
    with Catalog.open(target) as reader:
        assert reader.counts()["archived"][0] == 91
        assert reader.history(b"f0")[1].detail == {"checksum": "c"}


BEGIN_THEN_DIE = textwrap.dedent("""
    import os, signal, sys
    from tiering.catalog import Catalog
    cat = Catalog.open(sys.argv[1], writer=True, purpose="doomed mover")
    entry = cat.begin("archive", b"big.bin", "copying", tier="hdd", tmp="t1")
    print(entry, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # the instant begin returned: nothing else ran
""")


def test_a_begin_that_returned_survives_the_writer_being_killed(target):
    """The journal's promise: ``begin`` is durable before anything is touched (SQLite FULL sync;
    PostgreSQL synchronous_commit = on)."""
    out = subprocess.run([sys.executable, "-c", BEGIN_THEN_DIE, str(target)], capture_output=True, text=True)
    assert out.returncode == -signal.SIGKILL, out.stderr
    with Catalog.open(target, writer=True) as cat:  # the dead writer's lock is gone too
        [entry] = cat.open_entries()
    assert (entry.id, entry.path, entry.step, entry.detail) == (int(out.stdout), b"big.bin", "copying", {"tmp": "t1"})


CYCLE_HOLDER = textwrap.dedent("""
    import sys, time
    from tiering.catalog import Catalog
    cat = Catalog.open(sys.argv[1], writer=True, purpose="run")
    print("held", flush=True)
    time.sleep(60)
""")


def test_a_second_cycle_gets_a_clear_error_other_writers_run_beside_it_and_the_lock_dies_with_its_holder(db):
    """On a server the cycle lock (``run``, the daemon) is an advisory lock held by the cycle's session; the
    other writers (archive, release, restore ...) are many at once, file by file under claims."""
    Catalog.open(db, writer=True).close()
    proc = subprocess.Popen([sys.executable, "-c", CYCLE_HOLDER, db], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        for purpose in ("run", "daemon"):
            with pytest.raises(CatalogBusyError) as err:
                Catalog.open(db, writer=True, purpose=purpose)
            assert f"pid {proc.pid}" in str(err.value) and "(run)" in str(err.value) and exit_status(err.value) == 4
            assert "pg-test-secret" not in str(err.value) and "***" in str(err.value)
        with Catalog.open(db, writer=True, purpose="archive") as other, Catalog.open(db) as reader:
            other.put(FileRecord(b"beside", "resident"))  # a second writer is not blocked, nor are readers
            assert reader.counts() == {"resident": (1, 0)}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    deadline = time.monotonic() + 5
    while True:  # the lock died with its holder's session
        try:
            Catalog.open(db, writer=True, purpose="run").close()
            break
        except CatalogBusyError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_reader_of_a_database_without_tables_gets_a_clear_error(pg_url):
    with pytest.raises(UserError, match="no tables yet"):
        Catalog.open(pg_url)


def test_a_catalog_from_a_newer_tiering_is_refused(pg_url):
    import psycopg

    Catalog.open(pg_url, writer=True).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE tiering_schema SET version = version + 1")
    for writer in (True, False):
        with pytest.raises(UserError, match="newer than this tiering"):
            Catalog.open(pg_url, writer=writer)


def _one_line_error(url: str, kind: type[Exception]) -> Exception:
    with pytest.raises(kind) as err:
        Catalog.open(url, writer=True)
    text = str(err.value)
    assert "\n" not in text and "pg-test-secret" not in text and "wrong-secret" not in text, text
    return err.value


def test_bad_url_down_server_and_refused_credentials_are_one_line_errors(pg_server):
    from conftest import closed_port

    bad = _one_line_error(f"postgresql://tiering:pg-test-secret@127.0.0.1:notaport/x", ConfigError)
    assert exit_status(bad) == 2 and "***" in str(bad)
    down = _one_line_error(f"postgresql://tiering:pg-test-secret@127.0.0.1:{closed_port()}/x", CatalogError)
    assert exit_status(down) == 1 and "cannot be reached" in str(down)
    refused = _one_line_error(pg_server.url(password="wrong-secret"), UserError)
    assert exit_status(refused) == 2 and "password authentication failed" in str(refused)
    missing = _one_line_error(pg_server.url("no_such_db"), UserError)
    assert "does not exist" in str(missing)


def test_a_server_that_goes_away_mid_run_is_a_catalog_error(pg_url):
    """A write or read after the server dropped our sessions: ``CatalogError`` (exit 1), one line, and no
    write is acknowledged that was not committed."""
    import psycopg

    with Catalog.open(pg_url, writer=True) as cat:
        cat.put(FileRecord(b"kept", "resident"))
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(CatalogError, match="cannot be written") as err:
            cat.begin("archive", b"lost", "copying")
        assert exit_status(err.value) == 1 and "\n" not in str(err.value)
        with pytest.raises(CatalogError, match="cannot be read"):
            cat.get(b"kept")
    with Catalog.open(pg_url) as reader:
        assert reader.get(b"kept") is not None and reader.open_entries() == []
