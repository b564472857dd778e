"""One restore of a file at a time, across processes and nodes: a lock in the hot tier's state folder.

Two kinds, by where the hot tier lives (the mover decides, ``Mover.host_locks``):

- on a filesystem of this machine's own disks (ext4, XFS, tmpfs...) only
  this host's processes restore, and the lock is a record lock in one file
  (``hostlock``): no inode is made and removed per restore, and the kernel
  lets go of it when its holder dies. A directory lock (below) of an
  earlier version's restorer is still respected, and broken if stale;
- on a networked filesystem, the directory lock described here.

Every restore of a file (``tiering restore``, a pin, the access guard's
restore-on-open) first takes this lock. It lives on the hot tier's own
filesystem, which on a cluster is shared by every client node, so it works
where an in-memory or ``flock`` lock would not (``flock`` is per-node on most
parallel filesystems). The lock is a directory made with ``mkdir`` (which
fails if it exists) in the hot tier's reserved folder (``beneath.STATE_DIR``,
reached from the root's descriptor without following links)::

    .tiering/locks/<h>/.tiering-restore-lock-<16 hex digits of a hash of the file's path>

where ``<h>`` is the hash's first two digits (256 shards). Not beside the
stub: a networked filesystem serialises the changes to one directory (the
kernel locks the directory; on a SeaweedFS FUSE mount 16 threads made ~450
mkdirs/s in one directory and ~1,500/s spread over 16), so a lock beside each
stub doubled the directory changes a restore makes in the user's folder
(temp file, rename; plus mkdir, rmdir) and halved the rate of restoring a
folder of small files. Old locks beside a stub (from an earlier version)
are still cleared by ``recover`` (``clear_dead``).

Its extended attribute ``user.tiering.holder`` (on a filesystem without user
xattrs: a file ``holder`` inside it) is one line, ``host pid start hold``: the holder's host name,
process id, the process's start time (clock ticks since boot, from
``/proc/PID/stat``, so a reused pid is not taken for the holder) and a
number naming this one hold of that process. The name starts with the
restore temp files' prefix, so everything that skips those (the daemon's
events, ``tiered://`` listings, the crash lab's leftover check) skips locks too.

A lock is *stale*, and broken at once by the next restorer, when its holder
is on this host and that process is gone (or its start time differs); a
holder on another host cannot be asked, so its lock is stale once the lock's
mtime is older than ``STALE_AFTER`` (so is a lock whose line was never
written). A holder refreshes the mtime every ``REFRESH_EVERY`` seconds from
one shared thread while it holds any lock, so a long transfer never looks
stale (the bound assumes the nodes' clocks agree to well within it).
Breaking renames the lock aside first and checks it is still the one judged
stale, so a lock taken afresh in between is put back, not removed.
``recover`` removes the locks of this host's dead holders.

The filesystem primitive is ``_claim`` (with ``_read`` and ``_drop``): one
small function each, so it can be swapped for a filesystem that needs
another. ``mkdir`` was measured exclusive across two nodes of a networked
filesystem where ``O_CREAT | O_EXCL`` was not (see ``_claim``).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import itertools
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass

from tiering.mover import hostlock
from tiering.mover.beneath import STATE_DIR, Entry
from tiering.mover.hostlock import HostLock
from tiering.mover.hotio import HotIO

LOCK_PREFIX = ".tiering-restore-lock-"
#: Seconds after which a lock held from another host, not refreshed, is taken for its holder's crash.
STALE_AFTER = 60.0
#: How often a holder refreshes its locks' mtime (well inside ``STALE_AFTER``).
REFRESH_EVERY = STALE_AFTER / 6
_FIRST_PAUSE, _LONGEST_PAUSE = 0.02, 1.0
#: Seconds ``recover`` gives a lock with no holder line yet before taking its maker for dead (a live
#: maker writes it just after its mkdir; the margin covers a networked client's 1 s attribute cache).
EMPTY_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a restore lock: a process on a host (``started``: its start time, to tell a reused pid)."""

    host: str
    pid: int
    started: str = ""

    @property
    def local(self) -> bool:
        """True if the holder is on this host."""
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """Whether the holder may still be running: checked on this host; assumed for another host's."""
        return not self.local or (self.pid > 0 and _start_time(self.pid) == self.started)

    def __str__(self) -> str:
        return f"process {self.pid} on {self.host}"


