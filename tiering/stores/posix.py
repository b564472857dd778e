"""A capacity tier on a local or network filesystem (an HDD array, a NAS mount).

Objects are plain files at ``<root>/<relative path>``: the tier mirrors the hot
tier's names byte for byte and is browsable with ``ls``. Each object's
``FileMeta`` is kept in the ``user.tiering.meta`` extended attribute, or in a
sidecar file under ``<root>/.tiering/meta/`` where the filesystem has no user
xattrs. The top-level name ``.tiering`` is reserved for the store's own use.

Writes go to ``<root>/.tiering/tmp/`` (same filesystem), are checksummed while
copied, fsynced, then renamed into place and the directory fsynced: a reader
sees the old object or the whole new one.

Options: ``POSIX_OPTIONS`` (``tiering.stores.options``): ``fsync``.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

from tiering.core.errors import (
    FatalError,
    InvalidKeyError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
    TransientError,
    UserError,
)
from tiering.core.processes import pid_exists
from tiering.stores.base import FileMeta, ObjectInfo, OnBytes
from tiering.stores.checksum import CHUNK, Hasher, verify_object, verify_source
from tiering.stores.directio import BufferPool, PartWriter
from tiering.stores.keys import decode_key, encode_key
from tiering.stores.listing import whole_listing
from tiering.stores.localfile import fsync_path, is_sparse, open_source
from tiering.stores.options import POSIX_OPTIONS
from tiering.stores.retry import DEFAULT_RETRY, RetryPolicy

RESERVED = ".tiering"
XATTR = "user.tiering.meta"

_TRANSIENT = {errno.EAGAIN, errno.ETIMEDOUT, errno.ESTALE, errno.EINTR, errno.EBUSY}
_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
_FATAL = {errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EIO}


def translate_oserror(exc: OSError, url: str, key: str) -> StoreError:
    """The project error for an ``OSError`` met at this store's boundary."""
    what = f"{url}: {key or '(root)'}: {exc.strerror or exc}"
    if exc.errno == errno.ENOENT:
        return NotFoundError(f"{what} (no such object)", store=url, key=key)
    if exc.errno in _PERMISSION:
        return PermissionDeniedError(what, store=url, key=key)
    if exc.errno in _TRANSIENT:
        return TransientError(what, store=url, key=key)
    return FatalError(what, store=url, key=key)


