"""Folders under a root, reached without following a symlink at any component.

A migration's local destination must never be written outside itself: with
``dst/sub -> /elsewhere``, the source file ``sub/f`` must not land in
``/elsewhere/f``. So every folder under the root is reached through directory
file descriptors: one ``openat2(2)`` with ``RESOLVE_BENEATH |
RESOLVE_NO_SYMLINKS`` where the kernel has it (Linux 5.6+), otherwise one
``openat(O_NOFOLLOW | O_DIRECTORY)`` per component (made with ``mkdirat`` on
the way when asked). The caller then acts on one name inside that folder
(``renameat``, ``unlinkat``, ``fstatat`` without following), so a symlink
anywhere below the root, even one swapped in mid-run, is refused with
``PathError`` (that file fails; the others go on) instead of followed.

The root itself is what the user named and is opened as given.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Sequence

from tiering.core.errors import PathError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x04, 0x08
_SYS_OPENAT2 = 437  # the same number on every Linux architecture (added after the syscall tables were unified)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class _Openat2:
    """``openat2`` through libc's ``syscall``; off for good once the kernel (or a sandbox) says it has none."""

    def __init__(self) -> None:
        self.available = os.uname().sysname == "Linux"
        self._syscall = None
        if self.available:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                self._syscall = libc.syscall
                self._syscall.restype = ctypes.c_long
            except (OSError, AttributeError):
                self.available = False

    def open_dir(self, dir_fd: int, path: bytes) -> int | None:
        """An fd for folder ``path`` beneath ``dir_fd``; None when openat2 cannot be used here."""
        if not self.available:
            return None
        how = _OpenHow(_DIR_FLAGS, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS)
        fd = self._syscall(_SYS_OPENAT2, ctypes.c_int(dir_fd), ctypes.c_char_p(path), ctypes.byref(how),
                           ctypes.c_size_t(ctypes.sizeof(how)))
        if fd >= 0:
            return fd
        err = ctypes.get_errno()
        if err in (errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL):  # no openat2 here (old kernel, seccomp)
            self.available = False
            return None
        raise OSError(err, os.strerror(err), os.fsdecode(path))


_openat2 = _Openat2()


def open_dir(root_fd: int, parts: Sequence[bytes], *, create: bool = False, where: str = "") -> int:
    """An fd for the folder ``root/parts...``, never through a symlink; the caller closes it.

    With ``create``, missing folders are made (mode 0777 less the umask).
    Raises ``PathError`` if a component is a symlink or not a folder,
    ``FileNotFoundError`` if one is missing and ``create`` is false.
    ``where`` names the root in messages.
    """
    if not parts:
        return os.dup(root_fd)
    try:
        fd = _openat2.open_dir(root_fd, b"/".join(parts))
    except OSError as exc:
        if exc.errno == errno.ENOENT and create:
            fd = None  # make the missing folders below, one component at a time
        elif exc.errno in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR):
            return _walk(root_fd, parts, create=False, where=where)  # names the component that is in the way
        else:
            raise
    return fd if fd is not None else _walk(root_fd, parts, create=create, where=where)


def _walk(root_fd: int, parts: Sequence[bytes], *, create: bool, where: str) -> int:
    fd = os.dup(root_fd)
    try:
        for i, name in enumerate(parts):
            child = _open_child(fd, name, create)
            if child is None:
                raise _refused(fd, parts[: i + 1], where)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def _open_child(fd: int, name: bytes, create: bool) -> int | None:
    """The child folder's fd; None if ``name`` is a symlink or not a folder."""
    for _ in range(2):
        try:
            return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):  # made meanwhile by another worker
                os.mkdir(name, dir_fd=fd)  # mkdirat never follows a symlink at the name: EEXIST
        except (NotADirectoryError, OSError) as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                return None
            raise
    return os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)


def _refused(fd: int, parts: Sequence[bytes], where: str) -> PathError:
    rel = os.fsdecode(b"/".join(parts))
    try:
        what = "a symlink" if stat.S_ISLNK(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode) \
            else "not a folder"
    except OSError:
        what = "not a folder"
    place = os.path.join(where, rel) if where else rel
    return PathError(f"{place} is {what}: nothing is written through it (it could lead outside {where or 'the tree'})",
                     path=b"/".join(parts))


def split_parent(rel: bytes) -> tuple[list[bytes], bytes]:
    """``b"a/b/c"`` -> ``([b"a", b"b"], b"c")``."""
    parts = rel.split(b"/")
    return parts[:-1], parts[-1]


__all__ = ["open_dir", "split_parent"]
