"""Filesystem-wide change events for the hot tier: fanotify with a filesystem mark and file handles.

Between full scans the daemon keeps the inventory current from the kernel's
own change events instead of rescanning (``tiering.scan.delta``). One
notification-class fanotify group holds one ``FAN_MARK_FILESYSTEM`` mark on the
filesystem of the hot tier and asks for ``FAN_REPORT_DFID_NAME``: every event
names its directory by a file handle plus the entry's name, so no watch per
directory is needed (inotify needs one per directory, up to
``fs.inotify.max_user_watches``). It takes root (``CAP_SYS_ADMIN`` for the mark,
``CAP_DAC_READ_SEARCH`` to open handles), and it sees the whole filesystem: when
the hot tier is one folder of a busy filesystem, the events elsewhere cost a
handle lookup per directory and batch before they are dropped. Events: create, modify, attribute change,
delete, moved from/to, and delete-self. Reads are not events (a read moves
``atime`` at most once a day under ``relatime``; heat comes from the access
guard and the periodic comparison of snapshots, not from here).

The reader thread only parses and enqueues (directory handle, name, flags);
``take`` hands a batch to the daemon's thread, which resolves each distinct
directory handle once (``open_by_handle_at`` on the hot tier's fd, then the
path of the descriptor) and keeps the names under the hot tier, leaving
``.tiering`` out. A handle whose directory is gone (``ESTALE``/``ENOENT``, or an
unlinked directory) is dropped: that directory's own delete or move event, seen
in its parent, removes its whole subtree. A directory deleted or moved is a
*tree* (its subtree is re-listed, ``tiering.scan.delta``), anything
else is one path (its ``lstat`` now, or a tombstone), and so is the directory
an entry was added to or removed from (its mtime moved).

``FAN_Q_OVERFLOW`` (the kernel dropped events) sets ``overflowed``; a reader
that dies sets ``lost``: either way the daemon marks the deltas incomplete and
the next plan scans in full. Where the events are delivered (probed on this
project's test machine, Linux 6.18):

- ext4 (this machine's root filesystem) and xfs (a loop-mounted image): yes;
- tmpfs: yes (since Linux 6.7 tmpfs reports a filesystem id, which file
  handles need; an older kernel refuses the mark and the daemon falls back);
- FUSE (the SeaweedFS ``weed mount``): no, the mark is refused (``ENODEV``: the
  mount has no file handles or filesystem id). Even where a FUSE server exports
  handles, fanotify sees only this host's own calls through this mount, never
  another node's, so a networked filesystem is followed by periodic scans.

Where the mark is refused, ``[daemon] changes = "auto"`` logs one line and keeps
the periodic full scans; ``"fanotify"`` refuses to start.

Not followed exactly: reads (atime, above); and a hard-linked file changed
through one of its names leaves its other names' rows as they were until the
next full scan (the event names only the path that was used).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tiering.access.fanotify import FAN_MARK_FILESYSTEM, FAN_NONBLOCK, FAN_Q_OVERFLOW, METADATA, notification_group
from tiering.scan.delta import DeltaLog

FAN_MODIFY = 0x2
FAN_ATTRIB = 0x4
FAN_MOVED_FROM = 0x40
FAN_MOVED_TO = 0x80
FAN_CREATE = 0x100
FAN_DELETE = 0x200
FAN_DELETE_SELF = 0x400
FAN_ONDIR = 0x40000000
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME
#: What the listener asks for: every change of a name or of what ``lstat`` reports.
CHANGES = (FAN_CREATE | FAN_MODIFY | FAN_ATTRIB | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_DELETE_SELF
           | FAN_ONDIR)
#: Events that add or remove a directory entry (the directory's own mtime and size move).
_ENTRY_EVENTS = FAN_CREATE | FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO
#: ... and, of a directory, those that change a whole subtree: a move brings or takes all its paths at once;
#: after an rmdir the events of its late children may name a directory no handle opens any more. (A new
#: directory is empty: its children come with events of their own.)
_TREE_EVENTS = FAN_DELETE | FAN_MOVED_FROM | FAN_MOVED_TO

_INFO_DFID_NAME, _INFO_DFID, _INFO_FID = 2, 3, 1
_INFO_HEADER = struct.Struct("=BBH")  # info_type, pad, len
_FSID = 8
_HANDLE_HEADER = struct.Struct("=Ii")  # handle_bytes, handle_type
_STATE_DIR = b".tiering"
_POLL_SECONDS = 0.2
_READ_BYTES = 256 * 1024


@dataclass
class Batch:
    """What the listener saw since the last ``take``, still as handles: ``resolve`` turns it into paths."""

    names: set[tuple[bytes, bytes, bool]] = field(default_factory=set)  # (dir handle, name, is a tree)
    overflowed: bool = False


@dataclass(frozen=True)
class Changed:
    """Paths (relative to the hot tier) whose ``lstat`` may differ now, and directories whose subtrees may."""

    paths: frozenset[bytes]
    trees: frozenset[bytes]


class ChangeListener:
    """Follows every change on the hot tier's filesystem (see the module doc); ``start`` raises
    ``FanotifyUnsupported`` with the reason where the kernel or the filesystem will not deliver them."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(os.path.realpath(root))
        self._root_bytes = os.fsencode(self.root)
        self._fd = self._mount_fd = -1
        self._lock = threading.Lock()
        self._batch = Batch()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None  # why the reader stopped, when it did on its own
        self._marker: bytes | None = None
        self._marked = threading.Event()

    def start(self) -> None:
        self._mount_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._fd = notification_group(FAN_REPORT_DFID_NAME | FAN_NONBLOCK, FAN_MARK_FILESYSTEM, CHANGES,
                                          self._mount_fd)
        except BaseException:
            os.close(self._mount_fd)
            self._mount_fd = -1
            raise
        self._thread = threading.Thread(target=self._read_loop, name="tiering-changes", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.lost is None

    def take(self) -> Batch:
        """The events since the last call (and whether the kernel dropped any), as one batch."""
        with self._lock:
            batch, self._batch = self._batch, Batch()
        return batch

    def catch_up(self, timeout: float = 5.0) -> bool:
        """Wait until every change made before this call has been read (a marker file created and removed in
        the hot tier's ``.tiering``, which the inventory leaves out); False on timeout."""
        state = self.root / os.fsdecode(_STATE_DIR)
        state.mkdir(exist_ok=True)
        self._marker = f".changes-{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}".encode()
        self._marked.clear()
        marker = state / os.fsdecode(self._marker)
        marker.touch()
        marker.unlink()
        return self._marked.wait(timeout)

    def resolve(self, batch: Batch) -> Changed:
        """The batch's paths under the hot tier (each directory handle opened once; I/O, so not in the reader)."""
        dirs: dict[bytes, bytes | None] = {}
        paths, trees = set(), set()
        for handle, name, tree in batch.names:
            if handle not in dirs:
                dirs[handle] = self._relative(handle)
            parent = dirs[handle]
            if parent is None:
                continue
            rel = parent + b"/" + name if parent and name else parent or name
            if not rel or rel == _STATE_DIR or rel.startswith(_STATE_DIR + b"/"):
                continue
            (trees if tree else paths).add(rel)
        return Changed(frozenset(paths), frozenset(trees))

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for fd in (self._fd, self._mount_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._mount_fd = -1

    def __enter__(self) -> ChangeListener:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the reader thread: parse and enqueue, no other I/O ----------------------------------------

    def _read_loop(self) -> None:
        try:
            poller = select.poll()
            poller.register(self._fd, select.POLLIN)
            while not self._stop.is_set():
                if not poller.poll(_POLL_SECONDS * 1000):
                    continue
                try:
                    data = os.read(self._fd, _READ_BYTES)
                except BlockingIOError:
                    continue
                self._enqueue(parse_events(data))
        except Exception as exc:  # the daemon sees ``lost`` and stops trusting the deltas
            self.lost = f"{type(exc).__name__}: {exc}"

    def _enqueue(self, events: list[tuple[int, bytes | None, bytes]]) -> None:
        with self._lock:
            for mask, handle, name in events:
                if mask & FAN_Q_OVERFLOW:
                    self._batch.overflowed = True
                elif name == self._marker:
                    self._marked.set()
                elif handle is not None:
                    tree = bool(mask & FAN_ONDIR and mask & _TREE_EVENTS and name)
                    self._batch.names.add((handle, name, tree))
                    if mask & _ENTRY_EVENTS:  # an entry came or went: the directory's own mtime and size moved
                        self._batch.names.add((handle, b"", False))

    # -- resolving handles -----------------------------------------------------------------------

    def _relative(self, handle: bytes) -> bytes | None:
        """The directory ``handle`` names, relative to the hot tier (b"" for its root); None when it is gone
        or outside the hot tier."""
        path = open_handle_path(self._mount_fd, handle)
        if path is None:
            return None
        if path == self._root_bytes:
            return b""
        if path.startswith(self._root_bytes + b"/"):
            return path[len(self._root_bytes) + 1:]
        return None


def parse_events(data: bytes) -> list[tuple[int, bytes | None, bytes]]:
    """``(mask, directory handle, name)`` of each event record in ``data`` (handle None: no fid record, as in
    ``FAN_Q_OVERFLOW``); a handle is ``struct file_handle`` as ``open_by_handle_at`` takes it."""
    events, at = [], 0
    while at + METADATA.size <= len(data):
        length, version, _, meta_len, mask, fd, _ = METADATA.unpack_from(data, at)
        if length < METADATA.size:
            raise OSError(errno.EPROTO, f"fanotify event of {length} bytes (format {version})")
        if fd >= 0:  # not expected of a fid group; never leak it
            os.close(fd)
        handle, name, info = None, b"", at + meta_len
        while info + _INFO_HEADER.size <= at + length:
            kind, _, info_len = _INFO_HEADER.unpack_from(data, info)
            if info_len == 0:
                break
            if kind in (_INFO_DFID_NAME, _INFO_DFID, _INFO_FID) and handle is None:
                handle, name = _handle_and_name(data[info + _INFO_HEADER.size + _FSID:info + info_len],
                                                kind == _INFO_DFID_NAME)
            info += info_len
        events.append((mask, handle, name))
        at += length
    return events


def _handle_and_name(record: bytes, named: bool) -> tuple[bytes, bytes]:
    size, _ = _HANDLE_HEADER.unpack_from(record)
    end = _HANDLE_HEADER.size + size
    name = record[end:].split(b"\0", 1)[0] if named else b""
    return record[:end], (b"" if name == b"." else name)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
_libc.open_by_handle_at.restype = ctypes.c_int
#: A directory that vanished before its handle was opened (or a handle this filesystem no longer knows).
_GONE = frozenset({errno.ESTALE, errno.ENOENT})


def open_handle_path(mount_fd: int, handle: bytes) -> bytes | None:
    """The path (bytes) of the object ``handle`` names on the filesystem of ``mount_fd``; None when it is gone
    (``ESTALE``/``ENOENT``, or a directory already unlinked). Needs ``CAP_DAC_READ_SEARCH``."""
    fd = _libc.open_by_handle_at(mount_fd, handle, os.O_PATH | os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        if err in _GONE:
            return None
        raise OSError(err, f"open_by_handle_at: {os.strerror(err)}")
    try:
        if os.fstat(fd).st_nlink == 0:
            return None
        return os.readlink(f"/proc/self/fd/{fd}".encode())
    finally:
        os.close(fd)


class Follower:
    """Keeps the deltas of the latest full snapshot current from a ``ChangeListener`` (the daemon's side).

    ``begin_scan`` before a full scan starts and ``rebase`` once it is written: changes seen in between may
    or may not be in the new snapshot, so they are listed again as its first delta (rows are ``lstat`` now,
    so listing a change twice is harmless). ``flush`` writes what was seen since the last one; a dropped
    event or a lost reader marks the deltas incomplete (``tiering.scan.delta``) and is returned as a reason.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.listener = ChangeListener(root)
        self.log: DeltaLog | None = None
        self._window: tuple[set[bytes], set[bytes]] | None = None  # seen since a full scan began
        self._window_overflowed = False
        self.broken: str | None = None  # why the current deltas are incomplete

    def start(self) -> None:
        """``FanotifyUnsupported`` (with the reason) where the events are not delivered."""
        self.listener.start()

    @property
    def alive(self) -> bool:
        return self.listener.alive

    def begin_scan(self) -> None:
        self.flush()
        self._window, self._window_overflowed = (set(), set()), False

    def end_scan(self) -> None:
        """The full scan begun with ``begin_scan`` failed: stop remembering changes for it."""
        self._window = None

    def rebase(self, snapshot: Path, buckets: int) -> None:
        """Follow ``snapshot`` (a full scan begun after ``begin_scan``) from now on."""
        self.flush()
        paths, trees = self._window or (set(), set())
        overflowed, self._window = self._window_overflowed, None
        self.log, self.broken = DeltaLog(snapshot, self.listener.root, buckets), None
        now = time.time()
        self.log.begin(now)
        if overflowed or self.listener.lost:
            self.give_up("events were dropped while the full scan ran" if overflowed else self.listener.lost)
        else:
            self.log.append(frozenset(paths), frozenset(trees), now)

    def flush(self) -> str | None:
        """Write the changes seen since the last flush as a delta; the reason the deltas became incomplete,
        if they just did."""
        through = time.time()
        batch = self.listener.take()
        if not self.listener.alive:  # (its handles cannot be opened any more, nor are they all there)
            self._window_overflowed = True
            if self.log is None or self.broken:
                return None
            return self.give_up(f"the change listener stopped ({self.listener.lost or 'closed'})")
        changed = self.listener.resolve(batch)
        if self._window is not None:
            self._window[0].update(changed.paths)
            self._window[1].update(changed.trees)
            self._window_overflowed |= batch.overflowed
        if self.log is None or self.broken:
            return None
        if batch.overflowed:
            return self.give_up("the kernel's event queue overflowed (FAN_Q_OVERFLOW)")
        if self.log.superseded:
            return self.give_up("a newer full snapshot was marked latest")
        self.log.append(changed.paths, changed.trees, through)
        return None

    def give_up(self, reason: str) -> str:
        """Mark the deltas incomplete for ``reason`` (returned): the next plan scans in full."""
        self.broken = reason
        if self.log is not None:
            self.log.incomplete(reason)
        return reason

    def close(self) -> None:
        self.listener.close()


__all__ = ["Batch", "ChangeListener", "Changed", "Follower", "open_handle_path", "parse_events"]
