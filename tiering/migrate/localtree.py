"""A plain folder tree as one side of a migration.

Unlike the posix capacity store, files here are ordinary files: metadata lives
in the inode (mode, owner when root, mtime), not in xattrs. Writes go to a temp
file under ``<root>/.tiering/tmp/`` (same filesystem; the name ``.tiering`` at
the top is reserved and never listed), are verified, get their metadata, and
are renamed into place: a reader, or a run killed at any instant, never sees a
partial file under its real name. A later run removes temp files of writers
that are gone.

Nothing is written through a symlink below the root: files are renamed into
place, deleted and compared through folder file descriptors opened without
following symlinks at any component (``tiering.migrate.beneath``), so with
``dst/sub -> /elsewhere`` the files under ``sub/`` fail one by one and
nothing lands in ``/elsewhere``. As a source, the listing never descends into
a symlinked folder nor lists a symlinked file: a symlink is not copied, and
what it points to is not read (a folder swapped for a symlink between the
listing and the copy is the one window left: files are read by path).
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from tiering.core.errors import IntegrityError, InvalidKeyError, PathError, SourceChangedError
from tiering.migrate.beneath import open_dir, split_parent
from tiering.migrate.listing import Entry
from tiering.migrate.result import FAILED, ItemResult
from tiering.stores.base import FileMeta, OnBytes
from tiering.stores.checksum import CHUNK, Hasher, verify_source
from tiering.stores.keys import decode_key, encode_key
from tiering.stores.localfile import fsync_path, open_source, write_all

RESERVED = ".tiering"
_WRITER = f"{socket.gethostname()}~{os.getpid()}"
_IS_ROOT = os.geteuid() == 0


class LocalTree:
    """One side of a migration on a local (or mounted) filesystem, rooted at ``root``."""

    kind = "local"

    def __init__(self, root: str | Path, *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.fsync = fsync
        self._tmp = self.root / RESERVED / "tmp"
        self._root_fd: int | None = None
        self._root_lock = threading.Lock()

    def path(self, key: str) -> Path:
        return self.root / os.fsdecode(self._rel(key))

    def _rel(self, key: str) -> bytes:
        rel = decode_key(key)
        if rel.split(b"/", 1)[0] == RESERVED.encode():
            raise InvalidKeyError(f"key {key!r} uses the reserved top-level name {RESERVED!r}")
        return rel

    def _folder(self, parts: list[bytes], *, create: bool = False) -> int:
        """An fd for a folder under the root, reached without following symlinks (``beneath.open_dir``)."""
        with self._root_lock:
            if self._root_fd is None:
                self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return open_dir(self._root_fd, parts, create=create, where=str(self.root))

    def _stat(self, key: str) -> os.stat_result | None:
        """The file's own status (a symlink's, not its target's); None if absent or behind a symlinked folder."""
        parts, name = split_parent(self._rel(key))
        try:
            fd = self._folder(parts)
        except (FileNotFoundError, NotADirectoryError, PathError):
            return None
        try:
            return os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(fd)

    # -- reading ---------------------------------------------------------------

    def list(self) -> Iterator[Entry | ItemResult]:
        """Every regular file, in key order, streamed; symlinks and special files are left out."""
        if self.root.is_dir():
            yield from self._walk(str(self.root), "")

    def _walk(self, directory: str, dir_key: str) -> Iterator[Entry | ItemResult]:
        try:
            children = sorted(self._children(directory, dir_key))
        except OSError as exc:
            yield ItemResult(dir_key or ".", "list", FAILED, reason=f"cannot list {directory}: {exc.strerror}")
            return
        for name, is_dir, path in children:
            if is_dir:
                yield from self._walk(path, dir_key + name)
                continue
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue  # deleted while we listed
            yield Entry(dir_key + name, st.st_size, st.st_mtime_ns)

    def _children(self, directory: str, dir_key: str) -> Iterator[tuple[str, bool, str]]:
        # Folders sort as "name/", which puts keys in global lexicographic order.
        with os.scandir(directory) as it:
            for entry in it:
                if not dir_key and entry.name == RESERVED:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    yield encode_key(os.fsencode(entry.name)) + "/", True, entry.path
                elif entry.is_file(follow_symlinks=False):
                    yield encode_key(os.fsencode(entry.name)), False, entry.path

    def head(self, key: str) -> Entry | None:
        st = self._stat(key)
        return Entry(key, st.st_size, st.st_mtime_ns) if st and stat.S_ISREG(st.st_mode) else None

    def mtime(self, key: str) -> int | None:
        entry = self.head(key)
        return entry.mtime_ns if entry else None

    def checksum(self, key: str) -> str:
        parts, name = split_parent(self._rel(key))
        folder = self._folder(parts)
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        finally:
            os.close(folder)
        with os.fdopen(fd, "rb", buffering=0) as f:
            return hash_open(f, os.fstat(fd).st_size)

    # -- writing ---------------------------------------------------------------

    def prepare(self) -> None:
        """Make the root and the temp folder; remove temp files that dead writers left.

        Raises ``PathError`` if ``.tiering`` or its ``tmp`` is a symlink (temp files would land elsewhere).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        os.close(self._folder([RESERVED.encode(), b"tmp"], create=True))
        for entry in os.scandir(self._tmp):
            if entry.name.startswith("migrate~") and _abandoned(entry.name):
                Path(entry.path).unlink(missing_ok=True)

    def finish(self) -> None:
        """Remove the temp folder (and ``.tiering``) when nothing else is in them."""
        self._remove_empty([RESERVED.encode(), b"tmp"])

    def _remove_empty(self, parts: list[bytes]) -> None:
        """Remove ``root/parts...`` and then its parents, deepest first, while each is an empty folder."""
        for depth in range(len(parts), 0, -1):
            try:
                fd = self._folder(parts[: depth - 1])
            except (OSError, PathError):
                return
            try:
                os.rmdir(parts[depth - 1], dir_fd=fd)
            except OSError:
                return
            finally:
                os.close(fd)

    def temp_path(self) -> Path:
        return self._tmp / f"migrate~{_WRITER}~{secrets.token_hex(8)}"

    def copy_in(self, source: Path, key: str, meta: FileMeta, progress: OnBytes | None = None) -> str:
        """Copy a local file here, verified (size, and BLAKE3 of the written file); returns the checksum."""
        tmp = self.temp_path()
        try:
            hasher = _copy(source, tmp, meta.size, progress)
            stored = verify_source(hasher, meta, key, self.url)
            if hash_file(tmp, meta.size) != stored.checksum:
                raise IntegrityError(f"{self.url}: {key}: the written copy does not read back the same", key=key)
            self.commit(tmp, key, stored)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return stored.checksum

    def commit(self, tmp: Path, key: str, meta: FileMeta) -> None:
        """Give a verified temp file its metadata and rename it to ``key``'s path."""
        if _IS_ROOT:
            os.chown(tmp, meta.uid, meta.gid)
        os.chmod(tmp, stat.S_IMODE(meta.mode) or 0o644)
        os.utime(tmp, ns=(meta.mtime_ns, meta.mtime_ns))
        if self.fsync:
            fsync_path(tmp)
        parts, name = split_parent(self._rel(key))
        for attempt in range(2):
            folder = self._folder(parts, create=True)
            try:
                os.replace(tmp, name, dst_dir_fd=folder)  # renameat: never follows a symlink at ``name``
                return
            except FileNotFoundError:  # the folder went away since we opened it: make it again, once
                if attempt or not os.path.exists(tmp):
                    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT), str(self.path(key))) from None
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(self.path(key))) from None  # name the file, not our temp
            finally:
                os.close(folder)

    def delete(self, key: str) -> None:
        """Remove one file (a symlink itself, never what it points to), then any folders it leaves empty."""
        parts, name = split_parent(self._rel(key))
        try:
            folder = self._folder(parts)
        except FileNotFoundError:
            return
        try:
            os.unlink(name, dir_fd=folder)
        except FileNotFoundError:
            pass
        finally:
            os.close(folder)
        self._remove_empty(parts)

    def close(self) -> None:
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None