class RestoreLock:
    """A held restore lock; ``release`` it (also on failure). Valid while its hot root (``HotRoot``) is open.

    Held by name, not by an open descriptor: on a networked filesystem every
    open and close of the lock folder is a round trip, so the holder line is
    set, and checked again at ``release``, through the folder's name. The
    line names this one hold (host, pid, start time, hold number), so it
    tells our lock from one that was broken and taken afresh as surely as
    its inode would.
    """

    def __init__(self, dir_fd: int, name: bytes, line: bytes) -> None:
        self.dir_fd = dir_fd  # (the lock's shard folder: open as long as the hot root is)
        self.name = name
        self.line = line
        #: Another restorer held the lock first (``acquire`` waited for it): the file may be restored now.
        self.waited = False
        self._held = True
        self._held_lock = threading.Lock()  # (a refresh never touches a lock released meanwhile)
        _refresher.add(self)

    def refresh(self) -> None:
        """Move the lock's mtime to now, if it is still ours: its holder is alive."""
        with self._held_lock:
            if not self._held:
                return
            try:
                if _line_of(self.dir_fd, self.name) == self.line:
                    os.utime(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
            except OSError:
                pass  # a refresh that fails leaves the lock as it was; the next one tries again

    def release(self) -> None:
        """Remove the lock, if it is still ours (a stale-judged lock may have been broken and taken)."""
        _refresher.remove(self)
        with self._held_lock:
            if not self._held:
                return
            self._held = False
            ours = _line_of(self.dir_fd, self.name) == self.line
        if ours:
            _drop(self.dir_fd, self.name)


def lock_path(rel: bytes) -> bytes:
    """Where the restore lock of the file at ``rel`` lives, relative to the hot tier's root."""
    digest = _digest(rel)
    return b"/".join((STATE_DIR, b"locks", digest[:2], LOCK_PREFIX.encode() + digest))


def _digest(rel: bytes) -> bytes:
    return hashlib.blake2b(rel, digest_size=8).hexdigest().encode()


def _place(where: Entry) -> tuple[int, bytes]:
    """The lock of ``where``: its folder's descriptor and its name in it."""
    digest = _digest(where.rel)
    return where.root.state_dir(b"locks", digest[:2]), LOCK_PREFIX.encode() + digest


def holder_of(where: Entry, host_only: bool = False) -> Holder | None:
    """Who holds the restore lock of ``where`` now (None: nobody, or a lock still being written).

    For the access guard: opens of a stub by its lock holder (a ``tiering
    restore`` opens the stub it restores) are let through at once.
    ``host_only``: the hot tier is on this host's own disk (see ``try_acquire``).
    """
    if host_only and (held := hostlock.holder(where, _digest(where.rel))) is not None:
        return _local_holder(held.pid)
    seen = _read(*_place(where))
    return _parse(seen[0]) if seen else None


def try_acquire(where: Entry, host_only: bool = False) -> RestoreLock | HostLock | Holder:
    """Take ``where``'s restore lock, breaking a stale one; else the live holder (not waiting).

    ``host_only``: the hot tier is on a local filesystem, written by this
    host's processes only, so the lock is a record lock (``hostlock``: no
    inode made and removed per restore). A ``mkdir`` lock found as well (an
    earlier version's restorer) is still respected.
    """
    if not host_only:
        return _try_dir_lock(where)
    got = hostlock.try_acquire(where, _digest(where.rel))
    if isinstance(got, hostlock.Held):
        return _local_holder(got.pid)
    dir_fd, name = _place(where)
    seen = _read(dir_fd, name)
    if seen is not None:
        held = _parse(seen[0]) or Holder("?", 0)
        if not _stale(held, seen[1]):
            got.release()
            return held
        _break(dir_fd, name, seen[0])  # (a dead holder's: nobody else clears it)
    return got


def _local_holder(pid: int) -> Holder:
    return Holder(socket.gethostname(), pid, _start_time(pid) if pid > 0 else "")


def _try_dir_lock(where: Entry) -> RestoreLock | Holder:
    dir_fd, name = _place(where)
    line = _line()
    holder = Holder("?", 0)
    for _ in range(4):  # (a lock released or broken between our tries: try again, a few times)
        if _claim(dir_fd, name, line):
            return RestoreLock(dir_fd, name, line)
        seen = _read(dir_fd, name)
        if seen is None:
            continue
        content, mtime = seen
        holder = _parse(content) or Holder("?", 0)
        if not _stale(holder, mtime):
            return holder
        _break(dir_fd, name, content)
    return holder


async def acquire(where: Entry, wait: float, io: HotIO | None = None,
                  host_only: bool = False) -> RestoreLock | HostLock | Holder:
    """``try_acquire``, waiting up to ``wait`` seconds (polling with backoff) for a live holder to finish;
    the holder if it is still held then. ``io`` runs each try (inline when None)."""
    async def attempt() -> RestoreLock | HostLock | Holder:
        return await io.acquire(try_acquire, _let_go, where, host_only) if io else try_acquire(where, host_only)

    deadline, pause = time.monotonic() + wait, _FIRST_PAUSE
    got = await attempt()
    waited = False
    while isinstance(got, Holder) and (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(pause, left))
        pause = min(pause * 2, _LONGEST_PAUSE)
        got, waited = await attempt(), True
    if not isinstance(got, Holder):
        got.waited = waited
    return got


def _let_go(got: RestoreLock | HostLock | Holder) -> None:
    if not isinstance(got, Holder):
        got.release()


def clear_dead(where: Entry) -> Holder | None:
    """Remove ``where``'s restore lock if its holder is a process of this host that is gone (for
    ``recover``); returns that holder, or None when there was no such lock. A lock an earlier
    version left beside the stub is looked for too."""
    found = None
    legacy = LOCK_PREFIX.encode() + hashlib.blake2b(where.name, digest_size=8).hexdigest().encode()
    for dir_fd, name in (_place(where), (where.dir_fd, legacy)):
        seen = _read(dir_fd, name)
        if seen is not None and not seen[0] and (young := EMPTY_GRACE - (time.time() - seen[1])) > 0:
            # No line yet: a live claimer writes it right after its mkdir; give it the grace to show.
            time.sleep(young)
            seen = _read(dir_fd, name)
        if seen is None:
            continue
        holder = _parse(seen[0])
        if seen[0] and (holder is None or not holder.local or holder.alive()):
            continue
        # A dead holder of this host; or a lock still empty after the grace: its maker died between the
        # mkdir and writing its line (a SIGKILL while another thread was taking a lock).
        _break(dir_fd, name, seen[0])
        found = found or holder or Holder("?", 0)
    return found


# -- the filesystem primitive ---------------------------------------------------------------------


def _claim(dir_fd: int, name: bytes, line: bytes) -> bool:
    """Make the lock ``name`` holding ``line``, atomically: True, or False if it exists.

    The lock is a directory: ``mkdir`` was exclusive across two nodes of a
    networked filesystem where ``O_CREAT | O_EXCL`` was not (two SeaweedFS
    FUSE mounts of one filer path: ``mkdir`` had one winner in 200 of 200
    races; ``O_EXCL`` let both win in 148 of 200, ``link`` in 10 of 50).
    The line goes in an xattr of the directory, set through its name (on a
    networked filesystem a file inside it would cost a create, a data write
    and an unlink, and opening the directory an open and a close: each a
    round trip).
    """
    try:
        os.mkdir(name, 0o755, dir_fd=dir_fd)
    except FileExistsError:
        return False
    try:
        try:
            os.setxattr(_at(dir_fd, name), _HOLDER_XATTR, line, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
            fd = os.open(name, _O_LOCK_DIR, dir_fd=dir_fd)  # (a filesystem without user xattrs)
            try:
                _write_holder_file(fd, line)
            finally:
                os.close(fd)
    except BaseException:
        _drop(dir_fd, name)
        raise
    return True


def _at(dir_fd: int, name: bytes) -> bytes:
    """A path name of ``name`` in the folder ``dir_fd`` that resolves through that descriptor."""
    return b"/proc/self/fd/%d/%s" % (dir_fd, name)


def _line_of(dir_fd: int, name: bytes) -> bytes | None:
    """The holder line of the lock ``name`` (b'' while it is being written), read through its name;
    None if there is no lock."""
    try:
        return os.getxattr(_at(dir_fd, name), _HOLDER_XATTR, follow_symlinks=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    seen = _read(dir_fd, name)  # (a filesystem without user xattrs: the line is in a file)
    return seen[0] if seen else None


def _write_holder_file(lock_fd: int, line: bytes) -> None:
    holder = os.open(_HOLDER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                     dir_fd=lock_fd)
    try:
        os.write(holder, line)
    finally:
        os.close(holder)


def _read(dir_fd: int, name: bytes) -> tuple[bytes, float] | None:
    """The lock's line (b'' while it is being written) and mtime, or None if there is no lock."""
    try:
        fd = os.open(name, _O_LOCK_DIR, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    try:
        mtime = os.fstat(fd).st_mtime
        try:
            return os.getxattr(fd, _HOLDER_XATTR), mtime
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
        try:  # no xattr: a lock on a filesystem without them, or one an earlier version made
            holder = os.open(_HOLDER, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
        except FileNotFoundError:
            return b"", mtime
        try:
            return os.read(holder, 512), mtime
        finally:
            os.close(holder)
    finally:
        os.close(fd)


def _drop(dir_fd: int, name: bytes) -> None:
    """Remove the lock ``name`` (the directory; first its holder file, where it has one), if it is there."""
    try:
        os.rmdir(name, dir_fd=dir_fd)
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno != errno.ENOTEMPTY:
            raise
    try:
        fd = os.open(name, _O_LOCK_DIR, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    try:
        os.unlink(_HOLDER, dir_fd=fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


_HOLDER = b"holder"
_HOLDER_XATTR = "user.tiering.holder"
_O_LOCK_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# -- staleness ---------------------------------------------------------------------------------


def _line() -> bytes:
    pid = os.getpid()
    if _whoami[0] != pid:  # (once per process: a forked child is another holder)
        _whoami[:] = [pid, f"{socket.gethostname()} {pid} {_start_time(pid)}"]
    return f"{_whoami[1]} {next(_holds)}\n".encode()


_whoami: list = [0, ""]
_holds = itertools.count(1)  # numbers this process's holds (cheaper than random bytes, and as unique)


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _parse(content: bytes) -> Holder | None:
    fields = content.decode(errors="replace").split()
    if len(fields) != 4 or not fields[1].isdigit():
        return None  # (being written: the creator writes its line right after the create)
    return Holder(fields[0], int(fields[1]), fields[2])


def _stale(holder: Holder, mtime: float) -> bool:
    if holder.local:
        return not holder.alive()
    return time.time() - mtime > STALE_AFTER  # another host's holder, or a line never written


def _break(dir_fd: int, name: bytes, judged: bytes) -> None:
    """Remove the stale lock ``name`` whose line was ``judged``; a fresh lock in its place is put back."""
    aside = name + b".broken-" + secrets.token_hex(4).encode()
    try:
        os.rename(name, aside, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except FileNotFoundError:
        return  # another restorer broke it first
    moved = _read(dir_fd, aside)
    if moved is not None and moved[0] != judged:  # taken afresh between our look and the rename: put it back
        try:
            os.rename(aside, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
        except OSError:
            pass  # a third restorer took it meanwhile (its lock is not empty): that one holds it now
    _drop(dir_fd, aside)


def _start_time(pid: int) -> str:
    """The process's start time (clock ticks after boot), '' if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


class _Refresher:
    """One thread that refreshes every lock this process holds, running only while it holds any."""

    def __init__(self) -> None:
        self._held: set[RestoreLock] = set()
        self._cond = threading.Condition()
        self._running = False

    def add(self, lock: RestoreLock) -> None:
        with self._cond:
            self._held.add(lock)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="tiering-restore-locks", daemon=True).start()

    def remove(self, lock: RestoreLock) -> None:
        with self._cond:
            self._held.discard(lock)
            if not self._held:
                self._cond.notify()

    def _run(self) -> None:
        due = time.monotonic() + REFRESH_EVERY
        while True:
            with self._cond:
                while self._held and (left := due - time.monotonic()) > 0:
                    self._cond.wait(left)
                if not self._held:
                    self._running = False
                    return
                held = list(self._held)
            for lock in held:
                lock.refresh()
            due = time.monotonic() + REFRESH_EVERY


_refresher = _Refresher()
