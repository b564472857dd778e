"""The FUSE hot-tier fixtures work: a SeaweedFS ``weed mount`` behaves as a shared networked filesystem."""

from __future__ import annotations

import os
import time

from servers.weed_mount import mount_fstype


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


def test_fresh_dirs_are_cleaned_up(fuse_mount, fuse_hot):
    # every earlier test's directory (and the mount's liveness probe) was removed after it
    assert list(fuse_mount.mountpoint.iterdir()) == [fuse_hot]
