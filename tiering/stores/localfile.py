"""Reading local source files without disturbing them.

Archiving a file must not make it look recently used: policies rank files by
atime, and a mover that bumped atime on every copy would make its own
candidates look hot. ``O_NOATIME`` is allowed for the file's owner and for
root; anyone else falls back to a plain open.
"""

from __future__ import annotations

import errno
import functools
import os
from pathlib import Path
from typing import BinaryIO

_NOATIME = getattr(os, "O_NOATIME", 0)


def open_source(path: str | Path) -> BinaryIO:
    """Open a local file for reading without updating its atime where permitted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | _NOATIME)
    except PermissionError:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    return os.fdopen(fd, "rb", buffering=0)


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


def read_source(path: str | Path) -> bytes:
    with open_source(path) as f:
        return f.read()
