"""Restore into the stub's own inode (for a reader whose open already resolved to it), the restore lock
shared by every restorer of a file, and the release hook the access guard marks directories from.

Real files, real processes as readers and lock holders, a posix and a SeaweedFS S3 tier (``mover``).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import closed_port, small_hot_tier, write_config

from tiering.catalog import Catalog
from tiering.config import load_config
from tiering.core.states import FileState
from tiering.mover import restorelock
from tiering.mover.ops import RESTORE_TMP_PREFIX, Mover
from tiering.mover.restorelock import Holder, holder_of, lock_path
from tiering.mover.stub import STUB_XATTR, is_stub
from tiering.stores.keys import encode_key

MTIME = 1_690_000_000_222_222_222


def hot_file(m: Mover, rel: bytes, data: bytes) -> Path:
    path = m.hot_path(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chmod(path, 0o640)
    os.utime(path, ns=(1_700_000_000_111_111_111, MTIME))
    return path


def released(m: Mover, rel: bytes, data: bytes) -> tuple[Path, os.stat_result]:
    path = hot_file(m, rel, data)
    out = m.release(rel)
    assert out.status == "done", out
    return path, path.stat()


def leftovers(m: Mover) -> list[str]:
    """Restore temp files and restore locks anywhere on the hot tier."""
    return [p.name for p in m.hot.rglob("*") if p.name.startswith(RESTORE_TMP_PREFIX)]


def ended(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe:
            pipe.close()


def assert_stub_as_it_was(m: Mover, rel: bytes, path: Path, before: os.stat_result) -> None:
    st = path.stat()
    assert (st.st_size, st.st_ino, st.st_mtime_ns, st.st_mode) == (0, before.st_ino, before.st_mtime_ns, before.st_mode)
    assert is_stub(path)
    assert m.catalog.get(rel).state == FileState.RELEASED
    assert leftovers(m) == [] and m.catalog.open_entries() == []


# -- in place -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 70_000, 12 * 1024 * 1024 + 3])
def test_in_place_restore_fills_the_stubs_own_inode(mover, size):
    rel = b"data/shard \xff.bin"
    data = os.urandom(size)
    path, stub = released(mover, rel, data)
    os.setxattr(path, "user.owner-note", b"keep me")
    started = time.time_ns()

    out = mover.restore(rel, in_place=True)
    assert out.status == "done" and "in place" in out.reason and out.bytes == size, out
    st = path.stat()
    assert st.st_ino == stub.st_ino  # the very inode a reader's open resolved to
    assert path.read_bytes() == data
    assert (st.st_mode, st.st_uid, st.st_mtime_ns) == (stub.st_mode, stub.st_uid, MTIME)
    assert st.st_atime_ns >= started  # a restore is a use
    assert os.getxattr(path, "user.owner-note") == b"keep me"
    assert not [n for n in os.listxattr(path) if n.startswith("user.tiering.")]
    rec = mover.catalog.get(rel)
    assert (rec.state, rec.ino, rec.mtime_ns, rec.ctime_ns) == ("archived", st.st_ino, MTIME, st.st_ctime_ns)
    assert leftovers(mover) == [] and mover.catalog.open_entries() == []
    assert [e.step for e in mover.catalog.history(rel, 1)] == ["filling"]

    assert mover.restore(rel, in_place=True).status == "noop"  # resident now: nothing to do
    assert mover.release(rel).status == "done" and path.stat().st_size == 0  # and it releases as any file


def test_a_reader_holding_the_stub_open_reads_the_restored_bytes(mover):
    """The guard's case: a process opened the stub before the restore; its descriptor gets the bytes.
    (A restore that renames a new file over the stub cannot do this: the reader keeps the empty inode.)"""
    data = os.urandom(300_000)
    path, _ = released(mover, b"held.bin", data)
    reader = subprocess.Popen(
        [sys.executable, "-c", "import hashlib, sys\nf = open(sys.argv[1], 'rb')\nprint('open', flush=True)\n"
         "sys.stdin.readline()\nprint(hashlib.sha256(f.read()).hexdigest(), flush=True)", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline() == "open\n"
        out = mover.restore(b"held.bin", in_place=True)  # no lease: the reader's open would refuse one
        assert out.status == "done", out
        got, _ = reader.communicate("go\n", timeout=30)
    finally:
        ended(reader)
    assert got.strip() == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_a_failed_in_place_restore_leaves_the_stub_exactly_as_it_was(mover, damage):
    path, stub = released(mover, b"victim.bin", b"precious bytes" * 1000)
    store, key = mover.store("cap"), encode_key(b"victim.bin")
    if damage == "delete":
        store.delete(key)
    else:
        from tiering.stores.base import FileMeta

        src = path.parent / "impostor"
        src.write_bytes(b"x" * 14000)
        store.put_file(src, key, FileMeta.from_stat(src.stat(), key))
        src.unlink()
    out = mover.restore(b"victim.bin", in_place=True)
    assert out.status == "failed" and "\n" not in out.reason, out
    assert ("no such object" in out.reason) if damage == "delete" else ("not the archived version" in out.reason)
    assert_stub_as_it_was(mover, b"victim.bin", path, stub)


def test_a_tier_that_is_down_fails_the_in_place_restore_and_leaves_the_stub(tmp_path, seaweed, monkeypatch):
    from conftest import S3_BUCKET, S3_KEY, S3_SECRET

    monkeypatch.setenv("TEST_S3_SECRET", S3_SECRET)
    tier = (f'url = "s3://{S3_BUCKET}/{tmp_path.name}"\nendpoint = "ENDPOINT"\naccess_key_id = "{S3_KEY}"\n'
            'secret_access_key = "${TEST_S3_SECRET}"\n')
    up = load_config(write_config(tmp_path, tier.replace("ENDPOINT", seaweed.endpoint)))
    down_cfg = write_config(tmp_path, tier.replace("ENDPOINT", f"http://127.0.0.1:{closed_port()}"))
    down_cfg.write_text(down_cfg.read_text() + '[retry]\nattempts = 2\nmax_backoff = "0.1s"\ndeadline = "2s"\n')
    with Catalog.open(up.catalog_path, writer=True) as cat:
        m = Mover(up, cat)
        path, stub = released(m, b"far.bin", os.urandom(50_000))
        m.close()
        m = Mover(load_config(down_cfg), cat)
        out = m.restore(b"far.bin", in_place=True)
        assert out.status == "failed" and out.fatal and "\n" not in out.reason, out  # run scope, as today
        assert_stub_as_it_was(m, b"far.bin", path, stub)
        m.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs hot tier needs root")
def test_disk_full_while_filling_the_stub_empties_it_again(tmp_path):
    """The temp copy fits, the fill into the stub does not: the stub must come back empty and marked."""
    with small_hot_tier(tmp_path, "5m") as (m, cat):
        data = os.urandom(3 * 1024 * 1024)
        path, stub = released(m, b"big.bin", data)
        out = m.restore(b"big.bin", in_place=True)
        assert out.status == "failed" and out.fatal, out
        assert "No space left on device" in out.reason and "\n" not in out.reason
        assert_stub_as_it_was(m, b"big.bin", path, stub)
        assert [e.step for e in cat.history(b"big.bin", 1)] == ["filling"]  # it failed in the fill itself


def test_a_stub_the_catalog_does_not_call_released_is_refused_not_passed_off_as_resident(mover):
    """A reader must never get an empty stub as the file: no record saying released means no restore,
    and a failure, not a noop."""
    path, stub = released(mover, b"orphan.bin", os.urandom(1000))
    rec = mover.catalog.get(b"orphan.bin")
    mover.catalog.put(replace(rec, state=FileState.ARCHIVED))
    out = mover.restore(b"orphan.bin", in_place=True)
    assert out.status == "failed" and "is a stub" in out.reason, out
    assert path.stat().st_size == 0 and is_stub(path)
    assert mover.restore(b"orphan.bin").status == "noop"  # (`tiering restore` keeps today's answer)


@pytest.mark.parametrize("phase", ["fetch", "fill"])
def test_a_cancelled_in_place_restore_runs_to_its_end(mover, monkeypatch, phase):
    """Stopping a fill part-way would leave bytes in a stub the catalog calls released: a cancelled in-place
    restore finishes, then the cancellation goes on; catalog and file agree afterwards."""
    from tiering.mover import ops

    data = os.urandom(12 * 1024 * 1024)
    path, stub = released(mover, b"cancel.bin", data)
    cancelled = threading.Event()

    async def cancel_it() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(mover.restore_async(b"cancel.bin", in_place=True))

        def cancel(*_) -> None:  # (on a worker thread, while the bytes move)
            if not cancelled.is_set():
                cancelled.set()
                loop.call_soon_threadsafe(task.cancel)
                time.sleep(0.1)  # the cancellation lands while this step still runs

        if phase == "fetch":
            mover.on_bytes = cancel
        else:
            fill = ops.fill_stub
            monkeypatch.setattr(ops, "fill_stub", lambda *a: (cancel(), fill(*a))[1])
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_it())
    assert cancelled.is_set()
    assert mover.catalog.open_entries() == [] and leftovers(mover) == []
    assert mover.catalog.get(b"cancel.bin").state == "archived"
    assert path.read_bytes() == data and path.stat().st_ino == stub.st_ino


# -- the restore lock ----------------------------------------------------------------------------


def test_concurrent_restores_of_one_file_end_in_one_restore(mover):
    """Two restorers of one stub (in place and not, as the guard and `tiering restore`): one restores, the
    other waits for it and finds the file restored."""
    data = os.urandom(3 * 1024 * 1024)
    path, _ = released(mover, b"shared.bin", data)

    async def both():
        return await asyncio.gather(mover.restore_async(b"shared.bin", in_place=True),
                                    mover.restore_async(b"shared.bin", in_place=True),
                                    mover.restore_async(b"shared.bin"))

    outs = asyncio.run(both())
    assert sorted(o.status for o in outs) == ["done", "noop", "noop"], outs
    assert all("restored by another process" in o.reason for o in outs if o.status == "noop")
    assert path.read_bytes() == data  # (in its own inode or a new one: whichever restorer came first)
    assert mover.catalog.get(b"shared.bin").state == "archived"
    assert leftovers(mover) == [] and mover.catalog.open_entries() == []


def lock_holder(where_dir: Path, name: bytes) -> subprocess.Popen:
    """A real process that takes the restore lock of ``where_dir/name`` and holds it until stdin closes."""
    code = ("import os, sys, pathlib\nfrom tiering.mover.beneath import HotRoot\n"
            "from tiering.mover.restorelock import try_acquire\n"
            "lock = try_acquire(HotRoot(pathlib.Path(sys.argv[1])).entry(os.fsencode(sys.argv[2])))\n"
            "print(type(lock).__name__, flush=True)\nsys.stdin.read()\nlock.release()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(where_dir), os.fsdecode(name)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "RestoreLock\n"
    return proc


def test_a_live_holder_makes_a_restore_wait_then_fail_and_its_end_lets_it_through(mover):
    data = os.urandom(40_000)
    path, stub = released(mover, b"locked.bin", data)
    holder = lock_holder(mover.hot, b"locked.bin")
    try:
        with mover.hot_root.entry(b"locked.bin") as where:
            assert holder_of(where) == Holder(socket.gethostname(), holder.pid, restorelock._start_time(holder.pid))
        mover.lock_wait = 0.5
        started = time.monotonic()
        out = mover.restore(b"locked.bin", in_place=True)
        assert 0.5 <= time.monotonic() - started < 3
        assert out.status == "failed" and f"process {holder.pid} on {socket.gethostname()}" in out.reason, out
        assert path.stat().st_size == 0 and path.stat().st_ino == stub.st_ino and is_stub(path)
        assert mover.catalog.get(b"locked.bin").state == "released" and mover.catalog.open_entries() == []

        mover.lock_wait = 10
        threading.Timer(0.3, holder.stdin.close).start()  # the holder ends while we wait: we go on
        out = mover.restore(b"locked.bin", in_place=True)
        assert out.status == "done", out
    finally:
        ended(holder)
    assert path.read_bytes() == data and leftovers(mover) == []


def write_lock(m: Mover, rel: bytes, line: str, age: float = 0.0) -> Path:
    """A restore lock as another restorer leaves it (``line`` '': one that died before writing its line)."""
    lock = m.hot / os.fsdecode(lock_path(rel))
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.mkdir()
    if line:
        (lock / "holder").write_text(line)
    if age:
        os.utime(lock, (time.time() - age, time.time() - age))
    return lock


def test_stale_locks_are_broken_at_once_and_live_remote_ones_are_waited_for(mover):
    here = socket.gethostname()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    sleeper = subprocess.Popen(["sleep", "30"])
    mover.lock_wait = 0.3
    try:
        cases = {  # name: (lock line, age in seconds, restored?)
            b"dead-pid.bin": (f"{here} {gone.stdout.strip()} 12345 aa\n", 0, True),
            b"reused-pid.bin": (f"{here} {sleeper.pid} 1 bb\n", 0, True),  # alive, but started at another time
            b"remote-fresh.bin": (f"other-node 4242 777 cc\n", 0, False),
            b"remote-stale.bin": (f"other-node 4242 777 dd\n", restorelock.STALE_AFTER + 5, True),
            b"half-written.bin": ("", restorelock.STALE_AFTER + 5, True),
        }
        for rel, (line, age, ok) in cases.items():
            data = os.urandom(5000)
            path, _ = released(mover, rel, data)
            lock = write_lock(mover, rel, line, age)
            out = mover.restore(rel, in_place=True)
            assert out.status == ("done" if ok else "failed"), (rel, out)
            assert path.read_bytes() == (data if ok else b"")
            assert lock.exists() != ok, rel
            if not ok:
                assert "process 4242 on other-node" in out.reason
                shutil.rmtree(lock)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert leftovers(mover) == []


def test_a_file_another_node_restored_meanwhile_is_a_noop_and_archived(mover):
    """A node without the catalog restores the stub in place under the lock; this node's restorer waits for
    the lock, finds the archived bytes in the stub's inode (checksum) and records the file as archived."""
    data = os.urandom(200_000)
    path, stub = released(mover, b"elsewhere.bin", data)
    lock = write_lock(mover, b"elsewhere.bin", "other-node 4242 777 ee\n")

    def other_node() -> None:
        with open(path, "r+b") as f:
            f.write(data)
        os.removexattr(path, STUB_XATTR)
        shutil.rmtree(lock)

    threading.Timer(0.3, other_node).start()
    out = mover.restore(b"elsewhere.bin", in_place=True)
    assert out.status == "noop" and "restored by another process" in out.reason, out
    rec = mover.catalog.get(b"elsewhere.bin")
    assert (rec.state, rec.ino) == ("archived", stub.st_ino)
    assert path.read_bytes() == data and leftovers(mover) == [] and mover.catalog.open_entries() == []


