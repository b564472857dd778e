"""Reading a released file straight from its capacity tier, in ranged reads, verified.

``ReleasedFile`` is an fsspec buffered file whose blocks come from
``Store.read_range``. It is opened only after ``check_copy`` showed that the
capacity object is the archived version (its size and checksum metadata match
the catalog). Metadata is not bytes, though, so no byte is returned before it
is verified:

- on the first read of an object, the whole object is read once and hashed;
  its checksum must be the catalog's, and while it streams past, the BLAKE3
  hash of every ``VERIFY_BLOCK`` (1 MiB) is remembered (32 bytes a MiB);
- every read, then and later, fetches the aligned verify blocks that cover
  it and checks each against its remembered hash before handing out a byte.
  A byte flipped in the object after the first read fails the read of its
  block with ``IntegrityError``, as does one flipped before (the first read).

The remembered hashes are kept per (store, key, archived checksum) in a
bounded process-wide cache (``VERIFIED_BYTES_REMEMBERED`` of object bytes, least
recently used dropped), so re-opening a file does not re-read it. The cost is
one full read of the object on its first read in a process (a Parquet footer
read of a huge file pays for the whole file once); the figures are in the
README. Chunk hashes stored at archive time (a BLAKE3 tree, verified ranges
without a full read) would remove that cost but change what every archive
writes; until then the full first read is the price of never serving an
unverified byte.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from itertools import islice

import blake3
from fsspec.spec import AbstractBufferedFile

from tiering.catalog import FileRecord
from tiering.core.errors import IntegrityError, NotFoundError
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


#: The unit of verification: every read fetches whole, aligned blocks of this size and checks each.
VERIFY_BLOCK = 1 << 20
#: The first read of an object fetches it in pieces this big, a few at a time, hashed in order.
_PIECE = 8 << 20
_PIECES_IN_FLIGHT = 4
#: Object bytes whose block hashes are remembered (32 bytes per MiB: 1 TiB of objects is 32 MiB of hashes).
VERIFIED_BYTES_REMEMBERED = 1 << 40


class _Verified:
    """Block hashes of objects read whole and found to be the archived version, least recently used first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._blocks: OrderedDict[tuple[str, str, str], tuple[bytes, ...]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, ident: tuple[str, str, str]) -> tuple[bytes, ...] | None:
        with self._lock:
            hashes = self._blocks.get(ident)
            if hashes is not None:
                self._blocks.move_to_end(ident)
            return hashes

    def put(self, ident: tuple[str, str, str], hashes: tuple[bytes, ...]) -> None:
        with self._lock:
            if ident not in self._blocks:
                self._bytes += len(hashes) * VERIFY_BLOCK
            self._blocks[ident] = hashes
            while self._bytes > self.limit and len(self._blocks) > 1:
                _, dropped = self._blocks.popitem(last=False)
                self._bytes -= len(dropped) * VERIFY_BLOCK


    def forked(self) -> None:
        # A dataloader worker forked while another thread held the lock must not wait for it forever;
        # what was verified before the fork stays valid in the child.
        self._lock = threading.Lock()


VERIFIED = _Verified(VERIFIED_BYTES_REMEMBERED)
os.register_at_fork(after_in_child=VERIFIED.forked)


def block_hashes(store: Store, key: str, size: int, checksum: str, where: str) -> tuple[bytes, ...]:
    """Read the whole object once; its verify blocks' hashes if it is the archived version, else ``IntegrityError``."""
    if not checksum.startswith(ALGORITHM + ":"):
        raise IntegrityError(f"{where}: the catalog's checksum {checksum or '(none)'} is not {ALGORITHM}; "
                             "its bytes cannot be verified, so they are not served", store=store.url, key=key)
    whole, hashes = Hasher(), []
    with ThreadPoolExecutor(_PIECES_IN_FLIGHT, thread_name_prefix="tiered-verify") as pool:
        starts = iter(range(0, size, _PIECE))
        window = [pool.submit(store.read_range, key, s, min(_PIECE, size - s))
                  for s in islice(starts, _PIECES_IN_FLIGHT)]
        offset = 0
        while window:
            data = window.pop(0).result()
            if (s := next(starts, None)) is not None:
                window.append(pool.submit(store.read_range, key, s, min(_PIECE, size - s)))
            expected = min(_PIECE, size - offset)
            if len(data) != expected:
                raise _changed(where, store, key, offset, len(data), expected)
            whole.update(data)
            view = memoryview(data)
            hashes.extend(blake3.blake3(view[i:i + VERIFY_BLOCK]).digest() for i in range(0, len(data), VERIFY_BLOCK))
            offset += len(data)
    if whole.value != checksum:
        raise IntegrityError(f"{where}: the bytes of the capacity copy {key!r} do not match the archived checksum "
                             f"(got {whole.value}, expected {checksum}); refusing to return them",
                             store=store.url, key=key)
    return tuple(hashes)


def _changed(where: str, store: Store, key: str, offset: int, got: int, expected: int) -> IntegrityError:
    return IntegrityError(f"{where}: the capacity copy {key!r} returned {got} bytes at offset {offset}, expected "
                          f"{expected}; it changed after the file was opened", store=store.url, key=key)


class ReleasedFile(AbstractBufferedFile):
    """A read-only file over a released file's capacity object (``size`` is the true size)."""

    def __init__(self, fs, path: str, store: Store, record: FileRecord, *, block_size: int,
                 cache_type: str = "readahead", cache_options: dict | None = None) -> None:
        self.store = store
        self.key = record.object_key
        self.tier = record.tier
        self.checksum = record.checksum or ""
        self._ident = (store.url, self.key, self.checksum)
        self._hashes: tuple[bytes, ...] | None = None
        super().__init__(fs, path, mode="rb", block_size=block_size, cache_type=cache_type,
                         cache_options=cache_options, size=record.size)

    def _where(self) -> str:
        return f"tiered://{self.path} (tier {self.tier!r})"

    def _verified_hashes(self) -> tuple[bytes, ...]:
        if self._hashes is None:
            self._hashes = VERIFIED.get(self._ident)
            if self._hashes is None:
                self._hashes = block_hashes(self.store, self.key, self.size, self.checksum, self._where())
                VERIFIED.put(self._ident, self._hashes)
        return self._hashes

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if start >= end:
            return b""
        hashes = self._verified_hashes()
        first, last = start // VERIFY_BLOCK, (end - 1) // VERIFY_BLOCK
        lo, hi = first * VERIFY_BLOCK, min((last + 1) * VERIFY_BLOCK, self.size)
        data = self.store.read_range(self.key, lo, hi - lo)
        if len(data) != hi - lo:
            raise _changed(self._where(), self.store, self.key, lo, len(data), hi - lo)
        view = memoryview(data)
        for i, block in enumerate(range(first, last + 1)):
            piece = view[i * VERIFY_BLOCK:(i + 1) * VERIFY_BLOCK]
            if blake3.blake3(piece).digest() != hashes[block]:
                raise IntegrityError(f"{self._where()}: bytes {block * VERIFY_BLOCK}-"
                                     f"{block * VERIFY_BLOCK + len(piece) - 1} of the capacity copy {self.key!r} "
                                     "do not match what was verified against the archived checksum; refusing to "
                                     "return them", store=self.store.url, key=self.key)
        return bytes(view[start - lo:end - lo])
