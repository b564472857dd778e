"""Reading local source files without disturbing them; writing local files exactly (and sparse when asked).

Archiving a file must not make it look recently used: policies rank files by
atime, and a mover that bumped atime on every copy would make its own
candidates look hot. ``O_NOATIME`` is allowed for the file's owner and for
root; anyone else falls back to a plain open.

A sparse source (``is_sparse``) is restored with ``write_sparse``: blocks of
zeros are left as holes and the file's size set at the end (``ftruncate``).
The holes need not be where the source had them, only where its bytes are
zeros: a hole reads as zeros, so the bytes, and their checksum, are the same.
"""

from __future__ import annotations

import errno
import functools
import os
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

_NOATIME = getattr(os, "O_NOATIME", 0)


def open_source(path: str | Path) -> BinaryIO:
    """Open a local file for reading without updating its atime where permitted."""
    return os.fdopen(_open_source_fd(path), "rb", buffering=0)


def _open_source_fd(path: str | Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | _NOATIME)
    except PermissionError:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def write_all(fd: int, data: bytes | bytearray | memoryview, offset: int | None = None) -> None:
    """Write every byte of ``data`` (at ``offset`` if given), or raise.

    ``os.write``/``os.pwrite`` may write less than asked (a full disk reports a
    short write before it reports ENOSPC); ignoring the count would leave a
    short file that the caller believes complete.
    """
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]
        if offset is not None:
            offset += n


_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range():
    """libc's sync_file_range, looked up on first use (not at import: every command imports this
    module, and only large restores need it); None where there is no such call."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range  # this process's own libc: no search
    except (OSError, AttributeError):  # not Linux/glibc: nothing to start early
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes at ``offset`` to disk now, without waiting.

    A large download that ends in an fsync otherwise pays for the whole disk
    write after the last byte arrives; started part by part, the writing
    overlaps the download and the final fsync has little left to do. Only a
    hint: durability still comes from that fsync.
    """
    if length > 0 and (sync_file_range := _sync_file_range()) is not None:
        sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # errors only mean "no head start"


def fsync_path(path: str | Path) -> None:
    """fsync a file or a directory by name (a directory: to make a rename in it durable)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_source(path: str | Path, expect: int) -> bytes:
    """The whole of a small local file (see ``open_source``), whose size was last seen as ``expect``.

    One read asks for a byte more than that, so a file that grew since comes
    back longer (and fails the caller's size check) without a second read to
    find the end.
    """
    fd = _open_source_fd(path)
    try:
        return _read_expected(fd, expect)
    finally:
        os.close(fd)


def _read_expected(fd: int, expect: int) -> bytes:
    data = os.read(fd, expect + 1)
    if len(data) >= expect:
        return data  # all of it, or more than expected (a short read of a regular file is its end)
    parts, got = [data], len(data)
    while got <= expect and (more := os.read(fd, expect + 1 - got)):
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def read_small_source(path: str | Path, meta):
    """``read_source`` of the file at ``path`` with ``with_holes`` of ``meta`` (a ``FileMeta``), through
    one open of the file: on a networked filesystem every open costs round trips (open, flush, release)."""
    fd = _open_source_fd(path)
    try:
        if meta.size > HOLE_BLOCK:
            meta = replace(meta, sparse=_has_hole(fd))
            os.lseek(fd, 0, os.SEEK_SET)
        return _read_expected(fd, meta.size), meta
    finally:
        os.close(fd)


#: Holes are made block by block: a block of zeros this big, aligned to the file, is not written.
HOLE_BLOCK = 4096
_ZERO_BLOCK = bytes(HOLE_BLOCK)


def is_sparse(path: str | Path) -> bool:
    """Whether the file at ``path`` has a hole before its end (``SEEK_HOLE``; False where unsupported)."""
    fd = _open_source_fd(path)
    try:
        return _has_hole(fd)
    finally:
        os.close(fd)


def _has_hole(fd: int) -> bool:
    try:
        size = os.fstat(fd).st_size
        return size > 0 and os.lseek(fd, 0, os.SEEK_HOLE) < size
    except OSError:  # a filesystem without SEEK_HOLE: we cannot tell, so dense
        return False


def write_sparse(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """``write_all`` at ``offset``, except that blocks of zeros are skipped, leaving holes.

    Only for regions of a new or truncated file that nothing else writes (a
    skipped block must read as zeros), and the caller sets the file's size at
    the end (``os.ftruncate``): a hole at the end has no bytes to write.
    """
    view = memoryview(data)
    pos, run = 0, -1  # run: where the bytes to write start, -1 while in zeros
    while pos < len(view):
        end = min(len(view), pos + HOLE_BLOCK - (offset + pos) % HOLE_BLOCK)
        zero = view[pos:end].tobytes() == _ZERO_BLOCK[: end - pos]
        if zero and run >= 0:
            write_all(fd, view[run:pos], offset + run)
            run = -1
        elif not zero and run < 0:
            run = pos
        pos = end
    if run >= 0:
        write_all(fd, view[run:], offset + run)


def with_holes(path: str | Path, meta):
    """``meta`` (a ``FileMeta``) saying whether the file at ``path`` is sparse; only files over a block are asked."""
    if meta.size <= HOLE_BLOCK:
        return meta
    return replace(meta, sparse=is_sparse(path))
