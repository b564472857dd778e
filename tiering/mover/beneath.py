"""Reaching a file under the hot tier without ever leaving it: no symlink is followed, at any component.

The contract: ``HotRoot(root).entry(rel)`` gives an ``Entry`` whose directory
is reached from ``root`` through real directories only. ``rel`` must be a
plain relative path (no empty, ``.`` or ``..`` component, no NUL); a symbolic
link at any *directory* component, or a resolution that would leave ``root``,
is refused with ``PathError`` naming the path, before anything is touched.
The last component is never followed either: ``lstat`` reports a symlink as
what it is, and ``open`` refuses one (``O_NOFOLLOW``). Every later operation
on the file (stat, open, rename, unlink, fsync of its directory) is relative
to the directory's descriptor, so a directory swapped for a symlink after the
check cannot redirect it: the descriptor still names the directory we checked.

Where the kernel has ``openat2`` (Linux 5.6+) the directory is opened in one
call with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS``; elsewhere a walk opens
one component at a time with ``O_DIRECTORY | O_NOFOLLOW``. Both refuse the
same paths.

APIs that only take path names (a store's ``get_file``/``put_file``) are
given ``Entry.fd_path``: ``/proc/self/fd/N/name``, which the kernel resolves
through the descriptor we hold, never through the names an attacker may swap.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

from tiering.core.display import show_path
from tiering.core.errors import PathError

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: The hot tier's reserved folder, at its root: tiering's own (restore locks); never scanned or moved.
STATE_DIR = b".tiering"
_RESOLVE_NO_MAGICLINKS, _RESOLVE_NO_SYMLINKS, _RESOLVE_BENEATH = 0x02, 0x04, 0x08
_SYS_OPENAT2 = 437  # the same on every architecture (allocated after the syscall tables were unified)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


class Entry:
    """One path under the hot tier: its directory (an open descriptor) and its last component.

    Close it (or use it as a context manager) when done.
    """

    def __init__(self, rel: bytes, dir_fd: int, name: bytes, root: HotRoot | None = None) -> None:
        self.rel = rel
        self.dir_fd = dir_fd
        self.name = name
        #: The hot root it was reached from (its state folder holds the file's restore lock).
        self.root = root

    def lstat(self) -> os.stat_result:
        """The entry's own status (a symlink is reported as one, never followed)."""
        return os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)

    def open(self, flags: int, mode: int = 0o600, name: bytes | None = None) -> int:
        """Open the entry (or ``name`` beside it); a symlink is refused (ELOOP), never followed."""
        return os.open(name or self.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.dir_fd)

    def fd_path(self, name: bytes | None = None) -> str:
        """A path name for APIs that take only names; it resolves through our descriptor of the directory."""
        return f"/proc/self/fd/{self.dir_fd}/{os.fsdecode(name or self.name)}"

    def rename_over(self, name: bytes) -> None:
        """Rename ``name`` (beside the entry) over the entry."""
        os.rename(name, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)

    def unlink(self, name: bytes) -> None:
        """Remove ``name`` beside the entry, if it is there."""
        try:
            os.unlink(name, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass

    def fsync_dir(self) -> None:
        os.fsync(self.dir_fd)

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    def __enter__(self) -> Entry:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class HotRoot:
    """The hot tier's root, opened once (lazily: a missing root fails the items, not the mover's creation)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fd = -1
        self._lock = threading.Lock()
        self._state_dirs: dict[tuple[bytes, ...], int] = {}

    def _root_fd(self) -> int:
        with self._lock:
            if self._fd < 0:
                self._fd = os.open(self.root, _O_DIR)  # the configured root itself may be a link: the admin's choice
            return self._fd

    def entry(self, rel: bytes) -> Entry:
        """The ``Entry`` for ``rel``; ``PathError`` if it is not a plain path or leads through a symlink."""
        parts = _components(rel)
        parent, name = parts[:-1], parts[-1]
        root = self._root_fd()
        dir_fd = _open_beneath(root, b"/".join(parent), rel) if _openat2() else _walk(root, parent, rel)
        return Entry(rel, dir_fd, name, self)

    def state_dir(self, *parts: bytes) -> int:
        """A descriptor of ``<root>/.tiering/<parts...>``, made if missing (kept open until ``close``).

        The hot tier's reserved folder (``STATE_DIR``: scans and events skip it).
        No component is followed if it is a symlink (refused with ``PathError``).
        """
        with self._lock:
            fd = self._state_dirs.get(parts)
        if fd is not None:
            return fd
        where = b"/".join((STATE_DIR, *parts))

        def refused(_: int, __: int) -> PathError:
            return PathError(f"{show_path(where)} in the hot tier is not a folder of ours (a link or a file); "
                             f"move it away", path=where)

        # One component below its parent's descriptor, itself kept: a new lock shard costs one open (and a
        # mkdir the first time), not a walk from the root (each step a round trip on a networked filesystem).
        parent = self.state_dir(*parts[:-1]) if parts else self._root_fd()
        fd = _descend(parent, [parts[-1] if parts else STATE_DIR], refused, make=True)
        with self._lock:
            if parts in self._state_dirs:  # made by another thread meanwhile: keep one
                os.close(fd)
                return self._state_dirs[parts]
            self._state_dirs[parts] = fd
        return fd

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            for fd in self._state_dirs.values():
                os.close(fd)
            self._state_dirs.clear()


def _components(rel: bytes) -> list[bytes]:
    parts = rel.split(b"/")
    if not rel or rel.startswith(b"/") or b"\0" in rel or any(p in (b"", b".", b"..") for p in parts):
        raise PathError(f"{show_path(rel)}: not a plain path under the hot tier (refused)", path=rel)
    return parts


def _open_beneath(root: int, parent: bytes, rel: bytes) -> int:
    how = _OpenHow(_O_DIR, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    fd = _openat2()(_SYS_OPENAT2, root, parent or b".", ctypes.byref(how), ctypes.sizeof(how))
    if fd >= 0:
        return fd
    err = ctypes.get_errno()
    if err in (errno.ELOOP, errno.EXDEV):
        raise _refused(rel, root, parent)
    raise OSError(err, os.strerror(err), os.fsdecode(rel))


def _walk(root: int, parent: list[bytes], rel: bytes) -> int:
    def refused(fd: int, i: int) -> PathError | None:
        return _refused(rel, root, b"/".join(parent[:i + 1])) if _is_link(fd, parent[i]) else None

    return _descend(root, parent, refused)


def _descend(start: int, parts: list[bytes], refused: Callable[[int, int], Exception | None], *,
             make: bool = False) -> int:
    """A new descriptor of the directory ``parts`` below ``start``, opened one component at a time and
    never through a link: where component ``i`` (opened from ``fd``) is a link or not a directory,
    ``refused(fd, i)`` is raised if it gives an error. ``make``: create missing components."""
    fd = os.dup(start)
    try:
        for i, part in enumerate(parts):
            try:
                try:
                    nxt = os.open(part, _O_DIR | os.O_NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    if not make:
                        raise
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass  # (made by another process meanwhile)
                    nxt = os.open(part, _O_DIR | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and (err := refused(fd, i)) is not None:
                    raise err from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_link(dir_fd: int, name: bytes) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _refused(rel: bytes, root: int, parent: bytes) -> PathError:
    link = _first_link(root, parent)
    where = f"{show_path(link)} is a symbolic link" if link else "it leads outside the hot tier"
    return PathError(f"{show_path(rel)}: {where}; the mover never follows links under the hot tier (refused)", path=rel)


def _first_link(root: int, parent: bytes) -> bytes:
    """The first component of ``parent`` that is a symlink (for the message), or b''."""
    parts = parent.split(b"/")
    for i in range(len(parts)):
        try:
            os.readlink(b"/".join(parts[:i + 1]), dir_fd=root)
            return b"/".join(parts[:i + 1])
        except OSError:
            continue
    return b""


@functools.cache
def _openat2():
    """libc's ``syscall``, if this kernel has openat2 (probed once); None otherwise."""
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    how = _OpenHow(_O_DIR, 0, _RESOLVE_BENEATH)
    fd = syscall(_SYS_OPENAT2, -100, b"/", ctypes.byref(how), ctypes.sizeof(how))  # AT_FDCWD, "/": absolute
    if fd >= 0:  # (cannot be: "/" is not beneath the cwd)
        os.close(fd)
        return syscall
    return syscall if ctypes.get_errno() == errno.EXDEV else None  # ENOSYS (old kernel) or a seccomp refusal
