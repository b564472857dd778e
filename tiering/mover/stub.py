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

A restore normally renames a verified copy over the stub. For a reader whose
open already resolved to the stub (the access guard's restore-on-open), the
bytes are copied into the stub's own inode instead (``fill_stub``): all of
them, fsynced, before the stub mark goes, so a crash or a failure part-way
leaves a file still marked as a stub (which recovery finishes or empties
again), never a partial file that looks restored.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import stat
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tiering.core.faults import crash_point
from tiering.core.states import FileState
from tiering.mover.beneath import Entry
from tiering.mover.identity import Identity

XATTR_PREFIX = "user.tiering."
STUB_XATTR = XATTR_PREFIX + "stub"
_LEGACY_STATE_XATTR = XATTR_PREFIX + "state"  # stubs released before STUB_XATTR carried one per field
#: Bytes copied into a stub's inode per call when restoring in place (a crash can land between two).
FILL_CHUNK = 64 << 20


class StubError(Exception):
    """The file could not be released; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StubBusyError(StubError):
    """Another process has the file open (or holds a lease on it): trying again later may succeed."""


class StubRefusedError(StubError):
    """The ``before_truncate`` hook refused the release (its message is the reason); nothing changed."""


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


#: Hex digits of the checksum a stub's mark carries (the full one is in the catalog and the object's metadata).
STUB_DIGEST = 16


def stub_attributes(size: int, checksum: str, tier: str) -> dict[str, bytes]:
    """The extended attributes a released stub carries (see the module docstring)."""
    algorithm, _, digest = checksum.partition(":")
    return {STUB_XATTR: f"{FileState.RELEASED} {size} {tier} {algorithm}:{digest[:STUB_DIGEST]}".encode()}


@dataclass(frozen=True, slots=True)
class StubMark:
    """What a stub's one-line mark says: the released file's size, its tier and the start of its checksum."""

    size: int
    tier: str
    checksum: str  # "algorithm:" and the digest's first ``STUB_DIGEST`` hex digits

    def matches(self, checksum: str | None) -> bool:
        """True if ``checksum`` (a whole one, "algorithm:digest") is the one this mark names."""
        return bool(checksum) and checksum.startswith(self.checksum) and len(self.checksum.partition(":")[2]) > 0


def read_mark(path: str | Path) -> StubMark | None:
    """The stub mark of ``path`` (not following a final link); None without one (or an older, JSON mark)."""
    try:
        fields = os.getxattr(path, STUB_XATTR, follow_symlinks=False).decode(errors="replace").split(" ")
    except (OSError, AttributeError):
        return None
    if len(fields) != 4 or fields[0] != FileState.RELEASED or not fields[1].isdigit():
        return None
    return StubMark(int(fields[1]), fields[2], fields[3])


def is_stub(path: str | Path, *, follow_symlinks: bool = True) -> bool:
    """True if ``path`` carries our released-stub mark (this version's, or an older one's).

    (For an ``Entry``: ``is_stub(where.fd_path(), follow_symlinks=False)``.)
    """
    try:
        mark = os.getxattr(path, STUB_XATTR, follow_symlinks=follow_symlinks)
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
        return os.getxattr(path, _LEGACY_STATE_XATTR, follow_symlinks=follow_symlinks) == FileState.RELEASED.encode()
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


def release_to_stub(where: Entry, expected: Identity, attributes: dict[str, bytes], use_lease: bool,
                    before_truncate: Callable[[int], None] | None = None) -> None:
    """Truncate ``where`` to a stub if it is still exactly ``expected``.

    ``before_truncate`` is called with the file's directory descriptor under
    the lease, before anything changes (the access guard marks the directory
    there, before the stub can be opened); if it raises, ``StubRefusedError``.
    Raises ``StubError`` (nothing changed) if the file is open elsewhere or has changed.
    """
    with exclusive(where, expected, use_lease, os.O_WRONLY) as (fd, st):
        if before_truncate is not None:
            try:
                before_truncate(where.dir_fd)
            except Exception as exc:  # (whatever the hook raises refuses this one file, as its reason)
                raise StubRefusedError(" ".join(str(exc).split()) or type(exc).__name__) from exc
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


def fill_stub(where: Entry, tmp: bytes, expected: Identity) -> os.stat_result:
    """Copy the verified restored copy ``tmp`` (beside ``where``) into the stub's own inode; its status after.

    For a reader whose open already resolved to the stub (the access guard):
    the bytes go into that inode, not into a new file renamed over it. The
    stub must still be ``expected`` (same inode, empty, untouched), else
    ``StubError`` and nothing changed. No lease: the reader's blocked open
    holds the file open, so one would be refused; every open of a stub is
    held by the guard, so nobody writes to it meanwhile. If the copy fails
    the inode is emptied again (it keeps its stub mark) before the error is
    raised: a partial fill never looks like a restored file.
    """
    try:
        fd = where.open(os.O_WRONLY | os.O_NONBLOCK)  # (non-blocking: another's lease, or a FIFO, never hangs us)
    except BlockingIOError:
        raise StubBusyError("open in another process") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or Identity.of(st) != expected:
            raise StubError("changed since it was released")
        src = where.open(os.O_RDONLY, name=tmp)
        try:
            fill_from(fd, src, os.fstat(src).st_size, st.st_atime_ns, st.st_mtime_ns)
        finally:
            os.close(src)
        return os.fstat(fd)
    finally:
        os.close(fd)


def fill_from(fd: int, src: int, size: int, atime_ns: int, mtime_ns: int) -> None:
    """Fill the empty stub open as ``fd`` with the first ``size`` bytes of ``src``, then unmark it.

    The bytes are on disk before the stub mark goes (two fsyncs: a crash in
    between leaves a full file still marked as a stub, which recovery
    finishes; never a partial one without the mark). On failure before the
    mark goes, the stub is emptied again (``empty_stub``) and the error raised.
    """
    try:
        copy_in(src, fd, size)
        os.fsync(fd)
    except BaseException:
        empty_stub(fd, atime_ns, mtime_ns)
        raise
    unmark(fd, mtime_ns)


def unmark(fd: int, mtime_ns: int) -> None:
    """Make the filled stub open as ``fd`` a restored file: no stub mark, atime now, mtime ``mtime_ns``; durably."""
    clear_stub_xattrs(fd)
    os.utime(fd, ns=(time.time_ns(), mtime_ns))  # a restore is a use: atime now; mtime stays the file's own
    os.fsync(fd)


def empty_stub(fd: int, atime_ns: int, mtime_ns: int, attributes: dict[str, bytes] | None = None) -> None:
    """Truncate the stub open as ``fd`` back to zero length with its times (and, given, its stub mark), durably."""
    os.ftruncate(fd, 0)
    if attributes:
        _set_xattrs(fd, attributes)
    os.utime(fd, ns=(atime_ns, mtime_ns))
    os.fsync(fd)


def copy_in(src: int, dst: int, size: int) -> None:
    """Copy ``size`` bytes from the start of ``src`` to the same offsets of ``dst``, in the kernel.

    ``copy_file_range`` (a reflink where the filesystem can), else ``sendfile``
    (filesystems or kernels that refuse the former, such as some FUSE mounts).
    """
    done = 0
    while done < size:
        n = _copy_chunk(src, dst, min(FILL_CHUNK, size - done), done)
        if n <= 0:
            raise OSError(errno.EIO, f"{os.strerror(errno.EIO)}: the restored copy ended after {done} of {size} bytes")
        done += n
        crash_point("restore:fill-chunk")


def _copy_chunk(src: int, dst: int, count: int, offset: int) -> int:
    try:
        return os.copy_file_range(src, dst, count, offset, offset)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    os.lseek(dst, offset, os.SEEK_SET)
    return os.sendfile(dst, src, offset, count)


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


def xattr_names(src: str | Path | int) -> list[str]:
    """The names of the extended attributes of ``src`` (a descriptor, or a path whose last component is
    never followed); [] where it has none, or the filesystem keeps none."""
    try:
        return os.listxattr(src) if isinstance(src, int) else os.listxattr(src, follow_symlinks=False)
    except OSError:
        return []


def carries_mark(names: list[str]) -> bool:
    """True if a file with the xattrs ``names`` carries our released-stub mark (this version's or an
    older one's): ours are only ever set on a stub, and removed when it gets its bytes back."""
    return STUB_XATTR in names or _LEGACY_STATE_XATTR in names


def copy_user_xattrs(src: Path | str | int, dst: int, names: list[str] | None = None) -> None:
    """Copy the user's own extended attributes (not ours) from ``src`` (a descriptor, or a path whose
    last component is never followed) to fd ``dst``; ``names``: ``src``'s, when the caller has listed
    them already."""
    for name in xattr_names(src) if names is None else names:
        if name.startswith(XATTR_PREFIX):
            continue
        try:
            value = os.getxattr(src, name) if isinstance(src, int) else os.getxattr(src, name, follow_symlinks=False)
            os.setxattr(dst, name, value)
        except OSError:
            continue  # e.g. security.* we may not set; the file's bytes matter more


def clear_stub_xattrs(fd: int) -> None:
    """Remove our ``user.tiering.*`` attributes from the open file ``fd`` (none to remove without user xattrs)."""
    try:
        names = os.listxattr(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return
        raise
    for name in names:
        if name.startswith(XATTR_PREFIX):
            try:
                os.removexattr(fd, name)
            except OSError as exc:
                if exc.errno != errno.ENODATA:  # (removed meanwhile)
                    raise
