"""The hot tier's blocking calls inline or on threads (``[hot] io``): chosen by the mount, same results either way.

On a networked filesystem each metadata call is a round trip, so the mover
sends them to a bounded pool (``mover.hotio``) and the round trips of many
files overlap; on a local disk they stay on the event loop. Whichever runs
them, the mover must do exactly the same thing: these tests force each mode
on ext4 and on the SeaweedFS FUSE mount and compare the files and the catalog.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import _mover

from tiering.core.mounts import hot_io
from tiering.core.states import FileState
from tiering.mover.hotio import HotIO
from tiering.mover.ops import RESTORE_TMP_PREFIX, Mover
from tiering.mover.outcome import DONE
from tiering.mover.executor import Task, execute


def test_auto_is_inline_on_a_local_disk_and_threads_on_a_networked_mount(tmp_path, fuse_hot):
    assert hot_io("auto", tmp_path) == "inline"
    assert hot_io("auto", fuse_hot) == "threads"
    assert hot_io("inline", fuse_hot) == "inline"
    assert hot_io("threads", tmp_path) == "threads"


def test_the_config_key_reaches_the_mover_and_its_stores(tmp_path, request, monkeypatch):
    (tmp_path / "hot").mkdir()
    cfg = tmp_path / "tiering.toml"
    gen = _mover("s3", tmp_path, request, monkeypatch)
    m = next(gen)
    try:
        assert m.io.mode == "inline" and m.store("cap").local_io is None
    finally:
        next(gen, None)  # (runs the fixture's clean-up)
    text = cfg.read_text().replace('path = "hot"\n', 'path = "hot"\nio = "threads"\n', 1)
    cfg.write_text(text)
    from tiering.catalog import Catalog
    from tiering.config import load_config

    config = load_config(cfg)
    assert config.hot_io == "threads"
    with Catalog.open(config.catalog_path, writer=True) as catalog:
        m = Mover(config, catalog)
        try:
            assert m.io.threaded and m.store("cap").local_io is m.io
        finally:
            m.close()


def test_a_bad_io_setting_is_one_line_naming_the_key(tmp_path):
    (tmp_path / "hot").mkdir()
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[hot]\npath = "hot"\nio = "fast"\n[catalog]\npath = "state/c.db"\n[tiers.t]\nurl = "cap"\n')
    result = subprocess.run([str(Path(sys.executable).with_name("tiering")), "config", "check", str(cfg)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"tiering: error: {cfg}: [hot] io: 'fast' is not a valid io; expected one of auto, inline, threads"]


def _files(hot, n: int) -> dict[bytes, bytes]:
    (hot / "set").mkdir()
    data = {}
    for i in range(n):
        rel = f"set/f{i:03d}".encode()
        data[rel] = os.urandom(1000 + 997 * i)
        (hot / os.fsdecode(rel)).write_bytes(data[rel])
    return data


@pytest.mark.parametrize("where", ["disk", "fuse"])
@pytest.mark.parametrize("mode", ["inline", "threads"])
def test_release_and_restore_of_many_files_are_the_same_in_either_mode(tmp_path, request, monkeypatch, where, mode):
    hot = request.getfixturevalue("fuse_hot") if where == "fuse" else None
    gen = _mover("s3", tmp_path, request, monkeypatch, hot)
    m = next(gen)
    try:
        m.io = HotIO(mode, 8)  # (forced: what [hot] io = "inline" / "threads" gives)
        m._stores.clear()
        data = _files(m.hot, 24)
        released = execute(m, [Task(rel, "release") for rel in data], jobs=8)
        assert released.counts == {("release", DONE): len(data)}, released.failures + released.skipped
        assert all(m.catalog.get(rel).state == FileState.RELEASED for rel in data)
        assert all((m.hot / os.fsdecode(rel)).stat().st_size == 0 for rel in data)
        restored = execute(m, [Task(rel, "restore") for rel in data], jobs=8)
        assert restored.counts == {("restore", DONE): len(data)}, restored.failures + restored.skipped
        for rel, body in data.items():
            assert (m.hot / os.fsdecode(rel)).read_bytes() == body
            assert m.catalog.get(rel).state == FileState.ARCHIVED
        left = [p for p in m.hot.rglob("*") if p.name.startswith(RESTORE_TMP_PREFIX)]
        assert left == []  # no temp file, no restore lock
    finally:
        next(gen, None)  # (runs the fixture's clean-up)


def test_a_cancelled_call_gives_back_what_its_thread_acquired(tmp_path):
    """A restore cancelled while its thread opens a file or takes a lock: the thread finishes, and
    what it got is let go (no descriptor or lock outlives the cancelled action)."""
    io = HotIO("threads", 2)
    started, proceed = threading.Event(), threading.Event()
    undone: list[int] = []

    def slow_open() -> int:
        started.set()
        proceed.wait(5)
        return os.open(tmp_path, os.O_RDONLY)

    def undo(fd: int) -> None:
        undone.append(fd)
        os.close(fd)

    async def main() -> None:
        task = asyncio.ensure_future(io.acquire(slow_open, undo))
        await asyncio.to_thread(started.wait, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proceed.set()
        for _ in range(100):
            if undone:
                break
            await asyncio.sleep(0.02)

    asyncio.run(main())
    io.close()
    assert len(undone) == 1
    with pytest.raises(OSError):
        os.fstat(undone[0])  # closed


@pytest.mark.parametrize("mode", ["inline", "threads"])
def test_a_restored_file_keeps_its_owner_and_set_id_bits(tmp_path, request, monkeypatch, mode):
    """The copy is only chowned/chmodded where it differs from the stub (each call a round trip on a
    networked filesystem), but a chown drops set-id bits, so after one the mode is always set again."""
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    gen = _mover("s3", tmp_path, request, monkeypatch)
    m = next(gen)
    try:
        m.io = HotIO(mode, 4)
        m._stores.clear()
        path = m.hot / "tool.bin"
        body = os.urandom(5000)
        path.write_bytes(body)
        os.chown(path, 1234, 2345)
        os.chmod(path, 0o6750)
        assert m.release(b"tool.bin").status == DONE
        assert m.restore(b"tool.bin").status == DONE
        st = path.stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1234, 2345, 0o6750)
        assert path.read_bytes() == body
    finally:
        next(gen, None)  # (runs the fixture's clean-up)
