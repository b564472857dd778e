"""Inode numbers past 2**63 (a FUSE filesystem such as SeaweedFS hands out the whole unsigned 64-bit range):
the catalog keeps them exactly and the planner compares them with the scan's uint64 column."""

from __future__ import annotations

import time

from test_plan import DAY, NOW, actions, entry, plan_of

from tiering.catalog import Catalog, FileRecord

HIGH = 2**64 - 5  # as SeaweedFS gives: above SQLite's signed 64-bit INTEGER


def test_the_catalog_keeps_an_inode_past_2_63_exactly(tmp_path):
    with Catalog.open(tmp_path / "c.db", writer=True) as cat:
        cat.put(FileRecord(b"f", "archived", size=10, mtime_ns=1, ctime_ns=1, ino=HIGH))
        cat.put(FileRecord(b"g", "archived", size=10, mtime_ns=1, ctime_ns=1, ino=2**63 - 1))
        assert cat.get(b"f").ino == HIGH
        assert cat.get(b"g").ino == 2**63 - 1
        assert {r.path: r.ino for r in cat.records()} == {b"f": HIGH, b"g": 2**63 - 1}


def test_an_archived_file_with_an_inode_past_2_63_is_clean_until_its_inode_changes(tmp_path):
    text = """
    [[rules]]
    name = "redo"
    match = 'state == "dirty"'
    action = "archive"
    """
    with Catalog.open(tmp_path / "c.db", writer=True) as cat:
        cat.put(FileRecord(b"same", "archived", size=1000, mtime_ns=NOW - 100 * DAY, ino=HIGH))
        cat.put(FileRecord(b"replaced", "archived", size=1000, mtime_ns=NOW - 100 * DAY, ino=HIGH - 1))
        state = cat.state_table(time.time(), 86400.0)
    p = plan_of([entry(b"same", ino=HIGH), entry(b"replaced", ino=2**63 + 7)], text, catalog=state)
    assert actions(p) == [(b"replaced", "archive", "redo")]
