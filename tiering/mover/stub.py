"""Releasing a file to a stub, and what a stub says about itself.

A released file is a zero-length stub that keeps the file's name, inode,
owner, mode, atime and mtime (ctime moves: the kernel sets it on truncate). A
plain read returns no bytes rather than wrong ones. The stub also carries one
extended attribute, ``user.tiering.stub``, one line of text::

    released 65536 s3 blake3:3f2a9c0d1e2b4a5c

(state, true size, tier, and the first 16 hex digits of the checksum), so
``getfattr -d`` tells an operator what the file was and where its bytes went
even without the catalog; the object key is the file's path as it was at
release (``stores.keys.encode_key``), and the full checksum is in the catalog
and in the object's own metadata. It is kept this short on purpose: ext4's
default 256-byte inodes hold about 60 bytes of attribute value, and a longer
one costs every stub a 4 KiB attribute block, allocated at release and freed
at restore. Stubs released by earlier versions (a JSON object, or one
``user.tiering.state`` attribute) are still recognised.

The truncate happens under a write lease (``F_SETLEASE``): the kernel grants
it only while no other process has the file open, and holds back any new
open until we let go. So between "the file is still the version we archived"
and "its blocks are freed" no writer can slip in. Filesystems without leases
(NFS and most parallel filesystems) fall back to check-then-truncate with
the window kept as small as we can make it.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tiering.core.states import FileState
from tiering.mover.beneath import Entry
from tiering.mover.identity import Identity

XATTR_PREFIX = "user.tiering."
STUB_XATTR = XATTR_PREFIX + "stub"
_LEGACY_STATE_XATTR = XATTR_PREFIX + "state"  # stubs released before STUB_XATTR carried one per field


class StubError(Exception):
    """The file could not be released; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StubBusyError(StubError):
    """Another process has the file open (or holds a lease on it): trying again later may succeed."""


def ignore_lease_breaks() -> bool:
    """Ignore SIGIO, which the kernel sends a lease holder when another process opens the file.

    Its default action would kill us; ignored, the opener simply waits the few
    microseconds until we release the lease. Only the main thread may change
    signal dispositions: returns False (no leases) elsewhere.
    """
    if threading.current_thread() is not threading.main_thread():
        return signal.getsignal(signal.SIGIO) == signal.SIG_IGN
    signal.signal(signal.SIGIO, signal.SIG_IGN)
    return True


def stub_attributes(size: int, checksum: str, tier: str) -> dict[str, bytes]:
    """The extended attributes a released stub carries (see the module docstring)."""
    algorithm, _, digest = checksum.partition(":")
    return {STUB_XATTR: f"{FileState.RELEASED} {size} {tier} {algorithm}:{digest[:16]}".encode()}


def is_stub(path: str | Path) -> bool:
    """True if ``path`` carries our released-stub mark (this version's, or an older one's)."""
    try:
        mark = os.getxattr(path, STUB_XATTR)
    except (OSError, AttributeError):
        mark = b""
    if mark.startswith(FileState.RELEASED.encode() + b" "):
        return True
    if mark:
        try:
            return json.loads(mark).get("state") == FileState.RELEASED  # stubs released before the one-line mark
        except (ValueError, AttributeError):
            return False
    try:
        return os.getxattr(path, _LEGACY_STATE_XATTR) == FileState.RELEASED.encode()
    except OSError:
        return False


@contextmanager
def exclusive(where: Entry, expected: Identity, use_lease: bool,
              flags: int = os.O_RDONLY) -> Iterator[tuple[int, os.stat_result]]:
    """(fd, its stat) on ``where``, held under a write lease, after checking it is still ``expected``.

    Raises ``StubError`` if another process has the file open (lease refused)
    or its identity changed. Without lease support, only the identity check.
    The file is opened through its directory's descriptor, never through a symlink.
    """
    try:
        fd = where.open(flags | os.O_NONBLOCK)  # (non-blocking: a FIFO swapped in, or another's lease, never hangs us)
    except BlockingIOError:
        raise StubBusyError("open in another process") from None
    leased = False
    try:
        if use_lease:
            leased = _take_lease(fd)
        st = os.fstat(fd)
        if Identity.of(st) != expected:
            raise StubError("changed since it was archived")
        yield fd, st
    finally:
        if leased:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        os.close(fd)


def release_to_stub(where: Entry, expected: Identity, attributes: dict[str, bytes], use_lease: bool) -> None:
    """Truncate ``where`` to a stub if it is still exactly ``expected``.

    Raises ``StubError`` (nothing changed) if the file is open elsewhere or has changed.
    """
    with exclusive(where, expected, use_lease, os.O_WRONLY) as (fd, st):
        _set_xattrs(fd, attributes)
        os.ftruncate(fd, 0)
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        # No fsync: the journal entry is durable before this truncate, and
        # recovery reads which way the file went after a crash either way.


def replace_stub(where: Entry, tmp: bytes, stub: Identity, use_lease: bool) -> None:
    """Rename the restored ``tmp`` (beside it) over the stub at ``where``, if the stub is untouched.

    Under the lease nobody can open the stub (and so write into it) between
    the check and the rename.
    """
    with exclusive(where, stub, use_lease):
        where.rename_over(tmp)


def _take_lease(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        return True
    except OSError as exc:
        if exc.errno == errno.EAGAIN:
            raise StubBusyError("open in another process") from None
        return False  # EINVAL/ENOTSUP: this filesystem has no leases


def _set_xattrs(fd: int, attributes: dict[str, bytes]) -> None:
    for name, value in attributes.items():
        try:
            os.setxattr(fd, name, value)
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
                return  # no user xattrs here: the catalog alone describes the stub
            raise


def copy_user_xattrs(src: Path | int, dst: int) -> None:
    """Copy the user's own extended attributes (not ours) from ``src`` to fd ``dst``."""
    try:
        names = os.listxattr(src, follow_symlinks=False) if not isinstance(src, int) else os.listxattr(src)
    except OSError:
        return
    for name in names:
        if name.startswith(XATTR_PREFIX):
            continue
        try:
            os.setxattr(dst, name, os.getxattr(src, name))
        except OSError:
            continue  # e.g. security.* we may not set; the file's bytes matter more


def clear_stub_xattrs(fd: int) -> None:
    for name in os.listxattr(fd):
        if name.startswith(XATTR_PREFIX):
            os.removexattr(fd, name)
