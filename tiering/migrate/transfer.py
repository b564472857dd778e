"""One file's work, the same on the coordinator's threads and on a Dask worker.

``Transfer(job)`` is a small picklable callable: given a ``Candidate`` it decides
whether the destination already has the file (size + mtime, or checksums) and
copies it if not, verified; given a ``Removal`` it deletes. It never raises for
a file: the answer is an ``ItemResult``. Each process opens the two sides once
(per ``Job``) and shares one bandwidth bucket among its threads.

``call_async`` is the same work for an event loop (the local executor without
a bandwidth limit): uploads and downloads of small files go through the
store's async client, with many files in flight on one thread; whatever
would block (a large file, a local-to-local copy, an fsync) runs on a worker
thread.

Every copy is verified by size and BLAKE3: uploads by the store (checksummed
as sent, object published atomically), downloads against the object's
recorded checksum before the rename into place, local copies by re-reading
the written file. Store-to-store copies go through a verified local temp file.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from tiering.core.errors import (
    CONFIG,
    RUN,
    IntegrityError,
    InvalidKeyError,
    TieringError,
    exit_status,
    scope_of,
)
from tiering.migrate.endpoints import EndpointSpec
from tiering.migrate.listing import Candidate, Filter, Removal
from tiering.migrate.localtree import check_unchanged
from tiering.migrate.result import DONE, FAILED, NOOP, SKIPPED, ItemResult
from tiering.stores.base import FileMeta, ObjectInfo, call_async


@dataclass(frozen=True)
class Job:
    """Everything a worker needs for a run; frozen, hashable, and small when pickled."""

    src: EndpointSpec
    dst: EndpointSpec
    filter: Filter = Filter()
    checksum: bool = False  # compare by checksum instead of size + mtime
    dry_run: bool = False
    bwlimit: float = 0.0  # bytes per second for each process (0: no limit)
    fsync: bool = False  # fsync each file written to a local destination
    scratch: str = ""  # folder for store-to-store temp files ("" : the system's)


class TokenBucket:
    """A bandwidth limit shared by every thread of a process (a burst of one second's worth)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._tokens = rate
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def consume(self, n: int) -> None:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.rate, self._tokens + (now - self._last) * self.rate) - n
            self._last = now
            debt = -self._tokens
        if debt > 0:
            time.sleep(debt / self.rate)  # later callers see the debt grow and wait longer


@dataclass
class Sides:
    src: object
    dst: object
    bucket: TokenBucket | None


_open: dict[Job, Sides] = {}
_open_lock = threading.Lock()


def sides_for(job: Job) -> Sides:
    """The job's two sides, opened once in this process."""
    with _open_lock:
        if job not in _open:
            src, dst = job.src.open(), job.dst.open(fsync=job.fsync)
            _open[job] = Sides(src, dst, TokenBucket(job.bwlimit) if job.bwlimit > 0 else None)
        return _open[job]


def close_sides(job: Job) -> None:
    with _open_lock:
        sides = _open.pop(job, None)
    if sides:
        sides.src.close()
        sides.dst.close()


