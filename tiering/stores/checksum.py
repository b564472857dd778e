"""Content checksums, computed while bytes stream past.

The algorithm is BLAKE3: a cryptographic hash (no crafted or accidental
collisions in practice, so a checksum match really means "the same bytes" and
can later key deduplication), and fast enough — several GB/s on one core with
SIMD — that hashing never becomes the bottleneck of an NVMe or network copy.
CRC-64 (what OSS checks on the wire) and MD5 (an S3 single-part ETag) are used
*in addition* where a server offers them, never instead.

A checksum is written ``blake3:<64 hex digits>``, so the algorithm can change
later without ambiguity.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import blake3

from tiering.core.errors import IntegrityError, SourceChangedError
from tiering.stores.localfile import open_source

if TYPE_CHECKING:
    from tiering.stores.base import FileMeta

ALGORITHM = "blake3"
CHUNK = 4 * 1024 * 1024


class Hasher:
    """An incremental checksum; ``update`` with each chunk, then ``value``."""

    def __init__(self, threaded: bool = False) -> None:
        # Threaded BLAKE3 splits large updates (MiBs) over every core; small ones gain nothing.
        self._h = blake3.blake3(max_threads=blake3.blake3.AUTO) if threaded else blake3.blake3()
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._h.update(data)
        self.size += len(data)

    @classmethod
    def of_file(cls, path: str | Path) -> Hasher:
        """A hasher fed with a whole local file (large chunks hashed on several threads)."""
        hasher = cls(threaded=True)
        with open_source(path) as f:
            buf = bytearray(4 * CHUNK)
            view = memoryview(buf)
            while n := f.readinto(buf):
                hasher.update(view[:n])
        return hasher

    @property
    def value(self) -> str:
        return f"{ALGORITHM}:{self._h.hexdigest()}"


def checksum_bytes(data: bytes | bytearray | memoryview) -> str:
    h = Hasher()
    h.update(data)
    return h.value


def verify_source(hasher: Hasher, meta: FileMeta, key: str, url: str) -> FileMeta:
    """Check bytes read from a local file against what the caller said it holds.

    Returns ``meta`` with the checksum filled in. Raises ``SourceChangedError``
    when the size differs, or the checksum differs from one the caller gave:
    the file changed under us and the copy must not be kept.
    """
    if _disagree(hasher, meta):
        raise SourceChangedError(f"{url}: {key}: source changed while copying (expected {meta.size} bytes"
                                 f"{' ' + meta.checksum if meta.checksum else ''}, read {hasher.size} bytes "
                                 f"{hasher.value})", store=url, key=key)
    return replace(meta, checksum=hasher.value)


def verify_object(hasher: Hasher, meta: FileMeta | None, key: str, url: str) -> None:
    """Check downloaded bytes against the object's recorded size and checksum.

    An object without our metadata (written by another tool) has nothing to be
    checked against and passes; ours must match exactly.
    """
    if meta is None:
        return
    if _disagree(hasher, meta):
        raise IntegrityError(f"{url}: {key}: object is corrupt (metadata says {meta.size} bytes {meta.checksum}, "
                             f"read {hasher.size} bytes {hasher.value})", store=url, key=key)


def _disagree(hasher: Hasher, meta: FileMeta) -> bool:
    """Whether the bytes hashed differ from ``meta`` in size, or in checksum when it has one."""
    return hasher.size != meta.size or bool(meta.checksum and hasher.value != meta.checksum)
