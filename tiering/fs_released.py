"""Reading a released file straight from its capacity tier, in ranged reads, verified.

``ReleasedFile`` is an fsspec buffered file whose blocks come from
``Store.read_range``. It is opened only after ``check_copy`` showed that the
capacity object is the archived version (its size and checksum metadata match
the catalog). On top of that, a read that covers the whole file in order (the
common case: a dataloader reading a sample, ``fsspec.open(...).read()``)
hashes the bytes as they arrive and raises ``IntegrityError`` before handing
out the last block if they do not match the catalog's checksum. Random-access
reads (Parquet footers, ``seek`` + ``read``) rely on the metadata check and on
every block having exactly the expected length.
"""

from __future__ import annotations

from fsspec.spec import AbstractBufferedFile

from tiering.catalog import FileRecord
from tiering.errors import IntegrityError, NotFoundError
from tiering.stores.base import Store
from tiering.stores.checksum import ALGORITHM, Hasher

__all__ = ["ReleasedFile", "check_copy"]


def check_copy(store: Store, record: FileRecord, url: str) -> None:
    """Refuse to stream ``record``'s bytes unless its capacity object is the archived version."""
    where = f"{record.object_key!r} in tier {record.tier!r}"
    try:
        info = store.head(record.object_key)
    except NotFoundError as exc:
        raise NotFoundError(f"{url} is released, but its capacity copy {where} is missing ({exc}); "
                            "its bytes cannot be read", store=store.url, key=record.object_key) from exc
    if info.size != record.size or info.checksum != record.checksum:
        raise IntegrityError(f"{url}: the capacity copy {where} is not the archived version "
                             f"(size {info.size}, catalog says {record.size}; checksum {info.checksum or 'missing'}, "
                             f"catalog says {record.checksum}); refusing to read it",
                             store=store.url, key=record.object_key)


class ReleasedFile(AbstractBufferedFile):
    """A read-only file over a released file's capacity object (``size`` is the true size)."""

    def __init__(self, fs, path: str, store: Store, record: FileRecord, *, block_size: int,
                 cache_type: str = "readahead", cache_options: dict | None = None) -> None:
        self.store = store
        self.key = record.object_key
        self.tier = record.tier
        self.checksum = record.checksum or ""
        # Only a checksum we know how to compute can be checked in order.
        self._hasher: Hasher | None = Hasher() if self.checksum.startswith(ALGORITHM + ":") else None
        self._hashed = 0  # bytes from offset 0 fed to the hasher, in order
        super().__init__(fs, path, mode="rb", block_size=block_size, cache_type=cache_type,
                         cache_options=cache_options, size=record.size)

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if start >= end:
            return b""
        data = self.store.read_range(self.key, start, end - start)
        if len(data) != end - start:
            raise IntegrityError(f"tiered://{self.path}: the capacity copy {self.key!r} in tier {self.tier!r} "
                                 f"returned {len(data)} bytes at offset {start}, expected {end - start}; "
                                 "it changed after the file was opened", store=self.store.url, key=self.key)
        self._verify_in_order(start, data)
        return data

    def _verify_in_order(self, start: int, data: bytes) -> None:
        if self._hasher is None or not start <= self._hashed < start + len(data):
            return
        self._hasher.update(memoryview(data)[self._hashed - start:])
        self._hashed = start + len(data)
        if self._hashed == self.size:
            value, self._hasher = self._hasher.value, None
            if value != self.checksum:
                raise IntegrityError(f"tiered://{self.path}: the bytes of the capacity copy {self.key!r} in tier "
                                     f"{self.tier!r} do not match the archived checksum (got {value}, "
                                     f"expected {self.checksum}); refusing to return them",
                                     store=self.store.url, key=self.key)
