"""The restore lock of a networked hot tier is taken, held and let go by name, never by opening its folder.

On a networked filesystem every open and close of the lock folder is a round
trip (a FUSE mount: OPENDIR and RELEASEDIR, each to the filer), so the holder
line is set and read back through the folder's name. What a restore does to
its lock folder is counted with Python's audit hooks (``os.open`` raises the
``open`` event) in a child process, so the hook never outlives the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tiering.mover import restorelock
from tiering.mover.beneath import HotRoot

_CHILD = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from tiering.mover import restorelock
    from tiering.mover.beneath import HotRoot

    hot = Path(sys.argv[1])
    prefix = restorelock.LOCK_PREFIX.encode()
    calls, counting = [], [False]

    def audit(event, args):
        if counting[0] and event in ("open", "os.mkdir", "os.rmdir", "os.setxattr", "os.getxattr") and args:
            name = args[0] if isinstance(args[0], bytes) else os.fsencode(str(args[0]))
            if prefix in name:
                calls.append(event)

    root = HotRoot(hot)
    root.state_dir(b"locks")  # (the shard folders are opened once per process, not per restore)
    sys.addaudithook(audit)
    held_fds = []

    def fds_at(path):
        found = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith(path):
                    found.append(fd)
            except FileNotFoundError:
                pass  # (the listing's own descriptor)
        return found

    for i in range(3):
        with root.entry(b"data/f%d.bin" % i) as where:
            counting[0] = True
            lock = restorelock.try_acquire(where)  # the mkdir lock of a networked hot tier
            counting[0] = False
            assert isinstance(lock, restorelock.RestoreLock), lock
            path = os.fsdecode(hot / os.fsdecode(restorelock.lock_path(where.rel)))
            held_fds += fds_at(path)
            line = os.getxattr(path, "user.tiering.holder").decode()
            counting[0] = True
            lock.release()
            counting[0] = False
            assert not os.path.exists(path)
    root.close()
    print(json.dumps({"calls": calls, "held_fds": held_fds, "line": line}))
""")


def test_a_restore_takes_and_lets_go_of_its_lock_without_opening_the_lock_folder(tmp_path):
    """Per restore: one mkdir, the holder line set by name, read back by name at release, one rmdir;
    no descriptor of the lock folder is opened or held (the old lock opened it and held it open)."""
    (tmp_path / "data").mkdir()
    for i in range(3):
        (tmp_path / "data" / f"f{i}.bin").write_bytes(b"x")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["held_fds"] == []
    assert seen["calls"].count("open") == 0, seen["calls"]
    assert seen["calls"] == ["os.mkdir", "os.setxattr", "os.getxattr", "os.rmdir"] * 3
    host, pid, started, hold = seen["line"].split()  # the third hold of that process
    assert pid.isdigit() and started.isdigit() and hold == "3"


def test_release_leaves_a_lock_that_was_broken_and_taken_afresh_by_another(tmp_path):
    """Held by name, a lock tells ours from a successor's by the holder line (it names this one hold)."""
    (tmp_path / "a.bin").write_bytes(b"x")
    root = HotRoot(tmp_path)
    try:
        with root.entry(b"a.bin") as where:
            lock = restorelock.try_acquire(where)
            assert isinstance(lock, restorelock.RestoreLock)
            path = tmp_path / os.fsdecode(restorelock.lock_path(b"a.bin"))
            os.rmdir(path)  # broken (judged stale) and taken by another node's restorer
            os.mkdir(path)
            os.setxattr(path, "user.tiering.holder", b"other-node 4242 777 9\n")
            lock.release()
            assert path.is_dir()
            assert os.getxattr(path, "user.tiering.holder") == b"other-node 4242 777 9\n"
            assert restorelock.holder_of(where) == restorelock.Holder("other-node", 4242, "777")
    finally:
        root.close()