def check_unchanged(path: Path, before: os.stat_result, key: str) -> None:
    """Raise ``SourceChangedError`` if a source file changed since ``before`` was taken."""
    after = os.lstat(path)
    if (after.st_size, after.st_mtime_ns, after.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
        raise SourceChangedError(f"{path}: source changed while it was copied; it will be copied again", key=key)


def _copy(src: Path, dst: Path, size: int, progress: OnBytes | None) -> Hasher:
    hasher = Hasher()
    buf = bytearray(max(4096, min(CHUNK, size + 1)))  # small files: one read, one small buffer
    view = memoryview(buf)
    with open_source(src) as fin, open(dst, "wb", buffering=0) as fout:
        while n := fin.readinto(buf):
            hasher.update(view[:n])
            write_all(fout.fileno(), view[:n])
            if progress:
                progress(n)
    return hasher


def hash_file(path: Path, size: int) -> str:
    """The checksum of a local file; buffers sized to the file (``Hasher.of_file`` is for big ones)."""
    if size > CHUNK:
        return Hasher.of_file(path).value
    with open_source(path) as f:
        return hash_open(f, size)


def hash_open(f, size: int) -> str:
    """The checksum of what an open file reads from its current position on."""
    hasher = Hasher()
    buf = bytearray(max(4096, min(CHUNK, size + 1)))
    view = memoryview(buf)
    while n := f.readinto(buf):
        hasher.update(view[:n])
    return hasher.value


def _abandoned(name: str) -> bool:
    """A temp file of a writer on this host whose process is gone (other hosts' are left alone)."""
    parts = name.split("~")  # migrate~host~pid~token
    if len(parts) != 4 or parts[1] != socket.gethostname() or not parts[2].isdigit():
        return False
    try:
        os.kill(int(parts[2]), 0)
    except ProcessLookupError:
        return True
    except OSError as exc:
        return exc.errno != errno.EPERM
    return False
