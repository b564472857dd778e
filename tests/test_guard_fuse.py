"""The access guard on a networked filesystem: SeaweedFS's FUSE mount as the hot tier, one node and two.

Two ``weed mount`` processes of one filer path stand in for two client nodes
of a parallel filesystem; the second node's guard runs in its own UTS
namespace (another host name), has no catalog, and learns of stubs from the
shared guard folder and restores from the stubs' own marks.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import S3_SECRET, is_root
from guard_setup import REPO, Guarded, guarded_setup, read_in_process, sha

pytestmark = pytest.mark.skipif(not is_root(), reason="fanotify permission events and FUSE mounts need root")

MMAP_READ = ("import mmap, sys; f = open(sys.argv[1], 'rb'); "
             "m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ); sys.stdout.buffer.write(m[:])")


@pytest.fixture
def gf(fuse_hot, tmp_path, seaweed):
    setup = guarded_setup(fuse_hot / "hot", tmp_path, seaweed.endpoint)
    yield setup
    setup.stop_guard()
    shutil.rmtree(setup.guard_dir, ignore_errors=True)


def test_readers_on_the_fuse_mount_get_the_original_bytes(gf):
    gf.write({"a.bin": os.urandom(350_000), "b.bin": os.urandom(64 * 1024), "c.bin": os.urandom(2_000_000),
              "d/e.bin": os.urandom(5000)})
    gf.release()
    gf.start_guard()
    assert sha(read_in_process(["cat", str(gf.hot / "a.bin")]).stdout) == sha(gf.files["a.bin"])
    assert sha(read_in_process([sys.executable, "-c", MMAP_READ, str(gf.hot / "b.bin")]).stdout) == sha(gf.files["b.bin"])
    dd = read_in_process(["dd", f"if={gf.hot / 'd/e.bin'}", "bs=3", "skip=5", "count=100", "status=none"])
    assert dd.stdout == gf.files["d/e.bin"][15:315]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: read_in_process(["cat", str(gf.hot / "c.bin")]), range(4)))
    assert [sha(o.stdout) for o in outs] == [sha(gf.files["c.bin"])] * 4


def _node_b_guard(setup_b: Guarded, log: Path) -> subprocess.Popen:
    """``tiering guard`` for node B: its own host name (UTS namespace), so its own lock, socket and ledger."""
    script = f"hostname nodeb && exec {sys.executable} -m tiering guard -c {setup_b.config}"
    with open(log, "ab") as out:
        return subprocess.Popen(["unshare", "--uts", "sh", "-c", script], stdout=subprocess.DEVNULL, stderr=out,
                                cwd=REPO, env={**os.environ, "TEST_S3_SECRET": S3_SECRET})


def _restores(guard_dir: Path, name: str) -> dict[str, int]:
    counts = {}
    for ledger in guard_dir.glob("*.db"):
        conn = sqlite3.connect(ledger)
        try:
            counts[ledger.stem] = conn.execute(
                "SELECT count(*) FROM journal WHERE action = 'restore' AND path = ? AND status = 'done' AND step = 'filling'",
                (name.encode(),)).fetchone()[0]
        finally:
            conn.close()
    return counts


def test_two_nodes_open_one_stub_at_once_one_restore_two_right_readers(fuse_two_mounts, tmp_path, seaweed):
    dir_a, dir_b = fuse_two_mounts
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = guarded_setup(dir_a, tmp_path / "a", seaweed.endpoint)
    shared = a.guard_dir  # the guard folder every node reaches (here: one host's /tmp)
    b_cfg = tmp_path / "b" / "tiering.toml"
    text = a.config.read_text().replace(f'path = "{dir_a}"', f'path = "{dir_b}"')
    b_cfg.write_text(text.replace(f'{tmp_path / "a"}/state/catalog.db', f'{tmp_path / "b"}/no-catalog-here.db'))
    b = Guarded(dir_b, b_cfg, shared, work=tmp_path / "b")
    b_proc = None
    try:
        a.write({f"big{i}.bin": os.urandom(3_000_000 + i) for i in range(3)})
        a.start_guard()
        a.release()  # on node A, which owns the catalog: announced to A's guard and to the shared log
        b_log = tmp_path / "b" / "guard.log"
        b_proc = _node_b_guard(b, b_log)
        deadline = time.monotonic() + 30
        while not (shared / "nodeb.lock").exists() or b"ready" not in (shared / "nodeb.lock").read_bytes():
            assert b_proc.poll() is None and time.monotonic() < deadline, b_log.read_text()
            time.sleep(0.1)
        time.sleep(1.5)  # B's view of the stubs (its FUSE attribute cache) and its log follower catch up
        for name, data in a.files.items():
            with ThreadPoolExecutor(2) as pool:
                via_a, via_b = pool.map(lambda d: read_in_process(["cat", str(d / name)], timeout=60), (dir_a, dir_b))
            logs = lambda: f"A: {via_a.stderr!r} B: {via_b.stderr!r}\n--- A's guard\n{a.log.read_text()}\n" \
                           f"--- B's guard\n{b_log.read_text()}"  # noqa: E731
            assert (via_a.returncode, sha(via_a.stdout)) == (0, sha(data)), logs()
            assert (via_b.returncode, sha(via_b.stdout)) == (0, sha(data)), logs()
            assert sum(_restores(shared, name).values()) == 1, _restores(shared, name)
        assert not list(dir_a.glob(".tiering-lock*")), "no restore lock is left behind"
    finally:
        if b_proc is not None and b_proc.poll() is None:
            b_proc.send_signal(signal.SIGTERM)
            b_proc.wait(30)
        a.stop_guard()
        shutil.rmtree(shared, ignore_errors=True)

