"""The inventory kept current from filesystem-wide fanotify events (``tiering.daemon.changes``) as delta
partitions merged by ``Snapshot`` (``tiering.scan.delta``): after a random mix of changes, the merged
inventory equals a fresh scan, on each filesystem that delivers the events; a dropped event or a lost
listener makes the next plan scan in full."""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest

from conftest import is_root, write_config

pytestmark = pytest.mark.skipif(not is_root(), reason="fanotify filesystem marks need root")

#: What a merged row must share with a fresh scan's: all of it (the plan's columns and more), but for the atime of a
#: directory or symlink, which moves whenever something lists or follows it (reads are not change events,
#: ``tiering.scan.delta``; the mix never reads a file).
COLUMNS = ["path", "type", "size", "blocks", "mode", "uid", "gid", "atime_ns", "mtime_ns", "ctime_ns", "ino", "nlink"]
ODD = [b"line\nbreak", b"\xff\xfe-latin", b"sp ace", b"caf\xc3\xa9", b"-dash"]


def _mount(kind: str, where: Path) -> None:
    where.mkdir()
    if kind == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(where)], check=True)
    else:  # xfs on a sparse loop file (its smallest size is 300 MiB)
        if shutil.which("mkfs.xfs") is None:
            pytest.skip("mkfs.xfs is not installed (xfsprogs)")
        image = where.with_suffix(".img")
        with open(image, "wb") as f:
            f.truncate(320 << 20)
        subprocess.run(["mkfs.xfs", "-q", str(image)], check=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(where)], check=True)


@pytest.fixture(params=["ext4", "tmpfs", "xfs"])
def hot(request, tmp_path):
    """An empty hot tier on a real filesystem of its own: ext4 (the session's loop image), tmpfs, or xfs.
    (Not this machine's root ext4: a filesystem mark there sees every change of every process.)"""
    if request.param == "ext4":
        where = request.getfixturevalue("ext4_loop") / f"hot-{tmp_path.name}"
        where.mkdir()
        yield where
        shutil.rmtree(where, ignore_errors=True)
        return
    mnt = tmp_path / "hot"
    _mount(request.param, mnt)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _entries(root: bytes) -> tuple[list[bytes], list[bytes]]:
    files, dirs = [], []
    for top, subdirs, names in os.walk(root):
        dirs += [os.path.join(top, d) for d in subdirs]
        files += [os.path.join(top, n) for n in names]
    return files, dirs


def _seed_tree(root: Path, rng: random.Random) -> None:
    for d in range(6):
        sub = root / f"d{d}" / f"e{d % 2}"
        sub.mkdir(parents=True)
        for f in range(8):
            (sub / f"f{f}").write_bytes(os.urandom(rng.randrange(0, 3000)))
    (root / os.fsdecode(ODD[0])).write_bytes(b"x")


def _mutate(root: Path, rng: random.Random, steps: int) -> None:
    """A random mix of creates, writes, chmod/utime, renames of files and directories, deletes, odd names."""
    base = os.fsencode(root)
    for _ in range(steps):
        files, dirs = _entries(base)
        where = rng.choice([base, *dirs])
        op = rng.choice(["create", "create", "mkdir", "write", "chmod", "utime", "rename_file", "rename_dir",
                         "delete", "rmtree", "symlink", "truncate"])
        n = rng.randrange(10**9)
        name = rng.choice(ODD) + b"-%d" % n if rng.random() < 0.3 else b"n%d" % n
        try:
            if op == "create":
                with open(os.path.join(where, name), "wb") as f:
                    f.write(os.urandom(rng.randrange(0, 5000)))
            elif op == "mkdir":
                os.mkdir(os.path.join(where, name))
            elif op == "symlink":
                os.symlink(b"target-" + name, os.path.join(where, name))
            elif op in ("write", "truncate", "chmod", "utime", "rename_file", "delete") and files:
                f = rng.choice(files)
                if os.path.islink(f):
                    continue
                if op == "write":
                    with open(f, "ab") as out:
                        out.write(os.urandom(rng.randrange(1, 9000)))
                elif op == "truncate":
                    os.truncate(f, rng.randrange(0, 100))
                elif op == "chmod":
                    os.chmod(f, rng.choice([0o600, 0o644, 0o755]))
                elif op == "utime":
                    os.utime(f, ns=(rng.randrange(1, 2**40), rng.randrange(1, 2**40)))
                elif op == "rename_file":
                    os.rename(f, os.path.join(where, name))
                else:
                    os.unlink(f)
            elif op in ("rename_dir", "rmtree") and dirs:
                d = rng.choice(dirs)
                if op == "rmtree":
                    shutil.rmtree(d)
                elif not (where + b"/").startswith(d + b"/"):
                    os.rename(d, os.path.join(where, name))
                    if rng.random() < 0.5:  # and at once a change inside its new place
                        with open(os.path.join(where, name, b"after-move"), "wb") as f:
                            f.write(b"moved")
        except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError):
            pass  # (a name already taken, or gone in between: the mix goes on)