class Transfer:
    """The per-file function of a run (see the module docstring)."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self._sides: Sides | None = None

    def __getstate__(self) -> dict:
        return {"job": self.job, "_sides": None}  # open sides stay in their process

    def __call__(self, item) -> ItemResult:
        if isinstance(item, ItemResult):
            return item  # a listing failure, passed through to be counted
        action = "delete" if isinstance(item, Removal) else "copy"
        try:
            sides = self._sides or self._open()
            if isinstance(item, Removal):
                return remove_one(sides, self.job, item)
            return copy_one(sides, self.job, item)
        except (TieringError, OSError) as exc:
            return failure(item.key, action, exc)

    async def call_async(self, item) -> ItemResult:
        """``self(item)`` from an event loop."""
        if isinstance(item, ItemResult):
            return item
        if isinstance(item, Removal):
            return await asyncio.to_thread(self, item)
        try:
            return await copy_one_async(self._sides or self._open(), self.job, item)
        except (TieringError, OSError) as exc:
            return failure(item.key, "copy", exc)

    def _open(self) -> Sides:
        self._sides = sides_for(self.job)
        return self._sides


def copy_one(sides: Sides, job: Job, c: Candidate) -> ItemResult:
    """Copy one file unless the destination has it already; verified."""
    if job.filter.needs_age:
        mtime = c.mtime_ns if c.mtime_ns is not None else sides.src.mtime(c.key)
        if mtime is not None and not job.filter.age_ok(mtime):
            return ItemResult(c.key, "copy", SKIPPED, reason="excluded by age")
    why = differs(sides, c, job.checksum)
    if not why:
        return ItemResult(c.key, "copy", NOOP, reason="already at the destination")
    if not job.dry_run:
        _copy(sides, c.key, job.scratch)
    return ItemResult(c.key, "copy", DONE, c.size, why)


async def copy_one_async(sides: Sides, job: Job, c: Candidate) -> ItemResult:
    """``copy_one`` for an event loop (``Transfer.call_async``)."""
    if job.filter.needs_age or c.dst_size is not None:  # may need a HEAD or a checksum: decide on a thread
        return await asyncio.to_thread(copy_one, sides, job, c)
    if not job.dry_run:
        await _copy_async(sides, c.key, c.size, job.scratch)
    return ItemResult(c.key, "copy", DONE, c.size, "new")


async def _copy_async(sides: Sides, key: str, size: int, scratch: str) -> None:
    src, dst = sides.src, sides.dst
    if src.kind == "local" and dst.kind == "store":
        path = src.path(key)
        st = os.lstat(path)
        await call_async(dst.store, "put_file", path, key, FileMeta.from_stat(st, key), size=st.st_size)
        check_unchanged(path, st, key)
    elif src.kind == "store" and dst.kind == "local" and not dst.fsync:
        tmp = dst.temp_path()
        try:
            info = await call_async(src.store, "get_file", key, tmp, size=size)
            dst.commit(tmp, key, _meta_of(info, key, tmp))
        except BaseException:
            tmp.unlink(missing_ok=True)  # (once committed, the temp name is gone: nothing to clean)
            raise
    else:  # local to local, store to store, or fsyncs to wait for: the blocking path, on a thread
        await asyncio.to_thread(_copy, sides, key, scratch)


def differs(sides: Sides, c: Candidate, checksum: bool) -> str:
    """Why the destination's copy is not the source's file; "" when it is."""
    if c.dst_size is None:
        return "new"
    if c.dst_size != c.size:
        return "size differs"
    if checksum:
        a, b = sides.src.checksum(c.key), sides.dst.checksum(c.key)
        return "" if a and a == b else "checksum differs"
    src = c.mtime_ns if c.mtime_ns is not None else sides.src.mtime(c.key)
    if src is None:
        return ""  # an object without our metadata: size is all there is to compare (as rclone does)
    dst = c.dst_mtime_ns if c.dst_mtime_ns is not None else sides.dst.mtime(c.key)
    return "" if src == dst else "modification time differs"


def _copy(sides: Sides, key: str, scratch: str) -> None:
    src, dst = sides.src, sides.dst
    progress = sides.bucket.consume if sides.bucket else None
    if src.kind == "local":
        path = src.path(key)
        st = os.lstat(path)
        meta = FileMeta.from_stat(st, key)
        if dst.kind == "local":
            dst.copy_in(path, key, meta, progress)
        else:
            dst.store.put_file(path, key, meta, progress)
        check_unchanged(path, st, key)
        return
    tmp = dst.temp_path() if dst.kind == "local" else _scratch_path(scratch)
    try:
        info = src.store.get_file(key, tmp, None if dst.kind == "store" else progress)
        meta = _meta_of(info, key, tmp)
        if dst.kind == "local":
            dst.commit(tmp, key, meta)
        else:
            dst.store.put_file(tmp, key, meta, progress)
    finally:
        tmp.unlink(missing_ok=True)


def _meta_of(info: ObjectInfo, key: str, tmp: Path) -> FileMeta:
    """The file metadata to give the copy: the object's own, or plain defaults for foreign objects."""
    size = os.stat(tmp).st_size
    if size != info.size:
        raise IntegrityError(f"{key}: read {size} bytes of a {info.size}-byte object", key=key)
    if info.meta is not None:
        return replace(info.meta, path=key)
    return FileMeta(size, time.time_ns(), 0o100644, os.getuid(), os.getgid(), key)


def _scratch_path(scratch: str) -> Path:
    return Path(scratch or tempfile.gettempdir()) / f"tiering-migrate-{os.getpid()}-{secrets.token_hex(8)}"


def remove_one(sides: Sides, job: Job, r: Removal) -> ItemResult:
    """Delete one destination-only file (``sync --delete``), unless an age filter protects it."""
    if job.filter.needs_age:
        mtime = r.mtime_ns if r.mtime_ns is not None else sides.dst.mtime(r.key)
        if mtime is not None and not job.filter.age_ok(mtime):
            return ItemResult(r.key, "delete", SKIPPED, reason="excluded by age")
    if not job.dry_run:
        sides.dst.delete(r.key)
    return ItemResult(r.key, "delete", DONE, r.size, "not in the source")


def failure(key: str, action: str, exc: BaseException) -> ItemResult:
    """A failed file; ``stop`` when the failure says the whole run is doomed (``tiering.core.errors.scope_of``)."""
    if isinstance(exc, FileNotFoundError):
        return ItemResult(key, action, FAILED, reason=f"{exc.filename or key}: no such file (deleted during the run?)")
    if isinstance(exc, InvalidKeyError):
        # A listed name that this side cannot hold (not a canonical key, a reserved or empty segment, a
        # control character): that file's problem, not the user's nor the run's.
        return ItemResult(key, action, FAILED, reason=f"cannot be copied under this name here: {exc}")
    stop = exit_status(exc) if scope_of(exc) in (RUN, CONFIG) else 0
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return ItemResult(key, action, FAILED, reason=f"{where}{exc.strerror or exc}", stop=stop)
    return ItemResult(key, action, FAILED, reason=str(exc), stop=stop)
