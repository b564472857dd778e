"""The Store protocol: the one seam between tiering and a capacity tier.

A store holds objects under a prefix. Keys are relative paths encoded by
``stores.keys`` (``encode_key``); each store maps them to its own names.
Every object carries the metadata of the file it came from (``FileMeta``), so
a tier can be read and its catalog rebuilt without us.

Contracts every implementation keeps (checked by ``tests/test_store_conformance.py``):

- ``put_file`` publishes an object atomically: readers see the old object or
  the complete new one, never a part. It checksums the bytes while sending them
  and raises ``SourceChangedError`` (leaving nothing behind) if they differ
  from ``meta.checksum`` when one was given.
- ``get_file`` writes the object to exactly the given local path, checks size
  and checksum against the object's metadata, and on any failure removes what
  it wrote before raising. ``put_file`` records whether the source was sparse
  (``FileMeta.sparse``); ``get_file`` of such an object leaves holes where the
  bytes are zeros, so a sparse file comes back sparse and a dense one dense.
- ``delete`` of a missing key succeeds (deletes are idempotent).
- Errors are the project's own (``tiering.core.errors``), never an SDK's.

``call_async(store, "put_file", ...)`` runs a store method from an event loop:
the store's own coroutine (``put_file_async``) when it is an ``AsyncTransfers``,
else the blocking method on a worker thread. Only stores with a native async
client (S3) need to write any. A store's coroutines are for small objects (up to
``INLINE_MAX``); a caller that knows the object's size passes it, and a
larger one goes straight to the blocking method on a thread.

Optional abilities are separate small protocols (``SupportsStorageClass``,
``SupportsRestore``, ``SupportsCleanup``, ``AsyncTransfers``, ``WritesBackEarly``,
``TransfersElsewhere``), checked with ``isinstance`` before use, never by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import quote, unquote

#: A transfer's byte callback: told the number of bytes just moved (the runs' progress types are
#: ``mover.executor.Progress`` and ``scan.ScanProgress``, which a bar draws).
OnBytes = Callable[[int], None]

#: The largest object a store's ``*_async`` coroutines move on the event loop itself
#: (reading and hashing it takes well under a millisecond); larger ones run the
#: blocking path on a worker thread, so one big file never stalls the others.
INLINE_MAX = 1 << 20

META_PREFIX = "tiering-"


@dataclass(frozen=True, slots=True)
class FileMeta:
    """What a capacity object records about the file it was copied from."""

    size: int
    mtime_ns: int
    mode: int
    uid: int
    gid: int
    path: str  # the encoded relative path (== key); survives moves of the prefix
    checksum: str = ""
    #: The source had holes (``SEEK_HOLE`` found one before its end): ``get_file`` writes holes
    #: where the bytes are zeros, so a sparse file comes back sparse. Set by ``put_file``.
    sparse: bool = False

    @classmethod
    def from_stat(cls, st, key: str, checksum: str = "") -> FileMeta:
        return cls(st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_gid, key, checksum)

    def to_headers(self) -> dict[str, str]:
        """User-metadata pairs (without the SDK's ``x-amz-meta-`` style prefix)."""
        return {
            f"{META_PREFIX}size": str(self.size),
            f"{META_PREFIX}mtime-ns": str(self.mtime_ns),
            f"{META_PREFIX}mode": f"{self.mode:o}",
            f"{META_PREFIX}uid": str(self.uid),
            f"{META_PREFIX}gid": str(self.gid),
            # Header values must be ASCII: the key is URL-quoted here.
            f"{META_PREFIX}path": quote(self.path, safe="/"),
            f"{META_PREFIX}checksum": self.checksum,
            **({f"{META_PREFIX}sparse": "1"} if self.sparse else {}),
        }

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> FileMeta | None:
        """Parse user metadata (keys case-insensitive); None if it is not ours."""
        h = {k.lower(): v for k, v in headers.items()}
        try:
            return cls(
                size=int(h[f"{META_PREFIX}size"]),
                mtime_ns=int(h[f"{META_PREFIX}mtime-ns"]),
                mode=int(h[f"{META_PREFIX}mode"], 8),
                uid=int(h[f"{META_PREFIX}uid"]),
                gid=int(h[f"{META_PREFIX}gid"]),
                path=unquote(h[f"{META_PREFIX}path"], errors="strict"),
                checksum=h.get(f"{META_PREFIX}checksum", ""),
                sparse=h.get(f"{META_PREFIX}sparse", "") == "1",
            )
        except (KeyError, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One object as the store sees it."""

    key: str
    size: int
    etag: str = ""
    storage_class: str = ""
    meta: FileMeta | None = None
    #: For archive storage classes: True once a restored copy can be read.
    readable: bool = True
    #: Set by ``put_file`` when the server itself confirmed it stored exactly the
    #: bytes we hashed (an MD5 ETag, a CRC-64 match, or our own fsynced write),
    #: so a separate ``head`` to verify the copy adds nothing.
    verified: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def checksum(self) -> str:
        return self.meta.checksum if self.meta else ""


@runtime_checkable
class Store(Protocol):
    """A capacity tier. Implementations: posix, s3, oss."""

    #: The tier's URL, with no secrets in it.
    url: str

    def put_file(self, local: str | Path, key: str, meta: FileMeta, progress: OnBytes | None = None) -> ObjectInfo:
        """Upload a local file as ``key``; returns the stored object's info (with checksum)."""

    def get_file(self, key: str, local: str | Path, progress: OnBytes | None = None) -> ObjectInfo:
        """Download ``key`` into the local path, verified against its metadata."""

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``start`` (fewer only at the end of the object)."""

    def open(self, key: str) -> BinaryIO:
        """A streaming, read-only file object over the whole object."""

    def head(self, key: str) -> ObjectInfo:
        """Size, storage class and file metadata of one object; ``NotFoundError`` if absent."""

    def delete(self, key: str) -> None:
        """Remove one object; a missing key is not an error."""

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix``, in key order, streamed.

        Listings carry key, size and etag only: ``meta`` is None (``head`` has it).
        """

    def close(self) -> None:
        """Release connections and threads."""


@runtime_checkable
class SupportsStorageClass(Protocol):
    """A store whose objects have storage classes (OSS, S3)."""

    storage_classes: tuple[str, ...]

    def set_storage_class(self, key: str, storage_class: str) -> None: ...


@runtime_checkable
class SupportsRestore(Protocol):
    """A store with archive classes whose objects must be restored before reading."""

    def restore(self, key: str, *, tier: str = "Standard", days: int = 1) -> None:
        """Ask for a readable copy of an archived object (idempotent)."""

    def wait_restored(self, key: str, *, timeout: float, poll: float = 5.0) -> ObjectInfo:
        """Poll until the object is readable; ``TransientError`` after ``timeout`` seconds."""


@runtime_checkable
class SupportsCleanup(Protocol):
    """A store whose interrupted writes can leave hidden leftovers (temp files, unfinished uploads)."""

    def cleanup_incomplete(self, key: str | None = None) -> int:
        """Remove leftovers of interrupted writes (of ``key``, or all of dead writers); returns how many."""


@runtime_checkable
class AsyncTransfers(Protocol):
    """A store with its own coroutines for small objects (S3): ``call_async`` runs them on the loop."""

    async def put_file_async(self, local: str | Path, key: str, meta: FileMeta) -> ObjectInfo: ...

    async def get_file_async(self, key: str, local: str | Path) -> ObjectInfo: ...

    async def head_async(self, key: str) -> ObjectInfo: ...

    async def delete_async(self, key: str) -> None: ...


@runtime_checkable
class WritesBackEarly(Protocol):
    """A store that can start each downloaded part's disk write as it lands (S3).

    For callers that fsync what they download (the mover's restores): the disk
    write then overlaps the download instead of following it.
    """

    write_back_early: bool


#: Runs a blocking call for a coroutine: ``await run(fn, *args)`` (the mover's hot-tier ``HotIO``).
LocalIO = Callable[..., Awaitable]


@runtime_checkable
class OffloadsLocalIO(Protocol):
    """An ``AsyncTransfers`` store whose small transfers read and write the local file on the event loop.

    That costs microseconds on a local disk; on a networked filesystem each
    open, read and close is a round trip, and on the loop they would serialise.
    A caller that knows its files are on one sets ``local_io`` (None: inline).
    """

    local_io: LocalIO | None


@runtime_checkable
class FillsDescriptors(Protocol):
    """An ``AsyncTransfers`` store whose ``get_file_async`` also takes an open, empty file's descriptor.

    For an object of up to ``INLINE_MAX`` bytes it writes the bytes into it:
    no open, truncate or close of its own, each a round trip on a networked
    filesystem. The caller owns the descriptor, closes it and removes the file
    on failure. Ask ``fills_descriptors(store)``: it looks at the store's class,
    so a wrapper that forwards attributes to another process is not one.
    """

    fills_descriptors: bool  # (a class attribute)


def fills_descriptors(store: Store) -> bool:
    """True if ``store``'s own class is a ``FillsDescriptors``."""
    return bool(getattr(type(store), "fills_descriptors", False))


def transfers_elsewhere(store: Store) -> bool:
    """True if ``store``'s own class is a ``TransfersElsewhere`` (read on the type: an ``isinstance``
    against a runtime protocol costs tens of microseconds, paid per file otherwise)."""
    return bool(getattr(type(store), "transfers_elsewhere", False))


@runtime_checkable
class TransfersElsewhere(Protocol):
    """A store whose ``put_file``/``get_file`` run in another process (a cluster worker).

    Such a store gets plain path names, not this process's ``/proc/self/fd`` names.
    """

    transfers_elsewhere: bool


#: The ``AsyncTransfers`` coroutine for each method ``call_async`` may be asked for.
_NATIVE: dict[str, Callable[[AsyncTransfers], Callable[..., Awaitable]]] = {
    "put_file": lambda store: store.put_file_async,
    "get_file": lambda store: store.get_file_async,
    "head": lambda store: store.head_async,
    "delete": lambda store: store.delete_async,
}


async def call_async(store: Store, method: str, *args, size: int | None = None):
    """``store.<method>(*args)`` without blocking the event loop.

    The store's own coroutine when its class is an ``AsyncTransfers`` (checked
    on the type: a wrapper that forwards attributes, like the cluster's
    offloaded store, is not one, so it does not skip itself) and the object is
    not known to be larger than ``INLINE_MAX`` (``size``: what a listing or the
    catalog says), else the blocking method on the loop's worker threads.
    """
    native = _NATIVE.get(method)
    if native is not None and issubclass(type(store), AsyncTransfers) and (size is None or size <= INLINE_MAX):
        return await native(store)(*args)
    return await asyncio.to_thread(getattr(store, method), *args)