def _rows(table: pa.Table, columns: list[str]) -> list[tuple]:
    table = table.select(columns)
    rows = [tuple(r.values()) for r in table.to_pylist()]
    kinds = table["type"].cast(pa.string()).to_pylist()
    if "atime_ns" in columns:  # listing a directory or following a symlink is a read, not a change event
        at = columns.index("atime_ns")
        rows = [r[:at] + (None,) + r[at + 1:] if k != "file" else r for r, k in zip(rows, kinds)]
    return sorted(rows)


def _followed(hot: Path, buckets: int):
    from tiering.daemon.changes import Follower
    from tiering.scan.snapshot import new_snapshot_path, write_snapshot

    follower = Follower(hot)
    follower.start()
    snapshot = new_snapshot_path(hot.parent / f"inventory-{hot.name}")
    snapshot.parent.mkdir(exist_ok=True)
    follower.begin_scan()
    write_snapshot(hot, snapshot, jobs=1, buckets=buckets)
    follower.rebase(snapshot, buckets)
    return follower, snapshot


@pytest.mark.parametrize("buckets", [1, 4])
def test_merged_inventory_equals_a_fresh_scan(hot, buckets):
    from tiering.scan import Scan, Snapshot

    rng = random.Random(f"{hot}-{buckets}")
    _seed_tree(hot, rng)
    follower, snapshot = _followed(hot, buckets)
    try:
        for _ in range(3):  # three deltas, the later ones over paths the earlier ones wrote
            _mutate(hot, rng, 60)
            assert follower.listener.catch_up()
            assert follower.flush() is None
        before = _rows(Snapshot(snapshot, deltas=False).partition(0) if buckets == 1 else
                       pa.concat_tables(Snapshot(snapshot, deltas=False).partition(b) for b in range(buckets)),
                       COLUMNS)
        merged = Snapshot(snapshot)
        assert len(list((snapshot.with_name(snapshot.name.removesuffix(".parquet") + ".deltas")).glob("0*"))) == 3
        with Scan(hot, jobs=1) as scan:
            fresh = pa.Table.from_batches(list(scan))
        assert _rows(pa.Table.from_batches(list(merged)), COLUMNS) == _rows(fresh, COLUMNS)
        assert before != _rows(fresh, COLUMNS)  # (the deltas did the work: the scanned snapshot is stale)
        whole = pa.concat_tables(merged.partition(b) for b in range(merged.buckets))
        assert _rows(whole, COLUMNS) == _rows(fresh, COLUMNS)
    finally:
        follower.close()


def test_many_deltas_are_folded_into_one_and_a_reader_listing_the_old_ones_still_reads_right(tmp_path, monkeypatch):
    from tiering.scan import Scan, Snapshot
    from tiering.scan import delta
    from tiering.scan.delta import Deltas, deltas_dir

    monkeypatch.setattr(delta, "MAX_DELTAS", 3)
    hot = tmp_path / "hot"
    hot.mkdir()
    rng = random.Random(7)
    _seed_tree(hot, rng)
    follower, snapshot = _followed(hot, 4)  # (its first delta: the changes during the scan, here none)
    try:
        for _ in range(3):
            _mutate(hot, rng, 40)
            assert follower.listener.catch_up() and follower.flush() is None
        listed = Deltas(snapshot)
        assert len(listed.parts) == 3
        _mutate(hot, rng, 40)
        assert follower.listener.catch_up() and follower.flush() is None  # the fourth: all folded into one
        assert [p.name for p in sorted(deltas_dir(snapshot).glob("0*"))] == ["00000005"]
        with Scan(hot, jobs=1) as scan:
            fresh = _rows(pa.Table.from_batches(list(scan)), COLUMNS)
        assert _rows(pa.Table.from_batches(list(Snapshot(snapshot))), COLUMNS) == fresh
        base = Snapshot(snapshot, deltas=False)
        stale_reader = pa.concat_tables(listed.apply(base.partition(b), b) for b in range(4))
        assert _rows(stale_reader, COLUMNS) == fresh
    finally:
        follower.close()