class PosixStore:
    """Store protocol over a directory tree."""

    OPTIONS = POSIX_OPTIONS

    def __init__(self, url: str, options: dict, *, retry: RetryPolicy = DEFAULT_RETRY) -> None:
        path = url.removeprefix("file://")
        self.root = Path(path)
        self.url = str(self.root)
        self.retry = retry
        self.fsync = bool(options.get("fsync", POSIX_OPTIONS.default("fsync")))
        if not self.root.is_dir():
            raise UserError(f"capacity tier {self.url} does not exist or is not a directory (is it mounted?)")
        self._tmp = self.root / RESERVED / "tmp"
        self._sidecar = self.root / RESERVED / "meta"
        self._use_xattr = self._xattrs_supported()
        self._buffers = BufferPool(CHUNK, keep=8)

    # -- paths ---------------------------------------------------------------

    def _path(self, key: str) -> Path:
        rel = decode_key(key)
        if rel.split(b"/", 1)[0] == RESERVED.encode():
            raise InvalidKeyError(f"key {key!r} uses the reserved top-level name {RESERVED!r}")
        return self.root / os.fsdecode(rel)

    def _xattrs_supported(self) -> bool:
        # Asking for an absent attribute tells ENODATA (supported) from ENOTSUP
        # without writing anything, so a read-only tier opens fine.
        try:
            os.getxattr(self.root, XATTR)
        except OSError as exc:
            return exc.errno != errno.ENOTSUP
        return True

    # -- metadata ------------------------------------------------------------

    def _write_meta(self, path: Path, key: str, meta: FileMeta) -> None:
        blob = json.dumps(meta.to_headers(), sort_keys=True).encode()
        if self._use_xattr:
            os.setxattr(path, XATTR, blob)
            return
        side = self._sidecar / os.fsdecode(decode_key(key))
        side.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._tmp / f"meta~{_WRITER}~{secrets.token_hex(8)}"  # _tmp exists: _put made it
        tmp.write_bytes(blob)
        os.replace(tmp, side)

    def _read_meta(self, path: Path, key: str) -> FileMeta | None:
        try:
            if self._use_xattr:
                blob = os.getxattr(path, XATTR)
            else:
                blob = (self._sidecar / os.fsdecode(decode_key(key))).read_bytes()
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOENT):
                return None
            raise
        return FileMeta.from_headers(json.loads(blob))

    # -- the protocol ----------------------------------------------------------

    def _call(self, key: str, fn):
        def attempt():
            try:
                return fn()
            except OSError as exc:
                if exc.filename and not _inside(exc.filename, self.root):
                    raise  # the caller's own file (a full hot tier, say), not the store's
                raise translate_oserror(exc, self.url, key) from exc

        return self.retry.call(attempt)

    def put_file(self, local: str | Path, key: str, meta: FileMeta, progress: OnBytes | None = None) -> ObjectInfo:
        target = self._path(key)
        return self._call(key, lambda: self._put(Path(local), target, key, meta, progress))

    def _put(self, local: Path, target: Path, key: str, meta: FileMeta, progress: OnBytes | None) -> ObjectInfo:
        tmp = self._tmp / f"put~{_WRITER}~{secrets.token_hex(8)}"
        self._tmp.mkdir(parents=True, exist_ok=True)
        try:
            sparse = is_sparse(local)
            hasher = self._copy(local, tmp, progress, sparse=sparse)  # the tier's copy keeps the holes too
            stored = replace(verify_source(hasher, meta, key, self.url), sparse=sparse)
            self._write_meta(tmp, key, stored)
            os.utime(tmp, ns=(meta.mtime_ns, meta.mtime_ns))
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            if self.fsync:
                fsync_path(target.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # We wrote and fsynced exactly the bytes we hashed: verified by construction.
        return ObjectInfo(key, hasher.size, etag=_etag(target.stat()), meta=stored, verified=self.fsync)

    def _copy(self, src: Path, dst: Path, progress: OnBytes | None, *, sparse: bool = False) -> Hasher:
        """Copy ``src`` to a new ``dst``, hashing the bytes as they pass; large files are written direct,
        ``sparse`` ones with holes for their blocks of zeros."""
        hasher = Hasher()
        with open_source(src) as fin, open(dst, "wb", buffering=0) as fout:
            size = os.fstat(fin.fileno()).st_size
            with PartWriter(dst, fout.fileno(), self._buffers, size, sparse=sparse) as writer:
                buf = self._buffers.take()  # read straight into an aligned buffer, write from there: no copy between
                try:
                    pos = 0
                    while n := _fill(fin, buf):
                        with memoryview(buf) as view:
                            hasher.update(view[:n])
                        try:
                            writer.write_buffer(buf, n, pos)
                        except OSError as exc:
                            exc.filename = str(dst)  # say which side failed
                            raise
                        pos += n
                        if progress:
                            progress(n)
                finally:
                    self._buffers.give(buf)
            if self.fsync:  # after the writer closed: a sparse file's size is set then
                os.fsync(fout.fileno())
        return hasher

    def get_file(self, key: str, local: str | Path, progress: OnBytes | None = None) -> ObjectInfo:
        source = self._path(key)
        return self._call(key, lambda: self._get(source, Path(local), key, progress))

    def _get(self, source: Path, local: Path, key: str, progress: OnBytes | None) -> ObjectInfo:
        meta = self._read_meta(source, key)
        try:
            hasher = self._copy(source, local, progress, sparse=bool(meta and meta.sparse))
            verify_object(hasher, meta, key, self.url)
        except BaseException:
            local.unlink(missing_ok=True)
            raise
        return ObjectInfo(key, hasher.size, etag=_etag(source.stat()), meta=meta)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)

        def read() -> bytes:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(length)

        return self._call(key, read)

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        return self._call(key, lambda: open(path, "rb"))

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)

        def head() -> ObjectInfo:
            st = path.stat()
            if not path.is_file():
                raise FileNotFoundError(errno.ENOENT, "not a file")
            return ObjectInfo(key, st.st_size, etag=_etag(st), meta=self._read_meta(path, key))

        return self._call(key, head)

    def delete(self, key: str) -> None:
        path = self._path(key)

        def delete() -> None:
            path.unlink(missing_ok=True)
            if not self._use_xattr:
                (self._sidecar / os.fsdecode(decode_key(key))).unlink(missing_ok=True)

        self._call(key, delete)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every file under ``prefix`` in key order, or an error: a folder that cannot be read
        mid-listing fails the listing (``stores.listing``), it is never skipped."""
        return whole_listing(self.url, prefix, self._walk(self.root, "", prefix))

    def _walk(self, directory: Path, dir_key: str, prefix: str) -> Iterator[ObjectInfo]:
        # Children sorted by encoded name, directories as "name/": this yields
        # keys in global lexicographic order without holding the whole tree.
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError as exc:
            if dir_key:
                return  # a folder removed while we listed: its files are gone, like a file removed
            raise translate_oserror(exc, self.url, dir_key) from exc
        except OSError as exc:
            raise translate_oserror(exc, self.url, dir_key) from exc
        children = []
        for entry in entries:
            if not dir_key and entry.name == RESERVED:
                continue
            name = encode_key(os.fsencode(entry.name))
            if entry.is_dir(follow_symlinks=False):
                children.append((name + "/", entry))
            elif entry.is_file(follow_symlinks=False):
                children.append((name, entry))
        for name, entry in sorted(children, key=lambda c: c[0]):
            key = dir_key + name
            if name.endswith("/"):
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
            elif key.startswith(prefix):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue  # deleted while we listed
                except OSError as exc:
                    raise translate_oserror(exc, self.url, key) from exc
                yield ObjectInfo(key, st.st_size, etag=_etag(st))

    def cleanup_incomplete(self, key: str | None = None) -> int:
        """Remove temp files of writers that are gone (this host: dead pid; other hosts: a day old)."""
        removed = 0
        try:
            entries = list(os.scandir(self._tmp))
        except FileNotFoundError:
            return 0
        for entry in entries:
            if _abandoned(entry):
                Path(entry.path).unlink(missing_ok=True)
                removed += 1
        return removed

    def close(self) -> None:
        self._buffers.close()


def _fill(f, buf) -> int:
    """Read into ``buf`` until it is full or the file ends (a short read mid-file would misalign
    every direct write after it); the bytes read."""
    got = 0
    with memoryview(buf) as view:
        while got < len(view) and (n := f.readinto(view[got:])):
            got += n
    return got


#: Temp names carry host and pid, so leftovers of a dead writer can be told apart.
_WRITER = f"{socket.gethostname()}~{os.getpid()}"
_STALE_SECONDS = 86400


def _abandoned(entry: os.DirEntry) -> bool:
    parts = entry.name.split("~")  # kind~host~pid~token; "~" is never part of a hostname
    host, pid = (parts[1], parts[2]) if len(parts) == 4 else ("", "")
    if host == socket.gethostname() and pid.isdigit():
        return not pid_exists(int(pid))
    try:
        return time.time() - entry.stat().st_mtime > _STALE_SECONDS
    except FileNotFoundError:
        return False




def _inside(filename: str | bytes, root: Path) -> bool:
    return Path(os.fsdecode(filename)).is_relative_to(root)


def _etag(st: os.stat_result) -> str:
    return f"{st.st_mtime_ns:x}-{st.st_size:x}"
