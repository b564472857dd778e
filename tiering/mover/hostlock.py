"""Restore locks for a hot tier on this machine's own disk: POSIX record locks on one file.

A hot tier on a local filesystem (ext4, XFS, tmpfs...) is written only by
processes of this host, so its restore locks need not live in the
filesystem's namespace (``restorelock``'s ``mkdir`` locks, which a
networked filesystem needs). Here the lock of a file is one byte of the file
``.tiering/locks/host.lock``, at an offset given by a hash of the file's path,
held with ``fcntl(F_SETLK)``:

- taking and dropping it are two system calls with no journal behind them;
  a ``mkdir``/``rmdir`` pair allocates and frees an inode and a directory
  block, and on ext4 each waits for the journal while other files' fsyncs
  commit (measured: ~1 s of a 5 s restore of 3,000 small files);
- the kernel drops it when its process dies, so a crash never leaves one
  behind and nothing has to judge a lock stale;
- another process can ask who holds it (``F_GETLK`` gives the holder's pid),
  which the access guard needs to let a restorer's own opens through.

Record locks belong to a process, not to a descriptor: within one process
they never conflict, so a table here keeps this process's holds, and the
process keeps one descriptor of the lock file while it holds any of them
(closing *any* descriptor of the file would drop them all; only this module
opens it). Two paths whose hashes share an offset share a lock: a restore
then waits for an unrelated one, never the other way round.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import threading
from dataclasses import dataclass

from tiering.mover.beneath import Entry

#: The lock file's name in the hot tier's ``.tiering/locks`` folder.
LOCK_FILE = b"host.lock"
_FLOCK = "hhqqi4x"  # struct flock on Linux (l_type, l_whence, l_start, l_len, l_pid)
_SPAN = 1 << 48  # offsets 0 .. 2**48 - 1: well inside off_t


@dataclass(frozen=True, slots=True)
class Held:
    """Who holds a host lock: a process id on this host (0: one the kernel would not name to us)."""

    pid: int


class HostLock:
    """A held host lock; ``release`` it (also on failure)."""

    def __init__(self, file: _LockFile, offset: int) -> None:
        self._file = file
        self.offset = offset
        #: Another restorer held the lock first (the caller waited for it): the file may be restored now.
        self.waited = False
        self._released = False

    def release(self) -> None:
        """Let the lock go (once; later calls do nothing)."""
        if not self._released:
            self._released = True
            self._file.release(self.offset)


def offset_of(digest: bytes) -> int:
    """The byte of the lock file that stands for the file whose path hashes to ``digest`` (hex)."""
    return int(digest, 16) % _SPAN


def try_acquire(where: Entry, digest: bytes) -> HostLock | Held:
    """Take the host lock for ``where`` (path hash ``digest``) without waiting; else who holds it."""
    offset = offset_of(digest)
    folder = where.root.state_dir(b"locks")
    with _table_lock:
        file = _lock_file(folder)
        if offset in file.held:
            return Held(os.getpid())
        try:
            fcntl.fcntl(file.fd, fcntl.F_SETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))
        except OSError as exc:
            try:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                return _query(file, offset) or Held(0)  # (let go between our try and the query: try again)
            finally:
                file.close_if_idle()
        file.held.add(offset)
        return HostLock(file, offset)


def holder(where: Entry, digest: bytes) -> Held | None:
    """Who holds the host lock for ``where`` now (None: nobody)."""
    offset = offset_of(digest)
    folder = where.root.state_dir(b"locks")
    with _table_lock:
        file = _lock_file(folder)
        try:
            return Held(os.getpid()) if offset in file.held else _query(file, offset)
        finally:
            file.close_if_idle()


class _LockFile:
    """This process's descriptor of one hot tier's lock file, and the offsets it holds in it."""

    def __init__(self, key: tuple[int, int], fd: int) -> None:
        self.key = key
        self.fd = fd
        self.held: set[int] = set()

    def release(self, offset: int) -> None:
        with _table_lock:
            self.held.discard(offset)
            try:
                fcntl.fcntl(self.fd, fcntl.F_SETLK, struct.pack(_FLOCK, fcntl.F_UNLCK, os.SEEK_SET, offset, 1, 0))
            finally:
                self.close_if_idle()

    def close_if_idle(self) -> None:
        """Close the descriptor once no hold is left (then no lock is dropped with it)."""
        with _table_lock:
            if not self.held and self.fd >= 0:
                _files.pop(self.key, None)
                os.close(self.fd)
                self.fd = -1


def _query(file: _LockFile, offset: int) -> Held | None:
    got = fcntl.fcntl(file.fd, fcntl.F_GETLK, struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, offset, 1, 0))
    found, _, _, _, pid = struct.unpack(_FLOCK, got)
    return None if found == fcntl.F_UNLCK else Held(pid)


def _key(folder: int) -> tuple[int, int]:
    st = os.fstat(folder)
    return st.st_dev, st.st_ino


def _lock_file(folder: int) -> _LockFile:
    """This process's ``_LockFile`` in the locks folder ``folder`` (opened, and made if missing, when this
    process holds nothing there yet). Called with ``_table_lock`` held."""
    global _pid
    if _pid != os.getpid():  # a forked child holds none of its parent's record locks: start afresh
        _files.clear()
        _pid = os.getpid()
    key = _key(folder)
    known = _files.get(key)
    if known is not None:
        return known
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, 0o600,
                 dir_fd=folder)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"{os.fsdecode(LOCK_FILE)} in the hot tier's locks folder is not a file")
    _files[key] = made = _LockFile(key, fd)
    return made


_files: dict[tuple[int, int], _LockFile] = {}
_table_lock = threading.RLock()
_pid = os.getpid()
