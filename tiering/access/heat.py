"""Heat from the kernel: every open of a hot-tier file by any process on this node.

The daemon's heat comes from inotify (watchdog), which needs a watch per
directory and misses what inotify does not report. The guard can do better
with one more fanotify group: a *notification* group (it never blocks a
reader) with one mark on the hot tier's whole filesystem, reporting each
``FAN_OPEN`` as the opened file's directory (a file handle) and name, so
no file is opened on our side. mmap readers, ``sendfile``, ``O_DIRECT`` and
processes in other mount namespaces all open their files first: all counted.

Directory handles are turned into paths with ``open_by_handle_at`` (cached);
opens outside the hot tier, and our own, are dropped. The counts go, every
``FLUSH_EVERY`` seconds, to this host's *heat log* in the ``[guard] dir``
(``HOST.heat``: a hex-encoded path per line), which the catalog's owner takes
and applies (``handoff.apply_heat``): the guard never writes the catalog.
When the kernel's queue overflows, some opens are lost: heat only ranks files.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import threading
import time
from pathlib import Path

from tiering.access.fanotify import (
    FAN_MARK_FILESYSTEM,
    FAN_NONBLOCK,
    FAN_OPEN,
    FAN_Q_OVERFLOW,
    METADATA,
    FanotifyUnsupported,
    notification_group,
)

log = logging.getLogger("tiering.guard")

FAN_REPORT_DIR_FID, FAN_REPORT_NAME = 0x400, 0x800
_INFO_DFID_NAME = 2
_INFO_HEADER = struct.Struct("=BBH")  # info_type, pad, len; then fsid (8 bytes), then a struct file_handle
_HANDLE_HEAD = struct.Struct("=Ii")  # handle_bytes, handle_type
#: How often the counted opens go to the heat log.
FLUSH_EVERY = 2.0
#: Directory handles remembered (their paths), before the cache starts over.
CACHE_DIRS = 65536


def heat_group(hot: Path) -> int:
    """A notification group marking the whole filesystem of ``hot`` for opens (``FanotifyUnsupported``).

    The keeper creates it and holds it, like the permission group: if the worker
    that reads it owned it, a worker killed while a reader waits on the guard
    would hang in the kernel tearing it down (the waiting reader holds a reference
    to this group's mark until it is answered, which only the next worker can do).
    """
    try:
        fd = os.open(hot, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return notification_group(FAN_NONBLOCK | FAN_REPORT_DIR_FID | FAN_REPORT_NAME, FAN_MARK_FILESYSTEM,
                                      FAN_OPEN, fd)
        finally:
            os.close(fd)
    except FanotifyUnsupported:
        raise  # (an OSError too, saying why already)
    except OSError as exc:  # anything else this filesystem will not take: no heat, the guard still serves
        raise FanotifyUnsupported(f"no whole-filesystem mark here ({exc.strerror})", exc.errno or 0) from None


class HeatWatch:
    """A thread counting opens under ``hot`` (reported by the group ``fd``: ``heat_group``) into the heat
    log ``log_path``; ``start``/``stop``. The group stays its creator's to close."""

    def __init__(self, fd: int, hot: Path, log_path: Path) -> None:
        self.hot = os.fsencode(hot) + b"/"
        self.log_path = log_path
        self.seen = 0  # opens counted since start
        self.lost = 0  # times the kernel's queue overflowed
        libc = ctypes.CDLL(None, use_errno=True)
        libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self._libc = libc
        self.fd = fd
        self._mount_fd = os.open(hot, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs: dict[bytes, bytes | None] = {}  # handle -> directory under the hot tier ('' for its top), None
        self._counted: list[bytes] = []
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name="guard-heat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(timeout=10)
        self._flush()
        for fd in (self._mount_fd, self._stop_r, self._stop_w):
            os.close(fd)

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        me, due = os.getpid(), time.monotonic() + FLUSH_EVERY
        while True:
            ready = {fd for fd, _ in poller.poll(int(FLUSH_EVERY * 1000))}
            if self._stop_r in ready:
                return
            try:
                data = os.read(self.fd, 256 * 1024)
            except BlockingIOError:
                data = b""
            except OSError as exc:
                log.warning("heat events: %s", exc)
                data = b""
            self._take(data, me)
            if time.monotonic() >= due:
                self._flush()
                due = time.monotonic() + FLUSH_EVERY

    def _take(self, data: bytes, me: int) -> None:
        at = 0
        while at + METADATA.size <= len(data):
            length, _, _, meta_len, mask, _, pid = METADATA.unpack_from(data, at)
            if mask & FAN_Q_OVERFLOW:
                self.lost += 1
            elif pid != me:
                info = at + meta_len
                while info + _INFO_HEADER.size <= at + length:
                    kind, _, info_len = _INFO_HEADER.unpack_from(data, info)
                    if kind == _INFO_DFID_NAME:
                        size, _ = _HANDLE_HEAD.unpack_from(data, info + 12)
                        handle = data[info + 12: info + 20 + size]
                        name = data[info + 20 + size: info + info_len].split(b"\0", 1)[0]
                        self._count(handle, name)
                    info += max(info_len, _INFO_HEADER.size)
            at += max(length, METADATA.size)

    def _count(self, handle: bytes, name: bytes) -> None:
        if handle not in self._dirs:
            if len(self._dirs) >= CACHE_DIRS:
                self._dirs.clear()
            self._dirs[handle] = self._where(handle)
        folder = self._dirs[handle]
        if folder is not None and name and not name.startswith(b".tiering-"):
            self._counted.append(folder + name)
            self.seen += 1

    def _where(self, handle: bytes) -> bytes | None:
        """The directory ``handle`` names, relative to the hot tier (with a trailing slash), or None."""
        fd = self._libc.open_by_handle_at(self._mount_fd, handle, os.O_PATH | os.O_CLOEXEC)
        if fd < 0:
            return None  # gone, or on another filesystem's mount we cannot reach
        try:
            path = os.fsencode(os.readlink(f"/proc/self/fd/{fd}")) + b"/"
        except OSError:
            return None
        finally:
            os.close(fd)
        return path[len(self.hot):] if path.startswith(self.hot) or path == self.hot else None

    def _flush(self) -> None:
        counted, self._counted = self._counted, []
        if not counted:
            return
        try:
            # One write per flush, appended to a file opened afresh: the owner renames the log away
            # to take it, and the next flush starts a new one.
            fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"".join(p.hex().encode() + b"\n" for p in counted))
            finally:
                os.close(fd)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                log.warning("heat log %s: %s (%d opens not counted)", self.log_path, exc, len(counted))
