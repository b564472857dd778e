"""The few fanotify calls the access guard needs, through ctypes.

Why our own layer: PyPI's ``pyfanotify`` (0.3.0, 2024) runs its own C event
loop that matches rules and forwards notifications; it cannot hold a
permission event while Python restores a file and then answer it, nor answer
with an errno (``FAN_DENY_ERRNO``, Linux 6.14). What the guard needs is small:
create a group, mark directories by descriptor, read event records, write
responses. This module does exactly that and nothing else.

The group is ``FAN_CLASS_PRE_CONTENT`` when the kernel allows it (only that
class may deny with ``EIO`` instead of ``EPERM``), else ``FAN_CLASS_CONTENT``.
Either way the guard asks only for ``FAN_OPEN_PERM``: the probes showed
pre-content range events do not help a zero-length stub, and a FUSE mount
refuses them. Marks go on directories with ``FAN_EVENT_ON_CHILD``, so an open
of any file in a directory that holds stubs is held until the guard answers;
a directory without stubs costs its readers nothing.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_CLASS_CONTENT = 0x4
FAN_CLASS_PRE_CONTENT = 0x8
FAN_UNLIMITED_QUEUE = 0x10
FAN_UNLIMITED_MARKS = 0x20

FAN_MARK_ADD = 0x1
FAN_MARK_FILESYSTEM = 0x100

FAN_OPEN = 0x20
FAN_OPEN_PERM = 0x10000
FAN_Q_OVERFLOW = 0x4000
FAN_EVENT_ON_CHILD = 0x08000000

FAN_ALLOW = 0x1
FAN_DENY = 0x2

METADATA = struct.Struct("=IBBHQii")  # event_len, vers, reserved, metadata_len, mask, fd, pid
_RESPONSE = struct.Struct("=iI")  # fd, response
_METADATA_VERSION = 3


class FanotifyUnsupported(OSError):
    """fanotify permission events cannot be used here; ``reason`` says why in a few words."""

    def __init__(self, reason: str, err: int = 0) -> None:
        super().__init__(err, reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Event:
    """One permission event: the opened file (``fd``, ours to close) and the opening process."""

    mask: int
    fd: int
    pid: int


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
    libc.fanotify_init.restype = ctypes.c_int
    libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
    libc.fanotify_mark.restype = ctypes.c_int
    return libc


def deny_errno(err: int) -> int:
    """The response that fails the opener with ``err`` (``FAN_DENY_ERRNO``, pre-content groups only)."""
    return FAN_DENY | ((err & 0xFF) << 24)


class Group:
    """A content-class fanotify group (``Group.create()``); a forked worker uses its parent's."""

    def __init__(self, fd: int, errno_responses: bool) -> None:
        self.fd = fd
        #: The kernel lets this group fail an opener with EIO (pre-content class); else openers get EPERM.
        self.errno_responses = errno_responses
        self._libc = _libc()

    @classmethod
    def create(cls) -> Group:
        """A new group; ``FanotifyUnsupported`` when the kernel or our privileges do not allow one."""
        libc = _libc()
        # The event fds are opened read-write, so the guard can fill a stub through the very file
        # the reader is opening; they are close-on-exec so a worker we start never inherits them.
        event_flags = os.O_RDWR | os.O_LARGEFILE | os.O_CLOEXEC
        last = 0
        for klass, errno_ok in ((FAN_CLASS_PRE_CONTENT, True), (FAN_CLASS_CONTENT, False)):
            fd = libc.fanotify_init(klass | FAN_CLOEXEC | FAN_UNLIMITED_QUEUE | FAN_UNLIMITED_MARKS, event_flags)
            if fd >= 0:
                return cls(fd, errno_ok)
            last = ctypes.get_errno()
            if last != errno.EINVAL:
                break
        if last == errno.EPERM:
            raise FanotifyUnsupported("needs root (CAP_SYS_ADMIN) for fanotify permission events", last)
        if last == errno.ENOSYS:
            raise FanotifyUnsupported("this kernel has no fanotify", last)
        if last == errno.EINVAL:
            raise FanotifyUnsupported("this kernel has no fanotify permission events "
                                      "(CONFIG_FANOTIFY_ACCESS_PERMISSIONS)", last)
        raise FanotifyUnsupported(f"fanotify_init failed: {os.strerror(last)}", last)

    def mark_dir(self, dir_fd: int) -> None:
        """Hold every open of a file in the directory ``dir_fd`` until answered (``FanotifyUnsupported``
        when the filesystem refuses the mark)."""
        self._mark(FAN_MARK_ADD, FAN_OPEN_PERM | FAN_EVENT_ON_CHILD, dir_fd)

    def _mark(self, flags: int, mask: int, dir_fd: int) -> None:
        _mark(self._libc, self.fd, flags, mask, dir_fd)

    def read(self, size: int = 64 * 1024) -> list[Event]:
        """The events waiting (blocks until at least one, unless the fd is non-blocking)."""
        data = os.read(self.fd, size)
        events, at = [], 0
        while at + METADATA.size <= len(data):
            length, version, _, _, mask, fd, pid = METADATA.unpack_from(data, at)
            if version != _METADATA_VERSION or length < METADATA.size:
                raise OSError(errno.EPROTO, f"fanotify event format {version} is not the one this code reads")
            events.append(Event(mask, fd, pid))
            at += length
        return events

    def answer(self, fd: int, allow: bool, err: int = errno.EIO) -> bool:
        """Answer the event whose file is ``fd``; False when the kernel no longer waits on it (ENOENT)."""
        response = FAN_ALLOW if allow else (deny_errno(err) if self.errno_responses else FAN_DENY)
        try:
            os.write(self.fd, _RESPONSE.pack(fd, response))
            return True
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def notification_group(init_flags: int, mark_flags: int, mask: int, dir_fd: int) -> int:
    """A notification-class group (it never holds anybody's open up) with one mark on ``dir_fd``: its fd.

    ``FanotifyUnsupported`` when the kernel will not make one or the filesystem
    refuses the mark; ``OSError`` for any other failure of the mark.
    """
    libc = _libc()
    fd = libc.fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | init_flags, os.O_RDONLY)
    if fd < 0:
        err = ctypes.get_errno()
        raise FanotifyUnsupported(f"fanotify_init failed: {os.strerror(err)}", err)
    try:
        _mark(libc, fd, FAN_MARK_ADD | mark_flags, mask, dir_fd)
    except OSError:
        os.close(fd)
        raise
    return fd


def check_marks(dir_fd: int) -> None:
    """``FanotifyUnsupported`` if the filesystem of directory ``dir_fd`` refuses fanotify marks.

    Tried with a notification group, whose mark never holds anybody's open up
    (a permission mark would, for the instant it exists, with nobody to answer).
    """
    os.close(notification_group(0, 0, FAN_OPEN | FAN_EVENT_ON_CHILD, dir_fd))


def _mark(libc, group_fd: int, flags: int, mask: int, dir_fd: int) -> None:
    """Mark the object ``dir_fd`` refers to; a filesystem's refusal is ``FanotifyUnsupported``."""
    if libc.fanotify_mark(group_fd, flags, mask, dir_fd, None) == 0:
        return
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.ENODEV):
        raise FanotifyUnsupported(f"this filesystem refuses fanotify marks ({os.strerror(err)})", err)
    raise OSError(err, f"fanotify_mark: {os.strerror(err)}")