def test_a_dropped_event_makes_the_next_plan_scan_in_full(tmp_path):
    from tiering.config import load_config
    from tiering.daemon.changes import Follower
    from tiering.ops.workflow import pick_inventory
    from tiering.scan import Snapshot, fresh_snapshot
    from tiering.scan.delta import inventory_age, read_state

    cfg = write_config(tmp_path, 'url = "capacity"')
    hot = tmp_path / "hot"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(hot)], check=True)
    try:
        config = load_config(cfg)
        (hot / "kept").write_bytes(b"x")
        follower = Follower(hot)
        follower.start()
        try:
            follower.begin_scan()
            first = fresh_snapshot(config)
            follower.rebase(first, 1)
            assert pick_inventory(config).path == first.resolve()  # followed: current, no rescan
            with follower.listener._lock:  # the reader cannot enqueue: the kernel's queue (16384) overflows
                for i in range(21000):  # more than the queue holds plus one read of the reader
                    os.close(os.open(hot / f"f{i}", os.O_CREAT | os.O_WRONLY))
                assert follower.listener.catch_up(timeout=0.5) is False
            # (a marker made while the queue is still full is dropped too: try again once the reader drains it)
            assert any(follower.listener.catch_up() for _ in range(6))
            reason = follower.flush()
        finally:
            follower.close()
        assert reason is not None and "overflow" in reason
        state = read_state(first)
        assert state is not None and not state.complete and "overflow" in state.reason
        assert math.isinf(inventory_age(first, os.stat(first).st_mtime + 1))
        assert [r["path"] for r in Snapshot(first).partition(0).to_pylist()] == [b"kept"]  # as scanned
        picked = pick_inventory(config)
        assert picked.stale == first.resolve() and picked.path != first.resolve()
        assert "missed changes" in picked.describe()
        assert Snapshot(picked.path).partition(0).num_rows == 21001
    finally:
        subprocess.run(["umount", "-l", str(hot)], check=False)


def test_a_lost_listener_marks_the_deltas_incomplete(tmp_path):
    from tiering.scan.delta import read_state

    hot = tmp_path / "hot"
    hot.mkdir()
    (hot / "a").write_bytes(b"a")
    follower, snapshot = _followed(hot, 1)
    (hot / "b").write_bytes(b"b")
    assert follower.listener.catch_up()
    assert follower.flush() is None and read_state(snapshot).complete
    follower.listener.close()  # the reader is gone: changes from now on would go unseen
    (hot / "c").write_bytes(b"c")
    reason = follower.flush()
    assert reason is not None and "stopped" in reason
    assert not read_state(snapshot).complete


def test_a_new_full_scan_supersedes_older_deltas(tmp_path):
    from tiering.scan.delta import deltas_dir
    from tiering.scan.snapshot import mark_latest, new_snapshot_path, write_snapshot

    hot = tmp_path / "hot"
    hot.mkdir()
    follower, first = _followed(hot, 1)
    try:
        (hot / "x").write_bytes(b"x")
        assert follower.listener.catch_up() and follower.flush() is None
        assert deltas_dir(first).is_dir()
        second = new_snapshot_path(first.parent)
        write_snapshot(hot, second, jobs=1)
        mark_latest(second)
        assert not deltas_dir(first).exists()
        (hot / "y").write_bytes(b"y")
        assert follower.listener.catch_up()
        assert "newer full snapshot" in follower.flush()  # (the daemon then scans and follows the new one)
        assert not deltas_dir(first).exists()  # a superseded follower writes nothing more
    finally:
        follower.close()


