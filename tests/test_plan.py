"""The planner: a pure function of (inventory, catalog, policy, now, usage)."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from tiering.catalog import Catalog, FileRecord
from tiering.core.inventory import SCHEMA
from tiering.plan import Usage, make_plan
from tiering.plan.explain import explain_path, find_row
from tiering.policy import parse_policy

NS = 10**9
DAY = 86400 * NS
NOW = 1_800_000_000 * NS
GiB = 2**30


def entry(path: bytes, *, size=1000, atime_days=100.0, mtime_days=100.0, nlink=1, type_="file", ino=None, **kw):
    return dict(path=path, type=type_, size=size, blocks=kw.pop("blocks", (size + 511) // 512), mode=0o100644,
                uid=kw.pop("uid", 1000), gid=100, atime_ns=NOW - int(atime_days * DAY), mtime_ns=NOW - int(mtime_days * DAY),
                ctime_ns=NOW - int(mtime_days * DAY), ino=ino if ino is not None else abs(hash(path)) % 10**9,
                nlink=nlink)


def inventory(*rows, batch=2):
    table = pa.Table.from_pylist(list(rows), schema=SCHEMA)
    return table.to_batches(max_chunksize=batch)


def policy(text: str):
    return parse_policy(text, "test.toml", None)


def plan_of(rows, text, catalog=None, usage=None):
    return make_plan(inventory(*rows), catalog, policy(text), NOW, usage=usage, default_tier="cap")


def actions(plan):
    return [(r["path"], r["action"], r["rule"]) for r in plan.rows()]


def test_first_matching_rule_decides_and_rule_order_is_file_order():
    text = """
    [[rules]]
    name = "keep-ckpt"
    match = 'path ~ "ckpt/**"'
    action = "exclude"
    [[rules]]
    name = "old"
    match = 'atime_age > 30d'
    action = "release"
    [[rules]]
    name = "older"
    match = 'atime_age > 60d'
    action = "archive"
    """
    p = plan_of([entry(b"ckpt/a.pt"), entry(b"data/x", atime_days=90), entry(b"data/y", atime_days=10)], text)
    assert actions(p) == [(b"data/x", "release", "old")]
    assert p.counts["keep-ckpt: excluded"] == 1
    row = next(p.rows())
    assert row["reason"] == "atime_age 90d > 30d (rule old)" and row["target_tier"] == "cap" and row["size"] == 1000


def test_safety_window_and_hard_links_are_skipped_and_counted():
    text = """
    [[rules]]
    name = "all"
    match = 'size >= 0'
    action = "archive"
    [safety]
    min_age = "1h"
    """
    rows = [entry(b"fresh", mtime_days=0.01), entry(b"linked", nlink=2), entry(b"ok"), entry(b"dir", type_="dir")]
    p = plan_of(rows, text)
    assert actions(p) == [(b"ok", "archive", "all")]
    assert p.counts["skipped: modified within the safety window"] == 1
    assert p.counts["skipped: hard-linked"] == 1
    assert p.counts["files"] == 3


def test_actions_that_change_nothing_are_dropped(tmp_path):
    text = """
    [[rules]]
    name = "arch"
    match = 'path ~ "a/**"'
    action = "archive"
    [[rules]]
    name = "rest"
    match = 'path ~ "r/**"'
    action = "restore"
    """
    rows = [entry(b"a/new", ino=1), entry(b"a/done", ino=2, size=50), entry(b"r/stub", ino=3, size=0, blocks=0),
            entry(b"r/resident", ino=4)]
    with Catalog.open(tmp_path / "c.db", writer=True) as cat:
        cat.put(FileRecord(b"a/done", "archived", tier="cap", size=50, mtime_ns=NOW - 100 * DAY, ino=2))
        cat.put(FileRecord(b"r/stub", "released", tier="cap", size=7 * GiB, mtime_ns=NOW - 100 * DAY, ino=3))
        state = cat.state_table(time.time(), 86400.0)
    p = plan_of(rows, text, catalog=state)
    assert actions(p) == [(b"r/stub", "restore", "rest"), (b"a/new", "archive", "arch")]  # restores come first
    restore = next(p.rows())
    assert restore["size"] == 7 * GiB and restore["target_tier"] == "cap"  # a stub reads as its true size
    assert p.counts["arch: already done"] == 1 and p.counts["rest: already done"] == 1


def test_a_changed_archived_file_reads_as_dirty(tmp_path):
    text = """
    [[rules]]
    name = "redo"
    match = 'state == "dirty"'
    action = "archive"
    """
    with Catalog.open(tmp_path / "c.db", writer=True) as cat:
        cat.put(FileRecord(b"same", "archived", size=1000, mtime_ns=NOW - 100 * DAY, ino=1))
        cat.put(FileRecord(b"changed", "archived", size=999, mtime_ns=NOW - 100 * DAY, ino=2))
        state = cat.state_table(time.time(), 86400.0)
    p = plan_of([entry(b"same", ino=1), entry(b"changed", ino=2)], text, catalog=state)
    assert actions(p) == [(b"changed", "archive", "redo")]


def test_caps_keep_the_oldest_first():
    text = """
    [[rules]]
    name = "capped"
    match = 'size > 0'
    action = "release"
    max_files = 3
    max_bytes = "2500B"
    """
    rows = [entry(f"f{i}".encode(), size=1000, atime_days=100 - i, ino=i) for i in range(6)]
    p = plan_of(rows, text)
    assert [a[0] for a in actions(p)] == [b"f0", b"f1"]  # 3 files allowed, but only 2,000 of 2,500 bytes fit
    assert p.counts["capped: over the cap, left for the next run"] == 4


WATERMARK = """
[watermark]
high = "80%"
low = "50%"
order = "{order}"
{extra}
"""


@pytest.mark.parametrize("order,extra,expected", [
    ("lru", "", [b"oldest", b"old"]),
    ("heat", "", [b"cold", b"oldest"]),
    ("expression", "weight = 'size * atime_age'", [b"big", b"oldest"]),
])
def test_watermark_takes_candidates_in_order_until_low(tmp_path, order, extra, expected):
    rows = [entry(b"oldest", size=10 * GiB, atime_days=400, ino=1), entry(b"old", size=10 * GiB, atime_days=300, ino=2),
            entry(b"cold", size=10 * GiB, atime_days=5, ino=3), entry(b"big", size=40 * GiB, atime_days=200, ino=4),
            entry(b"pinned", size=90 * GiB, atime_days=999, ino=5)]
    with Catalog.open(tmp_path / "c.db", writer=True) as cat:
        for i, p in enumerate([b"oldest", b"old", b"big"]):
            cat.add_heat([p] * (i + 2), now=time.time(), half_life=1e9)
        cat.set_pinned([b"pinned"], True)
        state = cat.state_table(time.time(), 1e9)
    usage = Usage(total=100 * GiB, used=65 * GiB)  # 65% < 80%: nothing to do
    assert actions(plan_of(rows, WATERMARK.format(order=order, extra=extra), state, usage)) == []
    usage = Usage(total=100 * GiB, used=85 * GiB)  # need 35 GiB freed to reach 50%
    p = plan_of(rows, WATERMARK.format(order=order, extra=extra), state, usage)
    chosen = [a[0] for a in actions(p) if a[2] == "watermark"]
    if order == "expression":
        assert chosen == [b"big"]  # 40 GiB alone reaches the mark
    else:
        assert chosen[:2] == expected and sum(10 for _ in chosen) >= 30
    first = next(p.rows())
    assert first["reason"].startswith("watermark 85% > 80%") and "rank 1" in first["reason"]


def test_watermark_counts_bytes_rules_already_free():
    text = """
    [[rules]]
    name = "rel"
    match = 'path ~ "big"'
    action = "release"
    """ + WATERMARK.format(order="lru", extra="")
    rows = [entry(b"big", size=40 * GiB, atime_days=1, ino=1), entry(b"x", size=10 * GiB, atime_days=400, ino=2)]
    p = plan_of(rows, text, usage=Usage(total=100 * GiB, used=85 * GiB))
    assert actions(p) == [(b"big", "release", "rel")]  # 40 GiB from the rule already reaches 45%
    assert p.freed == 40 * GiB


def test_non_utf8_paths_and_explain():
    text = """
    [[rules]]
    name = "jpgs"
    match = 'suffix == ".jpg" and atime_age > 30d'
    action = "archive"
    """
    odd = b"imgs/\xff\xfe-caf\xc3\xa9.jpg"
    p = plan_of([entry(odd, atime_days=41)], text)
    assert actions(p) == [(odd, "archive", "jpgs")]
    row = find_row(inventory(entry(odd, atime_days=41)), None, odd)
    lines = explain_path(row, odd, policy(text), NOW)
    assert "MATCHES" in lines[-1] and "atime_age 41d > 30d" in lines[-1]
    assert "not in the inventory" in explain_path(find_row(inventory(entry(b"a")), None, b"zz"), b"zz", policy(text), NOW)[0]


def test_a_hard_linked_stub_is_skipped_like_any_hard_linked_file(tmp_path):
    """Found by the oracle (test_policy_oracle): a released stub that someone hard-linked was
    planned for restore, though hard-linked files are never touched (a restore renames a new
    file over one name and leaves the other a stub)."""
    text = """
    [[rules]]
    name = "back"
    match = 'true'
    action = "restore"
    """
    with Catalog.open(tmp_path / "c.db", writer=True) as cat:
        for ino, p in ((1, b"stub"), (2, b"linked-stub")):
            cat.put(FileRecord(p, "released", tier="cap", size=5000, mtime_ns=NOW - 100 * DAY, ino=ino))
        state = cat.state_table(time.time(), 86400.0)
    rows = [entry(b"stub", size=0, ino=1), entry(b"linked-stub", size=0, ino=2, nlink=2)]
    p = plan_of(rows, text, catalog=state)
    assert actions(p) == [(b"stub", "restore", "back")]
    assert p.counts["skipped: hard-linked"] == 1
    row = find_row(inventory(*rows), state, b"linked-stub")
    assert "  safety: hard-linked (nlink 2): skipped" in explain_path(row, b"linked-stub", policy(text), NOW)


def test_a_pin_rule_brings_back_a_pinned_file_that_was_released(tmp_path):
    """Found by the oracle: a pin keeps a file on the hot tier, restoring it if released
    (policies/README.md); a stub already flagged pinned was counted "already done" and stayed a stub."""
    text = """
    [[rules]]
    name = "keep"
    match = 'true'
    action = "pin"
    """
    with Catalog.open(tmp_path / "c.db", writer=True) as cat:
        cat.put(FileRecord(b"stub", "released", tier="cap", size=5000, mtime_ns=NOW - 100 * DAY, ino=1, pinned=True))
        cat.put(FileRecord(b"hot", "resident", ino=2, pinned=True))
        state = cat.state_table(time.time(), 86400.0)
    p = plan_of([entry(b"stub", size=0, ino=1), entry(b"hot", ino=2)], text, catalog=state)
    assert actions(p) == [(b"stub", "pin", "keep")]
    assert p.counts["keep: already done"] == 1


@pytest.mark.parametrize("listed", [(b"z", b"a"), (b"a", b"z")])
def test_ties_do_not_depend_on_scan_order(listed):
    """Found by the oracle: two hard links (one inode, one atime) under a cap of one file; the one
    kept was whichever the scan listed first, and a scan with several workers lists in any order."""
    text = """
    [[rules]]
    name = "one"
    match = 'atime_age > 50d'
    action = "archive"
    max_files = 1
    [watermark]
    high = "50%"
    low = "49%"
    [safety]
    skip_hardlinks = false
    """
    rows = [entry(p, ino=7, nlink=2) for p in listed] + [entry(p, ino=8, nlink=2, atime_days=1) for p in listed]
    p = plan_of(rows, text, usage=Usage(total=1000, used=1000))
    assert [(a[0], a[2]) for a in actions(p)] == [(b"a", "one"), (b"a", "watermark")]