def test_a_tiering_restore_process_holds_the_lock_while_it_restores(mover, tmp_path):
    """`holder_of` names the restoring process, so the guard can let that process's own opens of the stub
    through; the lock goes when the restore ends."""
    data = os.urandom(100_000)
    path, _ = released(mover, b"cli.bin", data)
    proc = _restore_stopped_after_fetch(mover, tmp_path, path)
    try:
        with mover.hot_root.entry(b"cli.bin") as where:
            held = holder_of(where, mover.host_locks)
        assert (held.host, held.pid) == (socket.gethostname(), proc.pid) and held.alive()
    finally:
        proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    with mover.hot_root.entry(b"cli.bin") as where:
        assert holder_of(where, mover.host_locks) is None
    assert path.read_bytes() == data and leftovers(mover) == []


def _lock_dirs(m: Mover) -> list[str]:
    return sorted(p.name for p in (m.hot / ".tiering" / "locks").rglob(f"{restorelock.LOCK_PREFIX}*"))


def test_on_a_local_disk_the_lock_is_a_record_lock_that_dies_with_its_holder(mover, tmp_path):
    """A local hot tier's restore lock makes no directory (no inode made and removed per restore); the
    guard still learns the holder; a SIGKILLed holder's lock is gone at once, with nothing to judge stale."""
    assert mover.host_locks  # (tmp_path is on a local filesystem)
    data = os.urandom(50_000)
    path, _ = released(mover, b"rec.bin", data)
    proc = _restore_stopped_after_fetch(mover, tmp_path, path)
    try:
        assert _lock_dirs(mover) == []
        with mover.hot_root.entry(b"rec.bin") as where:
            assert holder_of(where, True) == Holder(socket.gethostname(), proc.pid, restorelock._start_time(proc.pid))
            busy = restorelock.try_acquire(where, True)
            assert isinstance(busy, Holder) and busy.pid == proc.pid
            proc.kill()
            proc.wait(30)
            assert holder_of(where, True) is None
            lock = restorelock.try_acquire(where, True)
            assert not isinstance(lock, Holder)
            lock.release()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_one_process_never_holds_a_record_lock_twice(mover):
    """Record locks never conflict within one process: the lock's own table keeps a second restorer of the
    same file in the same process out until the first lets go."""
    released(mover, b"twice.bin", os.urandom(1000))
    with mover.hot_root.entry(b"twice.bin") as where:
        first = restorelock.try_acquire(where, True)
        assert not isinstance(first, Holder)
        assert restorelock.try_acquire(where, True) == Holder(socket.gethostname(), os.getpid(),
                                                              restorelock._start_time(os.getpid()))
        first.release()
        first.release()  # (twice: the second does nothing)
        again = restorelock.try_acquire(where, True)
        assert not isinstance(again, Holder)
        again.release()


