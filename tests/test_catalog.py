"""The catalog on a real SQLite file: schema, states, journal, heat, the writer lock."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from tiering.catalog import Catalog, CatalogBusyError, FileRecord
from tiering.catalog.lock import read_holder
from tiering.catalog.schema import SCHEMA_VERSION
from tiering.core.errors import UserError


@pytest.fixture
def db(tmp_path):
    return tmp_path / "state" / "catalog.db"


def test_new_catalog_is_created_at_the_current_schema_in_wal_mode(db):
    with Catalog.open(db, writer=True) as cat:
        assert cat.schema_version == SCHEMA_VERSION
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"files", "journal", "runs"} <= tables
    conn.close()


def test_catalog_from_a_newer_tiering_is_refused(db):
    Catalog.open(db, writer=True).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(UserError, match="newer than this tiering"):
        Catalog.open(db, writer=True)
    with pytest.raises(UserError, match="newer"):
        Catalog.open(db)


def test_reader_needs_an_existing_catalog_and_garbage_is_one_clear_error(db, tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        Catalog.open(db)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UserError, match="cannot be opened") as err:
        Catalog.open(junk, writer=True)
    assert "\n" not in str(err.value)


def test_a_reader_racing_the_writer_that_creates_the_catalog_gets_a_clear_error(db):
    db.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(db).close()  # the instant after a writer created the file, before its tables
    with pytest.raises(UserError, match="still being created"):
        Catalog.open(db)
    Catalog.open(db, writer=True).close()
    with Catalog.open(db) as cat:
        assert list(cat.records()) == []


def test_records_round_trip_with_exact_path_bytes(db):
    odd = b"dir/new\nline-\xff\xfe.bin"
    with Catalog.open(db, writer=True) as cat:
        rec = FileRecord(odd, "archived", tier="hdd", object_key="dir/new%0Aline-%FF%FE.bin", checksum="blake3:ab",
                         size=123, mtime_ns=5, ctime_ns=6, ino=7, archived_at=1.5)
        cat.put(rec)
        cat.put(FileRecord(b"a", "released", size=10))
        cat.put(FileRecord(b"b", "released", size=20))
        got = cat.get(odd)
        assert got.path == odd and got.object_key == rec.object_key and got.size == 123 and got.ino == 7
        assert [r.path for r in cat.records()] == sorted([odd, b"a", b"b"])
        assert [r.path for r in cat.records("released")] == [b"a", b"b"]
        assert cat.counts() == {"archived": (1, 123), "released": (2, 30)}
        cat.forget(b"a")
        assert cat.get(b"a") is None


def test_invalid_state_is_rejected_by_the_schema(db):
    with Catalog.open(db, writer=True) as cat, pytest.raises(sqlite3.IntegrityError):
        cat.put(FileRecord(b"x", "half-archived"))


def test_journal_tracks_open_actions_until_they_end(db):
    with Catalog.open(db, writer=True) as cat:
        first = cat.begin("archive", b"f1", "copying", tier="hdd", object_key="f1", tmp="t1")
        second = cat.begin("restore", b"f2", "fetching", tier="hdd", tmp="t2")
        cat.step(first, "copied", checksum="blake3:00")
        entries = cat.open_entries()
        assert [(e.id, e.step, e.status) for e in entries] == [(first, "copied", "open"), (second, "fetching", "open")]
        assert entries[0].detail == {"tmp": "t1", "checksum": "blake3:00"}
        cat.end(first, record=FileRecord(b"f1", "archived", tier="hdd"))
        cat.end(second, "rolled_back", reason="crash")
        assert cat.open_entries() == []
        assert cat.get(b"f1").state == "archived"
        assert [e.status for e in cat.history(b"f2")] == ["rolled_back"]
        assert cat.history(b"f2")[0].ended_at is not None


def test_heat_decays_with_the_half_life(db):
    with Catalog.open(db, writer=True) as cat:
        cat.add_heat([b"hot", b"warm"], now=0.0, half_life=100.0)
        cat.add_heat([b"hot"], now=100.0, half_life=100.0)
        table = {r["path"]: r for r in cat.state_table(now=200.0, half_life=100.0).to_pylist()}
    assert table[b"hot"]["heat"] == pytest.approx(0.75)  # (1 * 0.5 + 1) * 0.5
    assert table[b"warm"]["heat"] == pytest.approx(0.25)
    assert table[b"hot"]["state"] == "resident" and table[b"hot"]["pinned"] is False


def test_pins_are_kept_and_listed(db):
    with Catalog.open(db, writer=True) as cat:
        cat.put(FileRecord(b"ckpt", "archived", tier="hdd"))
        cat.set_pinned([b"ckpt", b"new"], True)
        assert cat.get(b"ckpt").pinned and cat.get(b"ckpt").state == "archived"
        assert cat.get(b"new").pinned and cat.get(b"new").state == "resident"


def test_pinned_and_heat_only_records_count_their_true_size(db):
    """Issue 15.7: a pinned (or merely read) resident file counted 0 bytes; an archived one keeps its own size."""
    with Catalog.open(db, writer=True) as cat:
        cat.put(FileRecord(b"ckpt", "archived", tier="hdd", size=500))
        cat.set_pinned([b"ckpt", b"new"], True, sizes={b"ckpt": 0, b"new": 123})
        cat.add_heat([b"read", b"new"], now=0.0, half_life=100.0, sizes={b"read": 40, b"new": 124})
        cat.add_heat([b"read"], now=1.0, half_life=100.0)  # no size known this time: the last one stays
        assert cat.get(b"new").size == 124 and cat.get(b"read").size == 40 and cat.get(b"ckpt").size == 500
        assert cat.counts() == {"archived": (1, 500), "resident": (2, 164)}


def test_runs_are_recorded(db):
    with Catalog.open(db, writer=True) as cat:
        run = cat.start_run("apply")
        cat.finish_run({"archived": 3})
        last = cat.last_run()
    assert last["id"] == run and last["summary"] == {"archived": 3} and last["pid"] == os.getpid()


HOLDER = textwrap.dedent("""
    import sys, time
    from tiering.catalog import Catalog
    cat = Catalog.open(sys.argv[1], writer=True, purpose="test holder")
    print("held", flush=True)
    time.sleep(60)
