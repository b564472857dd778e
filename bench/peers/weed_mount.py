"""A SeaweedFS FUSE mount (``weed mount``) of a running filer: a networked hot tier for tests and benchmarks.

Every metadata call on the mount (``lstat``, ``open``, ``setxattr``,
``ftruncate``, ``rename``, directory reads) is a gRPC round trip to the filer,
as on a parallel filesystem (CPFS, Lustre, GPFS, BeeGFS). Two ``WeedMount``
processes of the same ``filer_path`` stand in for two client nodes that share
one filesystem.

Mounting needs root (no ``fusermount`` then) and ``/dev/fuse``:
``unavailable()`` gives the one-line reason when either is missing.

``start()`` returns once the kernel lists the mount point as ``fuse.*`` in
``/proc/self/mountinfo`` AND a file written through it reads back: the process
prints "mounted" before the first request is served. ``stop()`` unmounts
(``umount``, then ``umount -l`` if busy) and then stops the process group, so
no stale mount is left behind even when a test failed with files open.

What differs from ext4 (measured with SeaweedFS 4.48, kernel 6.18, two mounts A
and B of one filer path on loopback):

- xattrs: ``user.*`` (and ``trusted.*``) set/get/list/remove work; a value may
  be 65,536 bytes (the kernel's XATTR_SIZE_MAX; more is E2BIG); 200 xattrs of
  1,000 bytes on one file are fine. They survive truncate and rename and are
  seen via B at once (xattrs are not cached by the kernel).
- ``st_blocks`` is ceil(size/512) (``st_blksize`` 512): 0 for a file truncated
  to 0, 684 for 350,000 bytes. ``O_TMPFILE`` is EOPNOTSUPP; ``fallocate``,
  hard links and directory ``fsync`` work.
- Times: mtime/ctime in nanoseconds, and ``utime(ns=...)`` round-trips mtime
  exactly. **atime is not kept**: it reads as mtime once the kernel's
  attribute cache (1 s) expires; a utime'd atime is lost and reads do not
  advance it.
- Names are strings on the filer: bytes that are not valid UTF-8 are replaced
  (``b"\\xff\\xfe-x"`` is listed as ``b"_-x"``); valid UTF-8 (newlines, tabs,
  ``é``) is kept exactly.
- Inode numbers span the whole unsigned 64-bit range (about half are 2**63
  or more: too big for a signed SQLite INTEGER); an inode is stable across
  writes, flushes, truncate and rename.
- Leases: ``F_SETLEASE`` (read and write) is granted, but it is the kernel's
  local lease: an open via A breaks it, an open via B does not.
- Two nodes: ``O_CREAT|O_EXCL`` of one new name at once via A and via B gave
  TWO winners in 148 of 200 tries (``link()`` onto one name: 10 of 50);
  ``mkdir`` gave exactly one winner and one EEXIST in 200 of 200. Via one
  mount both are exclusive. So the cross-node lock is a ``mkdir``.
- Visibility via B: a new name is seen at once (1-2 ms); a write, truncate or
  unlink of a file B already looked up shows after 1.0 s (the kernel's FUSE
  attribute/entry timeout; ``weed mount`` has no option for it:
  ``-cacheMetaTtlSec`` is its own metadata cache, kept fresh by the filer's
  event stream). Nothing on B refreshes it sooner: ``stat``, ``open`` then
  ``fstat``, a read, a ``getxattr``, an ``O_DIRECT`` open all still gave the
  old size. So a mover on node B checking a file's identity after a copy
  does not see a write node A made in the last second.
- fanotify: ``FAN_OPEN_PERM|FAN_EVENT_ON_CHILD`` on a directory of the mount
  works in a ``FAN_CLASS_PRE_CONTENT`` group and in a ``FAN_CLASS_CONTENT``
  one: bytes written through the event's fd before ``FAN_ALLOW`` are what
  ``cat`` and an mmap reader get (350,000 bytes, sha256 equal);
  ``FAN_DENY_ERRNO(EIO)`` gives the reader EIO in the pre-content class (the
  content class refuses that response with EINVAL, as on ext4). A
  ``FAN_PRE_ACCESS`` mark is EOPNOTSUPP on the mount (accepted on ext4).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.peers.seaweed import weed_binary


def unavailable() -> str:
    """Why a FUSE mount cannot be made here ("" when it can)."""
    if os.geteuid() != 0:
        return "FUSE mount needs root (weed mount without fusermount)"
    if not os.path.exists("/dev/fuse"):
        return "FUSE unavailable: /dev/fuse is missing"
    return ""


def _unescape(field: str) -> str:
    """A path field of /proc/self/mountinfo (space, tab, newline, backslash are octal escapes)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mount_fstype(path: str | os.PathLike) -> str | None:
    """The filesystem type /proc/self/mountinfo gives for the mount point ``path`` (None: not a mount point)."""
    target = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) > 4 and _unescape(fields[4]) == target:
                found = right.split()[0]  # the last one listed is the one on top
    return found