def _restore_stopped_after_fetch(mover: Mover, tmp_path: Path, path: Path) -> subprocess.Popen:
    """A `tiering restore` of ``path`` in its own process, stopped (SIGSTOP) once its copy is fetched,
    holding the file's restore lock; the mover's catalog is closed first (the CLI takes its writer lock)."""
    mover.catalog.close()
    env = {**os.environ, "TIERING_CRASH_AT": "restore:fetched", "TIERING_CRASH_SIGNAL": "STOP"}
    proc = subprocess.Popen([sys.executable, "-c", "from tiering.cli import main; main()", "restore", "-c",
                             str(tmp_path / "tiering.toml"), str(path)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not _stopped(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    return proc


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("where", ["disk", "fuse"])
def test_a_held_lock_is_refreshed_and_the_refresher_stops_with_the_last_lock(tmp_path, request, monkeypatch, where):
    from tiering.mover.beneath import HotRoot

    monkeypatch.setattr(restorelock, "REFRESH_EVERY", 0.05)
    hot = request.getfixturevalue("fuse_hot") if where == "fuse" else tmp_path
    (hot / "long.bin").write_bytes(b"x")
    root = HotRoot(hot)
    with root.entry(b"long.bin") as entry:
        lock = restorelock.try_acquire(entry)
        assert isinstance(lock, restorelock.RestoreLock)
        name = hot / os.fsdecode(restorelock.lock_path(b"long.bin"))
        os.utime(name, (1, 1))
        time.sleep(1.5 if where == "fuse" else 0.3)  # (the mount caches attributes for 1 s)
        assert time.time() - name.stat().st_mtime < 5  # the holder said it is alive
        lock.release()
        assert not name.exists()
    root.close()
    deadline = time.monotonic() + 2
    while any(t.name == "tiering-restore-locks" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the refresher outlived the last lock"
        time.sleep(0.02)


# -- the release hook ----------------------------------------------------------------------------


def test_the_release_hook_gets_the_directory_before_the_truncate(mover):
    data = os.urandom(20_000)
    path = hot_file(mover, b"sub/dir/hooked.bin", data)
    seen = []

    def hook(dir_fd: int) -> None:
        st = os.stat(b"hooked.bin", dir_fd=dir_fd, follow_symlinks=False)
        seen.append((os.fstat(dir_fd).st_ino, st.st_size, STUB_XATTR in os.listxattr(path)))

    mover.before_truncate = hook
    assert mover.release(b"sub/dir/hooked.bin").status == "done"
    assert seen == [(path.parent.stat().st_ino, len(data), False)]  # the file's own directory, still whole
    assert path.stat().st_size == 0


def test_a_release_hook_that_raises_fails_that_release_and_leaves_the_file_archived(mover):
    data = os.urandom(20_000)
    path = hot_file(mover, b"refused.bin", data)

    def hook(dir_fd: int) -> None:
        raise OSError(28, "no space for another fanotify mark")

    mover.before_truncate = hook
    out = mover.release(b"refused.bin")
    assert out.status == "failed" and "no space for another fanotify mark" in out.reason, out
    assert path.read_bytes() == data and not is_stub(path)
    assert mover.catalog.get(b"refused.bin").state == "archived" and mover.catalog.open_entries() == []
    mover.before_truncate = None
    assert mover.release(b"refused.bin").status == "done"


# -- the copy into the stub ---------------------------------------------------------------------


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs a tmpfs at /dev/shm beside a disk filesystem")
def test_the_fill_falls_back_to_sendfile_where_copy_file_range_is_refused(tmp_path, monkeypatch):
    """copy_file_range refuses a copy between two kinds of filesystem (EXDEV), as some FUSE mounts refuse it
    outright: the fill goes on with sendfile, chunk by chunk, and a short source is an error, not a short file."""
    from tiering.mover import stub

    monkeypatch.setattr(stub, "FILL_CHUNK", 1 << 20)
    data = os.urandom(3 * 1024 * 1024 + 7)
    src_path = Path("/dev/shm") / f"tiering-test-{os.getpid()}-{time.monotonic_ns()}"
    src_path.write_bytes(data)
    try:
        src = os.open(src_path, os.O_RDONLY)
        dst = os.open(tmp_path / "stub", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError) as refused:
                os.copy_file_range(src, dst, 10, 0, 0)
            assert refused.value.errno == 18  # EXDEV: the kernel really refuses it here
            stub.copy_in(src, dst, len(data))
            assert (tmp_path / "stub").read_bytes() == data
            with pytest.raises(OSError, match="ended after"):
                stub.copy_in(src, dst, len(data) + 10)
        finally:
            os.close(src)
            os.close(dst)
    finally:
        src_path.unlink()


# -- a networked hot tier: the SeaweedFS FUSE mount, and two mounts of it as two nodes -----------------


def test_in_place_restore_on_the_fuse_hot_tier_serves_a_reader_holding_the_stub(fuse_mover):
    test_a_reader_holding_the_stub_open_reads_the_restored_bytes(fuse_mover)
    rec = fuse_mover.catalog.get(b"held.bin")
    assert rec.state == "archived" and rec.ino == fuse_mover.hot_path(b"held.bin").stat().st_ino


def _race_for_the_lock(hot: Path, name: bytes, start: float) -> str:
    """In a child process: try to take ``hot/name``'s restore lock at ``start``; hold a win a moment."""
    from tiering.mover.beneath import HotRoot

    root = HotRoot(hot)
    try:
        with root.entry(name) as where:
            time.sleep(max(0.0, start - time.time()))
            got = restorelock.try_acquire(where)
            if isinstance(got, Holder):
                return f"held by {got.pid}"
            time.sleep(0.3)  # (the loser has tried by now)
            got.release()
            return "won"
    finally:
        root.close()


def test_the_restore_lock_has_one_winner_across_two_mounts(fuse_two_mounts):
    """Two nodes restoring one stub at once must end in one restore: through two `weed mount` clients of one
    filer path, exactly one of two restorers racing for a file's lock gets it, every time."""
    import multiprocessing

    a, b = fuse_two_mounts
    with multiprocessing.get_context("fork").Pool(2) as pool:
        for i in range(10):
            name = f"shard-{i}.bin".encode()
            start = time.time() + 0.1
            results = [pool.apply_async(_race_for_the_lock, (base, name, start)) for base in (a, b)]
            outcomes = sorted(r.get(timeout=30) for r in results)
            assert outcomes[1] == "won" and outcomes[0].startswith("held by "), (i, outcomes)
    deadline = time.monotonic() + 5
    while [p.name for p in a.iterdir() if p.name.startswith(RESTORE_TMP_PREFIX)]:
        assert time.monotonic() < deadline, "a lock outlived its holder"
        time.sleep(0.1)


def test_the_lock_lives_in_the_state_folder_not_beside_the_stub(tmp_path):
    """A networked filesystem serialises changes to one directory: a restore's lock must not add two more
    (mkdir, rmdir) to the user's folder, whose temp file and rename are already two."""
    from tiering.mover.beneath import HotRoot

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.bin").write_bytes(b"x")
    root = HotRoot(tmp_path)
    with root.entry(b"data/a.bin") as entry:
        lock = restorelock.try_acquire(entry)
        assert isinstance(lock, restorelock.RestoreLock)
        assert sorted(os.listdir(tmp_path / "data")) == ["a.bin"]
        held = tmp_path / os.fsdecode(restorelock.lock_path(b"data/a.bin"))
        assert held.is_dir() and held.parent.parent == tmp_path / ".tiering" / "locks"
        assert holder_of(entry) == Holder(socket.gethostname(), os.getpid(), restorelock._start_time(os.getpid()))
        lock.release()
        assert not held.exists() and holder_of(entry) is None
    root.close()


def test_a_link_planted_as_the_state_folder_is_refused_not_followed(tmp_path):
    from tiering.core.errors import PathError
    from tiering.mover.beneath import HotRoot

    hot, elsewhere = tmp_path / "hot", tmp_path / "elsewhere"
    hot.mkdir()
    elsewhere.mkdir()
    (hot / "a.bin").write_bytes(b"x")
    (hot / ".tiering").symlink_to(elsewhere)
    root = HotRoot(hot)
    with root.entry(b"a.bin") as entry, pytest.raises(PathError, match=r"\.tiering.*not a folder of ours"):
        restorelock.try_acquire(entry)
    root.close()
    assert list(elsewhere.iterdir()) == []


def test_recover_clears_a_lock_whose_maker_died_before_writing_its_line(mover, monkeypatch):
    """A SIGKILL can land between a lock's mkdir and its holder line (another thread was taking it):
    ``clear_dead`` gives such a lock a grace to show its line, then breaks it; a line that shows is kept."""
    monkeypatch.setattr(restorelock, "EMPTY_GRACE", 0.3)
    for rel in (b"empty.bin", b"live.bin"):
        (mover.hot / os.fsdecode(rel)).write_bytes(b"")
    empty = write_lock(mover, b"empty.bin", "")
    live = write_lock(mover, b"live.bin", "")
    threading.Timer(0.1, (live / "holder").write_text, [f"{socket.gethostname()} {os.getpid()} "
                                                        f"{restorelock._start_time(os.getpid())} 1\n"]).start()
    with mover.hot_root.entry(b"empty.bin") as where:
        assert restorelock.clear_dead(where) == Holder("?", 0)
    with mover.hot_root.entry(b"live.bin") as where:
        assert restorelock.clear_dead(where) is None
    assert not empty.exists() and live.is_dir()
