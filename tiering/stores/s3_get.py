"""Downloads from S3: one streamed GET for small objects, parallel ranged GETs hashed in order for large
ones (``_InOrder``), and reads of a range or through a file object (``_Reader``)."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import obstore
import obstore.exceptions as oe

from tiering.core.errors import RefusedError
from tiering.stores.base import INLINE_MAX, ObjectInfo, OnBytes
from tiering.stores.checksum import CHUNK, Hasher, verify_object
from tiering.stores.directio import PartWriter
from tiering.stores.localfile import start_writeback, write_all, write_sparse
from tiering.stores.s3_errors import Translated, classify

MiB = 1024 * 1024


class S3Gets:
    """Mixin of ``S3Store``: ``get_file``, ``get_file_async``, ``read_range`` and ``open``."""

    def get_file(self, key: str, local: str | Path, progress: OnBytes | None = None) -> ObjectInfo:
        local = Path(local)
        with _removed_on_failure(local):
            info, hasher, first = self._call(key, lambda: self._get_streamed(key, local, progress))
            if hasher is None:  # too big for one stream: the rest in parallel ranged GETs
                hasher = self._get_parallel(key, info.size, local, progress, first, sparse=_sparse(info))
            verify_object(hasher, info.meta, key, self.url)
        return info

    async def get_file_async(self, key: str, local: str | Path | int) -> ObjectInfo:
        """``get_file`` as a coroutine: small objects come down on the event loop, large ones on a thread.

        The GET goes out through ``S3Http``. Callers that know the size send
        large objects to ``get_file`` themselves (``call_async(..., size=)``);
        should a response still announce more than ``INLINE_MAX`` bytes, its
        body is left unread and ``get_file`` fetches the object on a thread.
        (Not one code path with ``get_file``: that one streams through obstore and
        splits large objects into ranged GETs; what they share is below.)
        ``local`` may be an open, empty file's descriptor (``FillsDescriptors``).
        """
        if self._http is None or isinstance(local, int):
            return await self._get_file_async(key, local)
        local = Path(local)
        with _removed_on_failure(local):
            return await self._get_file_async(key, local)

    async def _get_file_async(self, key: str, local: Path | int) -> ObjectInfo:
        named = f"/proc/self/fd/{local}" if isinstance(local, int) else local  # (for the blocking path)
        if self._http is None:
            return await asyncio.to_thread(self.get_file, key, named)
        response = await self._request(key, "GET", max_body=INLINE_MAX)
        if response.body is None:
            return await asyncio.to_thread(self.get_file, key, named)
        info = self._info_of(key, response, len(response.body))
        write = functools.partial(_write_whole, local, response.body, sparse=_sparse(info))
        hasher = await self.local_io(write) if self.local_io is not None else write()
        verify_object(hasher, info.meta, key, self.url)
        return info

    def _get_streamed(self, key: str, local: Path, progress: OnBytes | None):
        """One GET: metadata and, for objects up to the threshold, the bytes (hashed on the way).

        For a larger object the response is handed back unread: its first part
        is consumed by ``_get_parallel`` rather than fetched a second time.
        """
        result = obstore.get(self._obs, self._name(key))
        info = self._info(key, result.meta, dict(result.attributes))
        if info.size > self.threshold:
            return info, None, result
        return info, self._stream_into(result, local, progress, sparse=_sparse(info)), None

    def _stream_into(self, result, local: Path, progress: OnBytes | None, *, sparse: bool = False) -> Hasher:
        """Read GET response ``result`` into ``local``, hashing each chunk as it passes."""
        hasher = Hasher()

        def chunks() -> Iterator[bytes]:
            for chunk in result.stream(min_chunk_size=CHUNK):
                hasher.update(chunk)
                if progress:
                    progress(len(chunk))
                yield chunk

        with open(local, "wb") as f, \
                PartWriter(local, f.fileno(), self._buffers, int(result.meta["size"]), sparse=sparse) as writer:
            writer.write_stream(chunks())
        return hasher

    def _get_parallel(self, key: str, size: int, local: Path, progress: OnBytes | None, first, *,
                      sparse: bool = False) -> Hasher:
        """The first part from the open response ``first``, the others as ranged GETs ``jobs`` at a time,
        written with direct I/O where the filesystem allows it (``PartWriter``) and hashed in order
        as they land, from the very buffers written."""
        name = self._name(key)
        with open(local, "w+b") as f, PartWriter(local, f.fileno(), self._buffers, size, sparse=sparse) as writer:
            f.truncate(size)
            fd = f.fileno()
            in_order = _InOrder(fd)

            def head_part() -> None:
                buf = self._buffers.take()
                offset = 0
                try:
                    with memoryview(buf) as view:
                        try:
                            for chunk in first.stream(min_chunk_size=CHUNK):
                                chunk = memoryview(chunk)[: self.get_part_size - offset]
                                view[offset:offset + len(chunk)] = chunk
                                offset += len(chunk)
                                if offset >= self.get_part_size:
                                    break  # the rest comes in ranged GETs; this connection is dropped
                        except oe.BaseError:
                            return part(0)  # the open response failed: fetch the part again, with retries
                        writer.write_buffer(buf, offset, 0)
                        self._written(fd, 0, offset, writer)
                        in_order.landed(0, offset, view[:offset])  # first in order: hashed before the buffer goes back
                finally:
                    self._buffers.give(buf)
                if progress:
                    progress(offset)

            connections: dict[int, object] = {}  # thread -> its BlockingRanges connection, for this file

            def part(start: int) -> None:
                length = min(self.get_part_size, size - start)
                if self._ranges is None:
                    data = self._call(key, lambda: obstore.get_range(self._obs, name, start=start, length=length))
                    view = memoryview(data)
                    writer.write(view, start)
                    self._written(fd, start, length, writer)
                    in_order.landed(start, length, view)
                else:
                    conn = connections.get(threading.get_ident())
                    if conn is None:
                        conn = connections[threading.get_ident()] = self._ranges.connection()
                    buf = self._buffers.take()
                    try:
                        view = memoryview(buf)[:length]
                        self._call(key, lambda: self._read_range_into(key, conn, name, start, view))
                        writer.write_buffer(buf, length, start)
                        self._written(fd, start, length, writer)
                    except BaseException:
                        self._buffers.give(buf)
                        raise
                    # The buffer goes back to the pool once the part is hashed (now, or in its turn).
                    in_order.landed(start, length, view, done=lambda: self._buffers.give(buf))
                if progress:
                    progress(length)

            try:
                with ThreadPoolExecutor(self.jobs, thread_name_prefix="s3-get") as pool:
                    step = self.get_part_size
                    futures = [pool.submit(head_part)] + [pool.submit(part, s) for s in range(step, size, step)]
                    for future in futures:
                        future.result()
            finally:
                for conn in connections.values():
                    conn.close()
        return in_order.hasher

    def _read_range_into(self, key: str, conn, name: str, start: int, view: memoryview) -> None:
        response = self._ranges.read_into(conn, name, start, view)
        if response.status != 206:
            raise classify(self.url, key, response.status, response.error_code())

    def _written(self, fd: int, start: int, length: int, writer: PartWriter) -> None:
        """A part is written: start its disk write now if the caller will fsync (direct writes are on their way already)."""
        if self.write_back_early and not writer.direct:
            start_writeback(fd, start, length)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        name = self._name(key)
        try:
            return bytes(self._call(key, lambda: obstore.get_range(self._obs, name, start=start, length=length)))
        except RefusedError as exc:
            if "InvalidRange" in str(exc) or "HTTP 416" in str(exc):
                self.head(key)  # NotFoundError if the object itself is missing
                return b""  # the range starts at or past the end
            raise

    def open(self, key: str) -> BinaryIO:
        name = self._name(key)
        return self._call(key, lambda: _Reader(obstore.open_reader(self._obs, name, buffer_size=CHUNK),
                                               Translated(self._error, key)))


@contextmanager
def _removed_on_failure(local: Path) -> Iterator[None]:
    """A download that fails leaves no file behind, whatever stopped it (an interrupt included)."""
    try:
        yield
    except BaseException:
        local.unlink(missing_ok=True)
        raise


def _write_whole(local: Path | int, body: bytes, *, sparse: bool) -> Hasher:
    """Write a whole object's ``body`` to ``local`` (a path, or an open empty file's descriptor, left
    open), its zeros as holes if ``sparse``; the hash of the body."""
    hasher = Hasher()
    hasher.update(body)
    fd = local if isinstance(local, int) else os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        if sparse:
            write_sparse(fd, body, 0)
            os.ftruncate(fd, len(body))
        else:
            write_all(fd, memoryview(body), 0)
    finally:
        if not isinstance(local, int):
            os.close(fd)
    return hasher


def _sparse(info: ObjectInfo) -> bool:
    """Whether the object's source had holes, so its zeros are written back as holes."""
    return bool(info.meta and info.meta.sparse)


