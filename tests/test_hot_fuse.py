"""A SeaweedFS FUSE mount as the hot tier (issue 19).

The fixtures work (a ``weed mount`` behaves as a shared networked filesystem,
two mounts as two client nodes); ``tiering release``/``status``/``restore`` of
a file whose inode number is past 2**63 (which hung, then failed); SIGKILL then
``recover`` with the hot tier on FUSE. What differs on the mount is written
down in bench/peers/weed_mount.py; test_fuse_*.py rerun the mover's, the
scanner's and ``tiered://``'s tests on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from conftest import tier_config

from bench.crashlab import run_trial
from bench.peers.weed_mount import mount_fstype


def _eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def test_fuse_hot_is_an_empty_dir_on_a_fuse_mount(fuse_hot, fuse_mount):
    assert list(fuse_hot.iterdir()) == []
    assert (mount_fstype(fuse_mount.mountpoint) or "").startswith("fuse.")
    assert os.stat(fuse_hot).st_dev == os.stat(fuse_mount.mountpoint).st_dev


def test_xattr_round_trip(fuse_hot):
    path = fuse_hot / "f"
    path.write_bytes(b"data")
    os.setxattr(path, "user.tiering.test", b"\x00value\xff")
    assert os.getxattr(path, "user.tiering.test") == b"\x00value\xff"
    assert "user.tiering.test" in os.listxattr(path)
    os.removexattr(path, "user.tiering.test")
    assert "user.tiering.test" not in os.listxattr(path)


def test_written_via_a_is_read_via_b(fuse_two_mounts):
    a, b = fuse_two_mounts
    assert os.stat(a).st_dev != os.stat(b).st_dev  # two mounts, two client "nodes"
    data = os.urandom(100_000)
    (a / "shared").write_bytes(data)
    assert _eventually(lambda: (b / "shared").read_bytes() == data)
    os.setxattr(b / "shared", "user.tiering.node", b"B")
    assert _eventually(lambda: os.getxattr(a / "shared", "user.tiering.node") == b"B")


def _mkdir_at(path: Path, start: float) -> str:
    time.sleep(max(0.0, start - time.time()))
    try:
        os.mkdir(path)
        return "won"
    except FileExistsError:
        return "EEXIST"


def test_mkdir_of_one_name_via_two_mounts_at_once_has_exactly_one_winner(fuse_two_mounts):
    # the cross-node lock a guard can rely on here; O_CREAT|O_EXCL via two mounts let BOTH win (weed_mount.py)
    import multiprocessing

    a, b = fuse_two_mounts
    with multiprocessing.get_context("fork").Pool(2) as pool:
        for i in range(20):
            start = time.time() + 0.05
            results = [pool.apply_async(_mkdir_at, (base / f"lock-{i}", start)) for base in (a, b)]
            assert sorted(r.get(timeout=10) for r in results) == ["EEXIST", "won"], i


def test_fresh_dirs_are_cleaned_up(fuse_mount, fuse_hot):
    # every earlier test's directory (and the mount's liveness probe) was removed after it
    assert list(fuse_mount.mountpoint.iterdir()) == [fuse_hot]


# --- the mover on a FUSE hot tier, as real `tiering` processes ---------------------------------------------

# the console script `pip install` made (TIERING_TEST_CLI: another build of it, e.g. the base commit's)
TIERING = os.environ.get("TIERING_TEST_CLI") or str(Path(sys.executable).with_name("tiering"))


def tiering(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """A real ``tiering`` run with a timeout: a hang fails the test instead of hanging the suite."""
    env = {k: v for k, v in os.environ.items() if k not in ("TIERING_CONFIG", "TIERING_HOME")}
    return subprocess.run([TIERING, *args], capture_output=True, text=True, timeout=timeout, env=env)


def file_with_high_inode(folder: Path, data: bytes) -> Path:
    """A file whose inode number is 2**63 or more (SeaweedFS hands out the whole unsigned 64-bit range)."""
    for i in range(64):
        path = folder / f"f{i}"
        path.write_bytes(data)
        if os.stat(path).st_ino >= 2**63:
            return path
        path.unlink()
    raise AssertionError("64 files on the FUSE mount, none with an inode number of 2**63 or more")


def test_release_and_restore_of_a_file_whose_inode_is_past_2_63(fuse_hot, tmp_path, request, monkeypatch):
    # issue 19: `tiering release` of one 350,000-byte file on the FUSE hot tier hung (the 70-210 KB files that
    # worked happened to get inode numbers below 2**63; a SQLite INTEGER is signed 64-bit)
    cfg = tier_config("s3", tmp_path, request, monkeypatch, hot=fuse_hot)
    data = os.urandom(350_000)
    path = file_with_high_inode(fuse_hot, data)
    done = tiering("release", "-c", str(cfg), str(path), timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "released 1 file" in done.stdout + done.stderr
    assert os.stat(path).st_size == 0
    status = tiering("status", "-c", str(cfg), str(path), timeout=30)
    assert status.returncode == 0 and "released" in status.stdout, status.stdout + status.stderr
    back = tiering("restore", "-c", str(cfg), str(path), timeout=30)
    assert back.returncode == 0, back.stdout + back.stderr
    assert path.read_bytes() == data


# --- recover after SIGKILL, with the hot tier on FUSE (bench.crashlab; test_crash runs many more points on ext4) ---

FUSE_CRASH_POINTS = ["archive:copied:1", "release:stubbed:3", "restore:fetched:1", "restore:renamed:3", "any:40"]


@pytest.mark.parametrize("point", FUSE_CRASH_POINTS)
def test_sigkill_then_recover_on_a_fuse_hot_tier_loses_nothing(tmp_path, fuse_hot, point):
    result = run_trial(tmp_path / "lab", point, files=12, seed=zlib.crc32(point.encode()) % 1000, hot=fuse_hot)
    assert result.problems == []
    assert result.lost == [] and result.corrupt == []
    assert result.killed, f"{point} was never reached"