def test_fuse_mount_refuses_the_filesystem_mark(fuse_hot):
    from tiering.access.fanotify import FanotifyUnsupported
    from tiering.daemon.changes import Follower

    follower = Follower(fuse_hot)
    with pytest.raises(FanotifyUnsupported, match="refuses fanotify marks"):
        follower.start()  # (so the daemon's "auto" keeps the periodic full scans there)
    follower.close()


@pytest.mark.parametrize("mode", ["auto", "fanotify"])
def test_on_fuse_the_daemon_falls_back_to_periodic_scans_or_refuses(fuse_hot, tmp_path, mode, caplog):
    from unattended import write_setup

    from tiering.config import load_config
    from tiering.core.errors import UserError
    from tiering.daemon.service import Daemon
    from tiering.ops.workflow import policy_for

    cfg = write_setup(tmp_path, '[[rules]]\nname = "none"\nmatch = "false"\naction = "exclude"\n',
                      f'changes = "{mode}"\n', hot=fuse_hot)
    config = load_config(cfg)
    daemon = Daemon(config, policy_for(config))
    if mode == "fanotify":
        with pytest.raises(UserError, match="no filesystem-wide events") as info:
            daemon._follow()
        assert "\n" not in str(info.value)
        return
    with caplog.at_level("INFO", logger="tiering.daemon"):
        assert daemon._follow() is None
    assert "the inventory stays current by a full scan every 900s" in caplog.text


def test_changes_key_is_checked(tmp_path):
    from tiering.config import load_config
    from tiering.core.errors import UserError

    cfg = write_config(tmp_path, 'url = "capacity"')
    cfg.write_text(cfg.read_text() + '[daemon]\nchanges = "inotify"\n')
    with pytest.raises(UserError, match="changes") as info:
        load_config(cfg)
    assert "\n" not in str(info.value)
    cfg.write_text(cfg.read_text().replace('"inotify"', '"rescan"'))
    assert load_config(cfg).daemon.changes == "rescan"


@pytest.mark.slow  # a real daemon process: its start-up alone is seconds on a busy 2-core machine
def test_the_daemon_keeps_the_latest_snapshot_current_without_rescanning(tmp_path):
    """Between full scans the deltas keep the latest snapshot current, and the next cycle plans on it
    merged with them (``[daemon] full_scan`` not yet due): one full scan in all."""
    from unattended import start, stop, wait_for, write_setup

    from tiering.scan import Snapshot

    hot = tmp_path / "hot"
    hot.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(hot)], check=True)
    log = tmp_path / "daemon.log"
    proc = None
    try:
        (hot / "old").write_bytes(b"o")
        cfg = write_setup(tmp_path, '[[rules]]\nname = "none"\nmatch = "false"\naction = "exclude"\n',
                          'debounce = "100ms"\nmetrics_port = 0\nrescan = "1s"\nchanges = "fanotify"\n'
                          'interval = "3s"\nfull_scan = "1h"\n', hot=hot)
        cfg.write_text(cfg.read_text() + '[guard]\nmode = "off"\n')
        proc = start("daemon", "-c", str(cfg), log=log)
        wait_for(lambda: proc.poll() is None and ": done in " in log.read_text(), 60, "the first cycle")
        latest = tmp_path / "state/inventory/latest.parquet"
        (hot / "new").mkdir()
        (hot / "new/file").write_bytes(b"n" * 100)
        (hot / "old").unlink()

        def current() -> bool:
            return {r["path"] for r in Snapshot(latest).partition(0).to_pylist()} == {b"new", b"new/file"}

        wait_for(current, 20, "the new file in the merged inventory")
        time.sleep(1.5)  # past [daemon] rescan: still no second full scan while following
        assert len(list(latest.parent.glob("scan-*.parquet"))) == 1, log.read_text()
        assert "following changes" in log.read_text()
        wait_for(lambda: "and its change deltas (no full scan)" in log.read_text(), 30, "a cycle on the deltas")
        wait_for(lambda: log.read_text().count(": done in ") >= 2, 30, "that cycle's end")
        assert len(list(latest.parent.glob("scan-*.parquet"))) == 1, log.read_text()
    finally:
        if proc is not None:
            stop(proc)
        subprocess.run(["umount", "-l", str(hot)], check=False)