class _InOrder:
    """Hashes a file's parts in offset order as they land, while later parts still download.

    A part is hashed once every part before it has landed: from the buffer it
    was written from when it came with one (parts that arrive early are held
    for their turn, up to ``max_held`` bytes), else read back from the file.
    Either way the checksum covers exactly the bytes written,
    and only the last part's hashing is left when the download ends.
    """

    def __init__(self, fd: int, max_held: int = 256 * MiB) -> None:
        self.hasher = Hasher(threaded=True)
        self._fd = fd
        self._next = 0
        self._landed: dict[int, tuple] = {}  # start -> (length, data, held, done)
        self._held = 0
        self._max_held = max_held
        self._lock = threading.Lock()

    def landed(self, start: int, length: int, data: memoryview | None = None,
               done: Callable[[], None] | None = None) -> None:
        """Part ``start`` is written; ``data`` is its bytes, if at hand, and ``done`` is called once they are no
        longer needed (hashed, or left to be read back from the file)."""
        with self._lock:
            early = data is not None and start != self._next
            if early and self._held + length > self._max_held:
                data, early = None, False  # too far ahead: read it back from the file when its turn comes
                if done:
                    done()
                    done = None
            self._held += length if early else 0
            self._landed[start] = (length, data, early, done)
            while self._next in self._landed:
                length, data, early, release = self._landed.pop(self._next)
                try:
                    if data is not None:
                        self.hasher.update(data)
                    else:
                        self._read_back(length)
                finally:
                    if release:
                        release()
                self._held -= length if early else 0
                self._next += length

    def _read_back(self, length: int) -> None:
        offset = self._next
        while length:
            data = os.pread(self._fd, min(length, 4 * CHUNK), offset)
            if not data:
                raise OSError(f"short read at {offset} of a file being downloaded")
            self.hasher.update(data)
            offset += len(data)
            length -= len(data)


class _Reader:
    """A read-only binary file over obstore's ReadableFile; a failed read raises the project's error
    (``translated``), never the SDK's."""

    def __init__(self, raw, translated: Translated) -> None:
        self._raw = raw
        self._translated = translated

    def read(self, size: int = -1) -> bytes:
        with self._translated:
            return bytes(self._raw.read(size) if size is not None and size >= 0 else self._raw.read())

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