class WeedMount:
    """One ``weed mount`` process of ``filer_path`` on ``mountpoint``; its cache, socket and log go in ``work``."""

    def __init__(self, filer: str, mountpoint: Path, filer_path: str, work: Path, options: tuple[str, ...] = ()) -> None:
        self.filer = filer
        self.mountpoint = Path(mountpoint)
        self.filer_path = filer_path
        self.work = Path(work)
        self.options = options
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        (self.work / "cache").mkdir(parents=True, exist_ok=True)
        args = [weed_binary(), "mount", f"-filer={self.filer}", f"-dir={self.mountpoint}",
                f"-filer.path={self.filer_path}", f"-cacheDir={self.work / 'cache'}",
                # its own control socket: the default is one per mount-point hash in /tmp, left behind
                f"-localSocket={self.work / 'mount.sock'}", *self.options]
        self._log = open(self.work / "mount.log", "ab")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.work,
                                     start_new_session=True)
        try:
            self._wait_live(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_live(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        probe = self.mountpoint / f".mount-probe-{uuid.uuid4().hex[:8]}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mount exited with {self.proc.returncode}; see {self.work / 'mount.log'}")
            if (mount_fstype(self.mountpoint) or "").startswith("fuse"):
                try:
                    probe.write_bytes(b"live")
                    ok = probe.read_bytes() == b"live"
                    probe.unlink()
                    if ok:
                        return
                except OSError:
                    pass  # mounted, not serving yet
            time.sleep(0.1)
        raise RuntimeError(f"weed mount of {self.mountpoint} not live in {timeout}s; see {self.work / 'mount.log'}")

    @property
    def mounted(self) -> bool:
        return mount_fstype(self.mountpoint) is not None

    def unmount(self) -> None:
        """Detach the mount point: a clean ``umount``, else a lazy one (a test left a file open)."""
        if not self.mounted:
            return
        if subprocess.run(["umount", str(self.mountpoint)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)

    def stop(self) -> None:
        """Unmount, then stop the process (SIGTERM, SIGKILL after 10 s); leaves no mount behind."""
        try:
            self.unmount()
        finally:
            if self.proc is not None:
                if self.proc.poll() is None:
                    os.killpg(self.proc.pid, signal.SIGTERM)
                    try:
                        self.proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        os.killpg(self.proc.pid, signal.SIGKILL)
                        self.proc.wait()
                self._log.close()
                self.proc = None
            # a killed FUSE server leaves a dead mount ("Transport endpoint is not connected")
            if self.mounted:
                subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)

    def __enter__(self) -> WeedMount:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def fuse_hot_tier(prefix: str, filer_path: str, credentials: tuple[str, str, str]) -> Iterator[tuple[Any, Path, Path]]:
    """A fresh ``weed mini`` (``credentials``: key, secret, bucket) and a ``weed mount`` of its filer's
    ``filer_path``, in a temporary folder named after ``prefix``: (the server, the mount point, the folder).
    All is stopped, unmounted and removed after; ``SystemExit`` with the reason where FUSE cannot mount."""
    from bench.peers.seaweed import SeaweedServer

    if reason := unavailable():
        raise SystemExit(reason)
    key, secret, bucket = credentials
    base = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        with SeaweedServer(base / "seaweed", key, secret, (bucket,)) as server, \
                WeedMount(f"127.0.0.1:{server.ports['filer']}", base / "mnt", filer_path, base / "mount") as mount:
            yield server, mount.mountpoint, base
    finally:
        shutil.rmtree(base, ignore_errors=True)
