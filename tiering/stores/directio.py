"""Writing large files with direct I/O where the filesystem allows it (S3 downloads, posix-tier copies).

A large restore or migrate writes gigabytes the training job has not asked
for yet. Through the page cache, every byte is copied into freshly allocated
cache pages (on the CI machine kind that copy alone ran at ~400 MB/s, against
2.2 GB/s direct), the hot tier's cache fills with data nobody reads soon, and
the fsync that makes a restore durable pays for the whole disk write at the
end. ``O_DIRECT`` writes go from our buffer to the device instead.

Direct I/O needs the buffer, the offset and the length aligned (``ALIGN``
covers 512-byte and 4 KiB devices), so each part is read straight into a
reused, page-aligned buffer (S3 ranged GETs, posix-tier reads) or copied into
one (a copy within warm memory, far cheaper than the kernel's into new cache
pages); a tail that is not a multiple of ``ALIGN`` goes
through the page cache. Where ``O_DIRECT`` is refused (some FUSE and network
filesystems, older kernels' tmpfs) every write is a plain buffered one. Either
way the bytes written are exactly the bytes given: callers hash what they pass
in.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
from collections.abc import Iterable

from tiering.stores.localfile import write_all, write_sparse

ALIGN = 4096
#: Objects smaller than this are written buffered: a direct write waits for the device, which for a
#: few KiB costs more than the copy it saves.
DIRECT_MIN = 1024 * 1024
_O_DIRECT = getattr(os, "O_DIRECT", 0)  # 0 where there is no such flag: plain writes only
_NO_DIRECT = {errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}


class BufferPool:
    """Page-aligned buffers of one size, reused: a fresh mapping costs a page fault per 4 KiB on first touch."""

    def __init__(self, size: int, keep: int = 8) -> None:
        self.size = size
        self._keep = keep
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, self.size)

    def give(self, buf: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)
                return
        _unmap(buf)

    def close(self) -> None:
        with self._lock:
            free, self._free = self._free, []
        for buf in free:
            _unmap(buf)


def _unmap(buf: mmap.mmap) -> None:
    try:
        buf.close()
    except BufferError:
        pass  # a view of it is still alive (say, in a traceback being raised): freed with the last view


class PartWriter:
    """Writes parts of one file at their offsets; safe to call from several threads at once.

    ``fd`` is the file opened for buffered writing (it receives unaligned
    tails, and everything when direct I/O is unavailable or the file, of
    ``size`` bytes, is under ``DIRECT_MIN``); the direct descriptor is opened
    here on ``path`` and closed by ``close``.

    ``sparse``: the file is new (or truncated) and its blocks of zeros are left
    as holes (``localfile.write_sparse``); ``close`` sets its size. Such writes
    go through the page cache: a sparse file's data is what is left of it.
    """

    def __init__(self, path: str | os.PathLike, fd: int, pool: BufferPool, size: int, *, sparse: bool = False) -> None:
        self._fd = fd
        self._pool = pool
        self._size = size
        self._sparse = sparse
        self._direct: int | None = None
        if _O_DIRECT and size >= DIRECT_MIN and not sparse:
            try:
                self._direct = os.open(path, os.O_WRONLY | os.O_CLOEXEC | _O_DIRECT)
            except OSError as exc:
                if exc.errno not in _NO_DIRECT:
                    raise
        self._use_direct = self._direct is not None

    @property
    def direct(self) -> bool:
        """Whether aligned writes still go direct (false from the first refusal on)."""
        return self._use_direct

    def write(self, data: bytes | memoryview, offset: int) -> None:
        """Write ``data`` at ``offset``: the aligned bulk directly (through a pooled buffer), the rest buffered."""
        data = memoryview(data)
        if not self._use_direct or offset % ALIGN:
            self._buffered(data, offset)
            return
        done = 0
        while self._use_direct and len(data) - done >= ALIGN:
            n = min(len(data) - done, self._pool.size)
            n -= n % ALIGN
            buf = self._pool.take()
            try:
                memoryview(buf)[:n] = data[done:done + n]
                wrote = self.write_buffer(buf, n, offset + done, direct_only=True)
            finally:
                self._pool.give(buf)
            done += wrote
            if wrote < n:
                break  # refused or short: the buffered path writes the rest (and says why if it fails too)
        if done < len(data):
            self._buffered(data[done:], offset + done)

    def _buffered(self, data: bytes | memoryview, offset: int) -> None:
        if self._sparse:
            write_sparse(self._fd, data, offset)
        else:
            write_all(self._fd, data, offset)

    def write_buffer(self, buf: mmap.mmap, length: int, offset: int, *, direct_only: bool = False) -> int:
        """Write the first ``length`` bytes of a buffer taken from this writer's pool, without another copy.

        Returns the bytes written: all of them, unless ``direct_only`` (then only what went direct).
        """
        done = 0
        bulk = length - length % ALIGN if self._use_direct and offset % ALIGN == 0 else 0
        if bulk:
            try:
                done = os.pwrite(self._direct, memoryview(buf)[:bulk], offset)
            except OSError as exc:
                if exc.errno not in _NO_DIRECT:
                    raise
                self._use_direct = False  # refused after all (e.g. this filesystem wants a stricter alignment)
            done -= done % ALIGN  # a short direct write (disk nearly full): the buffered path says why
        if done < length and not direct_only:
            self._buffered(memoryview(buf)[done:length], offset + done)
            done = length
        return done

    def write_stream(self, chunks: Iterable[bytes | memoryview], offset: int = 0) -> int:
        """Write ``chunks`` one after another from ``offset`` (gathered into aligned buffers when
        writing direct); bytes written."""
        pos = offset
        if not self._use_direct:  # nothing to align for: each chunk as it comes
            for chunk in chunks:
                self._buffered(chunk, pos)
                pos += len(chunk)
            return pos - offset
        buf = self._pool.take()
        try:
            with memoryview(buf) as view:
                filled = 0
                for chunk in chunks:
                    chunk = memoryview(chunk)
                    while chunk:
                        n = min(len(chunk), len(view) - filled)
                        view[filled:filled + n] = chunk[:n]
                        filled += n
                        chunk = chunk[n:]
                        if filled == len(view):
                            self.write_buffer(buf, filled, pos)
                            pos, filled = pos + filled, 0
                if filled:
                    self.write_buffer(buf, filled, pos)
                    pos += filled
        finally:
            self._pool.give(buf)
        return pos - offset

    def close(self) -> None:
        """Close the direct descriptor (once no thread writes any more); a sparse file gets its size."""
        self._use_direct = False
        direct, self._direct = self._direct, None
        if direct is not None:
            os.close(direct)
        if self._sparse:
            os.ftruncate(self._fd, self._size)  # the holes at the end, which no write made

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
