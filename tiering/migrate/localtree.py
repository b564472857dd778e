"""A plain folder tree as one side of a migration.

Unlike the posix capacity store, files here are ordinary files: metadata lives
in the inode (mode, owner when root, mtime), not in xattrs. Writes go to a temp
file under ``<root>/.tiering/tmp/`` (same filesystem; the name ``.tiering`` at
the top is reserved and never listed), are verified, get their metadata, and
are renamed into place: a reader, or a run killed at any instant, never sees a
partial file under its real name. A later run removes temp files of writers
that are gone.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from tiering.errors import IntegrityError, InvalidKeyError, SourceChangedError
from tiering.migrate.listing import Entry
from tiering.migrate.result import FAILED, ItemResult
from tiering.stores.base import FileMeta, Progress
from tiering.stores.checksum import CHUNK, Hasher, verify_source
from tiering.stores.keys import decode_key, encode_key
from tiering.stores.localfile import fsync_path, open_source, write_all

RESERVED = ".tiering"
_WRITER = f"{socket.gethostname()}~{os.getpid()}"
_IS_ROOT = os.geteuid() == 0
_FOLDERS_REMEMBERED = 4096


class LocalTree:
    """One side of a migration on a local (or mounted) filesystem, rooted at ``root``."""

    kind = "local"

    def __init__(self, root: str | Path, *, fsync: bool = False) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self.fsync = fsync
        self._tmp = self.root / RESERVED / "tmp"
        #: Folders this run has made or found (one makedirs per folder, not per file: most of a
        #: tree's files share their folder with hundreds of others). A folder removed under us
        #: is made again on the rename's ENOENT.
        self._folders: set[Path] = set()

    def path(self, key: str) -> Path:
        rel = decode_key(key)
        if rel.split(b"/", 1)[0] == RESERVED.encode():
            raise InvalidKeyError(f"key {key!r} uses the reserved top-level name {RESERVED!r}")
        return self.root / os.fsdecode(rel)

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
        try:
            st = os.lstat(self.path(key))
        except FileNotFoundError:
            return None
        return Entry(key, st.st_size, st.st_mtime_ns) if stat.S_ISREG(st.st_mode) else None

    def mtime(self, key: str) -> int | None:
        entry = self.head(key)
        return entry.mtime_ns if entry else None

    def checksum(self, key: str) -> str:
        path = self.path(key)
        return hash_file(path, os.stat(path).st_size)

    # -- writing ---------------------------------------------------------------

    def prepare(self) -> None:
        """Make the root and the temp folder; remove temp files that dead writers left."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(self._tmp):
            if entry.name.startswith("migrate~") and _abandoned(entry.name):
                Path(entry.path).unlink(missing_ok=True)

    def finish(self) -> None:
        """Remove the temp folder (and ``.tiering``) when nothing else is in them."""
        for folder in (self._tmp, self._tmp.parent):
            try:
                folder.rmdir()
            except OSError:
                return

    def temp_path(self) -> Path:
        return self._tmp / f"migrate~{_WRITER}~{secrets.token_hex(8)}"

    def copy_in(self, source: Path, key: str, meta: FileMeta, progress: Progress | None = None) -> str:
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
        target = self.path(key)
        try:
            if target.parent not in self._folders:
                os.makedirs(target.parent, exist_ok=True)
                if len(self._folders) >= _FOLDERS_REMEMBERED:
                    self._folders.clear()  # a tree of a million folders must not cost a million entries
                self._folders.add(target.parent)
            try:
                os.replace(tmp, target)
            except FileNotFoundError:  # the folder went away since we made it
                if not os.path.exists(tmp):
                    raise
                os.makedirs(target.parent, exist_ok=True)
                os.replace(tmp, target)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(target)) from None  # name the file, not our temp

    def delete(self, key: str) -> None:
        """Remove one file, then any folders that it leaves empty."""
        target = self.path(key)
        target.unlink(missing_ok=True)
        parent = target.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                return
            parent = parent.parent

    def close(self) -> None:
        pass


def check_unchanged(path: Path, before: os.stat_result, key: str) -> None:
    """Raise ``SourceChangedError`` if a source file changed since ``before`` was taken."""
    after = os.lstat(path)
    if (after.st_size, after.st_mtime_ns, after.st_ino) != (before.st_size, before.st_mtime_ns, before.st_ino):
        raise SourceChangedError(f"{path}: source changed while it was copied; it will be copied again", key=key)


def _copy(src: Path, dst: Path, size: int, progress: Progress | None) -> Hasher:
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
    hasher = Hasher()
    buf = bytearray(max(4096, size + 1))
    view = memoryview(buf)
    with open_source(path) as f:
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