""")


@contextlib.contextmanager
def writer_held_by_another_process(target) -> Iterator[subprocess.Popen]:
    """A process holding ``target``'s writer lock (``HOLDER``) while the block runs, SIGKILLed after it; then
    waits (up to 5 s) until a writer can open the catalog again: the lock died with its holder."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    deadline = time.monotonic() + 5
    while True:
        try:
            Catalog.open(target, writer=True).close()
            break
        except CatalogBusyError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_second_writer_gets_a_clear_error_and_the_lock_dies_with_its_holder(db):
    with writer_held_by_another_process(db) as proc:
        with pytest.raises(CatalogBusyError) as err:
            Catalog.open(db, writer=True)
        assert f"pid {proc.pid}" in str(err.value) and "test holder" in str(err.value)
        assert read_holder(db.with_name(db.name + ".lock"))["pid"] == proc.pid
        with Catalog.open(db) as reader:  # readers are never blocked
            assert reader.counts() == {}
    assert read_holder(db.with_name(db.name + ".lock")) is None


def test_concurrent_writers_are_group_committed_and_fail_alone(db):
    from concurrent.futures import ThreadPoolExecutor

    with Catalog.open(db, writer=True) as cat:
        def work(i: int) -> str:
            entry = cat.begin("archive", f"f{i}".encode(), "copying")
            if i % 10 == 0:
                try:
                    cat.put(FileRecord(f"f{i}".encode(), "bogus-state"))
                except sqlite3.IntegrityError:
                    return "rejected"
            cat.end(entry, record=FileRecord(f"f{i}".encode(), "archived"))
            return "ok"

        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(work, range(200)))
        assert outcomes.count("rejected") == 20
        assert cat.open_entries() == [e for e in cat.open_entries() if e.path.endswith(b"0")]
        assert cat.counts()["archived"][0] == 180
    with Catalog.open(db) as reader:  # what the committer acknowledged is on disk
        assert reader.counts()["archived"][0] == 180


def test_read_only_catalog_refuses_writes(db):
    Catalog.open(db, writer=True).close()
    with Catalog.open(db) as reader, pytest.raises(UserError, match="read-only"):
        reader.put(FileRecord(b"x", "resident"))


def test_a_state_change_never_rolls_back_heat_or_pin(db):
    with Catalog.open(db, writer=True) as cat:
        cat.put(FileRecord(b"f", "resident"))
        stale = cat.get(b"f")  # the mover reads the record, then works for a while...
        cat.add_heat([b"f"], now=100.0, half_life=1e9)  # ...while the daemon counts reads
        cat.set_pinned([b"f"], True)
        from dataclasses import replace

        cat.put(replace(stale, state="archived", tier="hdd"))
        rec = cat.get(b"f")
    assert (rec.state, rec.tier, rec.pinned) == ("archived", "hdd", True)
    assert rec.heat == pytest.approx(1.0)


def test_writers_on_an_event_loop_commit_together_and_fail_alone(db):
    import asyncio

    with Catalog.open(db, writer=True) as cat:
        async def work(i: int) -> str:
            entry = await cat.begin_async("archive", f"f{i}".encode(), "copying")
            if i % 10 == 0:
                try:
                    await cat.put_async(FileRecord(f"f{i}".encode(), "bogus-state"))
                except sqlite3.IntegrityError:
                    return "rejected"
            await cat.end_async(entry, record=FileRecord(f"f{i}".encode(), "archived"))
            return "ok"

        async def main() -> list[str]:
            return await asyncio.gather(*(work(i) for i in range(200)))

        outcomes = asyncio.run(main())
        assert outcomes.count("rejected") == 20
        assert {e.path for e in cat.open_entries()} == {f"f{i}".encode() for i in range(0, 200, 10)}
        entry = cat.open_entries()[0].id
        # end + begin in one transaction: both or neither
        new = asyncio.run(cat.end_then_begin_async(entry, FileRecord(b"f0", "archived"), {"checksum": "c"},
                                                   "release", "stubbing"))
        assert [e.id for e in cat.open_entries() if e.path == b"f0"] == [new]
    with Catalog.open(db) as reader:  # what the loop's commits acknowledged is on disk
        assert reader.counts()["archived"][0] == 181
        assert reader.history(b"f0")[1].detail == {"checksum": "c"}
