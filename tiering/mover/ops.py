"""Archive, release and restore one file: the state machine of DESIGN.md, journaled.

    archive: resident/dirty -> archived   (copy, verify, record)
    release: archived -> released         (archives first when needed)
    restore: released -> archived         (fetch to a temp file, verify, rename over the stub;
                                           or, in place, copy into the stub's own inode)

Every action is journaled before it touches anything and closed in the same
transaction that records the file's new state, so ``recover`` can always tell
how far an interrupted action got. The invariants, never traded for speed:

- nothing is released unless its capacity copy was verified (size and
  checksum) and the file is still exactly the version that was copied;
- a file that changed while it was copied becomes dirty, not released;
- restore never replaces a stub that was written to, and never leaves a
  temp file behind on failure;
- one restore of a file runs at a time, across processes and nodes
  (``restorelock``); an in-place fill is journaled before it starts, and a
  partial fill never looks like a restored file (``stub.fill_stub``).

The actions are coroutines (``archive_async`` ...), so one event loop keeps
many files in flight: their journal writes group-commit, small objects move
through the store's async client, and blocking work (large transfers, fsync)
runs on the loop's worker threads. One thread with many actions in flight
costs far less CPU than a thread per action, whose GIL hand-offs cost more
than the work itself for small files. The plain methods (``archive`` ...)
run one action to completion for callers without a loop; they are safe to call
from many threads at once. Library code never prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

from tiering.core.aio import PerLoop, run_blocking
from tiering.catalog import Catalog, FileRecord
from tiering.config import Config, open_tier
from tiering.core.display import show_path
from tiering.core.errors import (
    CatalogError,
    IntegrityError,
    NeedsRestoreError,
    PathError,
    SourceChangedError,
    StoreError,
    TieringError,
)
from tiering.core.faults import crash_point
from tiering.core.mounts import attribute_lag, fs_type, hot_io, is_local
from tiering.core.states import FileState
from tiering.mover import classchange, restorelock, thaw
from tiering.mover.beneath import Entry, HotRoot
from tiering.mover.fsyncs import SyncBatcher
from tiering.mover.hotio import HotIO
from tiering.mover.identity import Identity, copied_version, open_for_writing
from tiering.mover.outcome import DONE, FAILED, NOOP, SKIPPED, Outcome, failure
from tiering.mover.restorelock import Holder
from tiering.mover.stub import (
    STUB_DIGEST,
    StubBusyError,
    StubError,
    StubRefusedError,
    carries_mark,
    copy_user_xattrs,
    fill_stub,
    ignore_lease_breaks,
    is_stub,
    release_to_stub,
    replace_stub,
    stub_attributes,
    xattr_names,
)
from tiering.stores.base import (
    INLINE_MAX,
    FileMeta,
    ObjectInfo,
    OffloadsLocalIO,
    Store,
    WritesBackEarly,
    call_async,
    fills_descriptors,
    transfers_elsewhere,
)
from tiering.stores.checksum import Hasher
from tiering.stores.keys import encode_key

RESTORE_TMP_PREFIX = ".tiering-restore-"
#: How long a restore waits for another process to close the stub it would replace, before failing it.
LEASE_WAIT = 5.0
#: How long a release tries again while the file is open in another process (a moment, not a reader's session).
BUSY_WAIT = 0.5
#: How long a restore waits for another restorer of the same file (``restorelock``) before failing it.
LOCK_WAIT = 60.0
#: Restored files counted as used (heat) per catalog commit.
HEAT_BATCH = 4096

R = TypeVar("R")


class Mover:
    """Moves files between the hot tier and the capacity tiers of one configuration."""

    def __init__(self, config: Config, catalog: Catalog, *, check_writers: bool = True) -> None:
        self.config = config
        self.catalog = catalog
        self.hot = Path(config.hot_path)
        #: Every file the mover touches is reached through this: never through a symlink (``mover.beneath``).
        self.hot_root = HotRoot(self.hot)
        self._stores: dict[str, Store] = {}
        self._stores_lock = threading.Lock()
        # Which files are open for writing, read from /proc on the first archive or release that asks
        # (a restore never does: a run of restores does not read every process's descriptors).
        self._writers: frozenset[tuple[int, int]] | None = None if check_writers else frozenset()
        #: Tiers whose store a release's read-back has shown, in this process, to keep our metadata.
        self._keeps_metadata: set[str] = set()
        self._use_lease = ignore_lease_breaks()
        #: Seconds a restore waits for other processes to close the stub it would replace.
        self.lease_wait = LEASE_WAIT
        #: Seconds a restore waits for another restorer of the same file, in any process or node, to finish.
        self.lock_wait = LOCK_WAIT
        kind = fs_type(self.hot)  # (read once: /proc/self/mountinfo can be long)
        #: How long another node's change to a hot file may take to show here (0 on a local filesystem).
        self.view_lag = attribute_lag(self.hot, kind)
        #: The hot tier is on this host's own disk: restore locks are record locks (``hostlock``), not
        #: ``mkdir`` locks that other nodes would see.
        self.host_locks = is_local(kind)
        #: Runs the hot tier's blocking calls: inline on a local disk, on threads on a networked filesystem.
        self.io = HotIO(hot_io(config.hot_io, self.hot, kind), config.jobs)
        #: Called with a file's directory descriptor under the write lease, just before it is truncated to a
        #: stub (the access guard marks the directory there, before the stub can be opened). If it raises,
        #: that file's release fails (it stays archived, no stub) with the hook's message as the reason.
        self.before_truncate: Callable[[int], None] | None = None
        #: The restore tier (Expedited/Standard/Bulk) of objects in archive classes (``thaw``); None: the tier's.
        self.restore_tier: str | None = None
        self._used: list[bytes] = []  # restored since the last flush_heat: each counts as one access
        self._used_lock = threading.Lock()
        #: Byte transfers running at once on one event loop (``execute`` sets its ``jobs``).
        self.transfer_jobs = config.jobs
        #: Told the bytes of large transfers as they move (negative once a transfer ends: its file's
        #: outcome counts them from then on), so a progress bar moves during a long file. Set by ``execute``.
        self.on_bytes: Callable[[int], None] | None = None
        self._per_loop: PerLoop[_LoopState] = PerLoop(
            lambda: _LoopState(SyncBatcher(), asyncio.Semaphore(max(1, self.transfer_jobs))))

    # -- plumbing --------------------------------------------------------------

    def store(self, tier: str, storage_class: str | None = None) -> Store:
        """The store of ``tier``; with a ``storage_class`` other than the tier's own, one that writes new
        objects in that class (a rule's ``storage_class``). Any of a tier's stores reads its objects."""
        if storage_class == self.config.tier(tier).storage_class:
            storage_class = None
        name = f"{tier}\0{storage_class}" if storage_class else tier
        with self._stores_lock:
            if name not in self._stores:
                store = self._stores[name] = open_tier(self.config, tier) if not storage_class else \
                    open_store_as(self.config, tier, storage_class)
                if isinstance(store, WritesBackEarly):
                    store.write_back_early = True  # every restore is fsynced: start its disk writes early
                if isinstance(store, OffloadsLocalIO) and self.io.threaded:
                    store.local_io = self.io  # its small transfers' file reads and writes are round trips too
            return self._stores[name]

    def close(self) -> None:
        self.flush_heat()
        for store in self._stores.values():
            store.close()
        self.hot_root.close()
        self.io.close()

    def flush_heat(self) -> None:
        """Count the files restored since the last flush as used now (``Catalog.add_heat``), in one commit.

        Heat only ranks files: a catalog that cannot take it loses the counts, not the run.
        """
        with self._used_lock:
            used, self._used = self._used, []
        if used:
            try:
                self.catalog.add_heat(used, time.time(), self.config.heat_half_life)
            except CatalogError:
                pass

    def _mark_used(self, rel: bytes) -> bool:
        """Note a restored file for ``flush_heat``; True when enough are waiting to flush now."""
        with self._used_lock:
            self._used.append(rel)
            return len(self._used) >= HEAT_BATCH

    def hot_path(self, rel: bytes) -> Path:
        """``rel``'s path name, for messages and readers; the mover itself goes through ``hot_root``."""
        return self.hot / os.fsdecode(rel)

    def _local_name(self, store: Store, where: Entry, fd: int | None = None, name: bytes | None = None) -> str:
        """The name a store's path-taking call gets for a hot file: one that resolves through our
        descriptors (``beneath``), unless the store moves bytes in another process (a cluster
        worker), which gets the plain path, checked through the descriptors just before and after."""
        if transfers_elsewhere(store):
            return str(self.hot / os.fsdecode(where.rel.rpartition(b"/")[0]) / os.fsdecode(name or where.name))
        return f"/proc/self/fd/{fd}" if fd is not None else where.fd_path(name)

    def _open_for_writing(self, st: os.stat_result) -> bool:
        if self._writers is None:
            self._writers = open_for_writing()
        return (st.st_dev, st.st_ino) in self._writers

    def _syncer(self) -> SyncBatcher:
        return self._per_loop.get().syncer

    @contextlib.asynccontextmanager
    async def _entry(self, rel: bytes) -> AsyncIterator[Entry]:
        """``hot_root.entry(rel)``, opened through ``io`` (closing a directory is no round trip: inline)."""
        with await self.io.acquire(self.hot_root.entry, Entry.close, rel) as where:
            yield where

    async def _transfer(self, store: Store, method: str, *args, size: int):
        """A store call that moves ``size`` bytes: at most ``transfer_jobs`` at once, however many actions wait."""
        async with self._per_loop.get().transfers:
            report = self.on_bytes
            if report is None or size <= INLINE_MAX or transfers_elsewhere(store):
                return await call_async(store, method, *args, size=size)  # small, or bytes moved by a worker
            sent = 0

            def progress(nbytes: int) -> None:  # on the store's threads
                nonlocal sent
                sent += nbytes
                report(nbytes)

            try:
                return await call_async(store, method, *args, progress, size=size)
            finally:
                report(-sent)

    # -- archive -----------------------------------------------------------------

    def archive(self, rel: bytes, tier: str | None = None, storage_class: str | None = None) -> Outcome:
        """Copy a resident or dirty file to a capacity tier and verify the copy."""
        return run_blocking(self.archive_async(rel, tier, storage_class))

    async def archive_async(self, rel: bytes, tier: str | None = None, storage_class: str | None = None) -> Outcome:
        """``archive`` as a coroutine."""
        try:
            async with self._entry(rel) as where:
                return (await self._archive(where, tier, storage_class)).outcome
        except (TieringError, OSError) as exc:
            return failure(rel, "archive", exc, tier)

    async def _archive(self, where: Entry, tier: str | None, storage_class: str | None, *,
                       known: tuple[FileRecord | None, os.stat_result] | None = None,
                       then_release: bool = False) -> _Archived:
        """Archive ``where``. ``known``: its catalog record and lstat, when the caller has them already.
        ``then_release``: journal the release in the same commit that records the verified copy."""
        rel = where.rel
        rec, st = known if known else (self.catalog.get(rel), await self.io(where.lstat))
        if skip := self._unmovable(st):
            return _Archived(Outcome(rel, "archive", SKIPPED, skip))
        ident = Identity.of(st)
        if rec and rec.state == FileState.RELEASED:
            return _Archived(Outcome(rel, "archive", NOOP, "already released", tier=rec.tier), rec)
        if rec and rec.state == FileState.ARCHIVED and Identity.of_record(rec) == ident:
            return _Archived(Outcome(rel, "archive", NOOP, "already archived", tier=rec.tier), rec)
        if st.st_size == 0 and await self.io(_marked, where):
            # A released stub whatever the record read says (another run released it since, or the catalog
            # lost it): its object at this key is the file's only copy, which an archive would overwrite.
            return _Archived(Outcome(rel, "archive", SKIPPED, "a released stub (it carries the stub mark), "
                                     "not data: never archived over its own capacity copy"))
        tier = tier or (rec.tier if rec and rec.tier else self.config.default_tier)
        key = encode_key(rel)
        store = self.store(tier, storage_class) if storage_class else self.store(tier)
        entry = await self.catalog.begin_async("archive", rel, "copying", tier=tier, object_key=key, expect=rec,
                                               identity=ident.as_dict())
        crash_point("archive:begin")
        try:
            # Opened once, without following links (a symlink swapped in since the lstat is refused), and
            # handed to the store by descriptor: the bytes copied are this file's, wherever its name points now.
            fd = await self.io.acquire(_open_unchanged, os.close, where, ident)
            try:
                info = await self._transfer(store, "put_file", self._local_name(store, where, fd), key,
                                            FileMeta.from_stat(st, key), size=st.st_size)
            except BaseException:
                os.close(fd)
                raise
            after = Identity.of(await self.io(_close_then_lstat, fd, where))
            crash_point("archive:copied")
            if after != ident:  # unless only its ctime moved and its bytes are still the copy's
                ident = await self.io(copied_version, where, ident, after, info.checksum)
            copy = None
            if not info.verified:  # the store could not confirm the stored bytes itself: read its record back
                copy = await call_async(store, "head", key)
                if copy.size != ident.size or copy.checksum != info.checksum:
                    raise IntegrityError(f"{show_path(rel)}: capacity copy does not verify "
                                         f"(size {copy.size} vs {ident.size}, checksum {copy.checksum} vs {info.checksum})")
        except BaseException as exc:
            await self._abandon_archive(entry, rec, rel, store, key, exc)
            raise
        crash_point("archive:verified")
        base = rec or FileRecord(rel, FileState.RESIDENT)
        record = replace(base, state=FileState.ARCHIVED, tier=tier, object_key=key, storage_class=storage_class or None,
                         checksum=info.checksum, size=ident.size, mtime_ns=ident.mtime_ns, ctime_ns=ident.ctime_ns,
                         ino=ident.ino, archived_at=time.time(), released_at=None)
        release_entry = None
        if then_release:
            release_entry = await self.catalog.end_then_begin_async(
                entry, record, {"checksum": info.checksum}, "release", "stubbing", tier=tier, object_key=key)
        else:
            await self.catalog.end_async(entry, record=record, checksum=info.checksum)
        crash_point("archive:end")
        outcome = Outcome(rel, "archive", DONE, f"copied to {tier} and verified", bytes=ident.size, tier=tier)
        return _Archived(outcome, record, release_entry, copy, info.etag, info if info.verified else None)

    async def _abandon_archive(self, entry: int, rec: FileRecord | None, rel: bytes, store: Store, key: str,
                               exc: BaseException) -> None:
        """Undo a failed archive: drop the unverified copy; a changed file becomes dirty."""
        try:
            await call_async(store, "delete", key)
        except StoreError:
            pass  # recover retries the delete from the open journal entry
        else:
            changed = isinstance(exc, SourceChangedError)
            archived = rec and rec.state in (FileState.ARCHIVED, FileState.DIRTY)
            new_state = FileState.DIRTY if changed and archived else (rec.state if rec else None)
            record = replace(rec, state=new_state) if rec and new_state else None
            await self.catalog.end_async(entry, "failed", record=record, error=str(exc)[:500])

    def _unmovable(self, st: os.stat_result) -> str:
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_nlink > 1:
            return f"hard-linked (nlink {st.st_nlink})"
        if self._open_for_writing(st):
            return "open for writing"
        return ""

    # -- release -----------------------------------------------------------------

    def release(self, rel: bytes, tier: str | None = None, storage_class: str | None = None) -> Outcome:
        """Free a file's blocks on the hot tier, leaving a stub; archives it first if needed (in
        ``storage_class``, when given)."""
        return run_blocking(self.release_async(rel, tier, storage_class))

    async def release_async(self, rel: bytes, tier: str | None = None, storage_class: str | None = None) -> Outcome:
        """``release`` as a coroutine."""
        try:
            async with self._entry(rel) as where:
                return await self._release(where, tier, storage_class)
        except (TieringError, OSError) as exc:
            return failure(rel, "release", exc, tier)

    async def _release(self, where: Entry, tier: str | None, storage_class: str | None = None) -> Outcome:
        rel = where.rel
        rec = self.catalog.get(rel)
        if rec and rec.state == FileState.RELEASED:
            return Outcome(rel, "release", NOOP, "already released", tier=rec.tier)
        st = await self.io(where.lstat)
        entry, copy, etag, confirmed = None, None, "", None
        if rec is None or rec.state != FileState.ARCHIVED or Identity.of_record(rec) != Identity.of(st):
            # Archive first; its closing commit also opens the release entry (one commit, not two).
            archived = await self._archive(where, tier, storage_class, known=(rec, st), then_release=st.st_size > 0)
            if archived.outcome.status not in (DONE, NOOP):
                return replace(archived.outcome, action="release")
            rec, entry, copy, etag = archived.record, archived.release_entry, archived.copy, archived.etag
            confirmed = archived.confirmed
        if skip := self._unmovable(st):
            return Outcome(rel, "release", SKIPPED, skip)
        if rec.size == 0:
            return Outcome(rel, "release", NOOP, "empty file: no blocks to free", tier=rec.tier)
        # Release only what a restore can undo: read the stored object back (however the copy was
        # verified when written: a store may keep the bytes and drop the metadata) and require
        # everything a restore checks. Once one read-back in this process showed that the store keeps
        # the metadata, a copy whose write the store itself confirmed (an MD5 ETag or CRC-64 over
        # exactly our bytes, in the same run) is taken as written: reading every object back would
        # repeat what the write answered, at a round trip per file.
        if copy is None and confirmed is not None and rec.tier in self._keeps_metadata:
            copy = confirmed
        read_back = copy is None
        copy = copy or await call_async(self.store(rec.tier), "head", rec.object_key)
        if why := _unrestorable(copy, rec, etag):
            if entry is not None:
                await self.catalog.end_async(entry, "rolled_back", error=why)
            return Outcome(rel, "release", FAILED, f"{why}; not releasing: the file stays on the hot tier "
                           f"(archived)", tier=rec.tier)
        if read_back:
            self._keeps_metadata.add(rec.tier)
        if entry is None:
            entry = await self.catalog.begin_async("release", rel, "stubbing", tier=rec.tier,
                                                   object_key=rec.object_key, expect=rec)
        crash_point("release:begin")
        try:
            attrs = stub_attributes(rec.size, rec.checksum, rec.tier)
            await self._release_to_stub(where, rec, attrs)
        except StubError as exc:
            await self.catalog.end_async(entry, "rolled_back", error=exc.reason)
            refused = isinstance(exc, StubRefusedError)  # (the hook's own failure: not a file that was busy)
            return Outcome(rel, "release", FAILED if refused else SKIPPED, exc.reason, tier=rec.tier)
        except BaseException as exc:
            await self.catalog.end_async(entry, "failed", error=str(exc)[:500])
            raise
        crash_point("release:stubbed")
        await self.catalog.end_async(entry, record=replace(rec, state=FileState.RELEASED, released_at=time.time()))
        crash_point("release:end")
        return Outcome(rel, "release", DONE, f"stub left; bytes in {rec.tier}", bytes=rec.size, tier=rec.tier)

    # -- transition ----------------------------------------------------------------

    async def transition_async(self, rel: bytes, storage_class: str) -> Outcome:
        """Move a file's capacity copy to ``storage_class`` in place on its store (``classchange``)."""
        try:
            return await classchange.transition(self, rel, storage_class)
        except (TieringError, OSError) as exc:
            return failure(rel, classchange.ACTION, exc, None)

    # -- pin ---------------------------------------------------------------------

    def pin(self, rel: bytes) -> Outcome:
        """Keep a file on the hot tier: set its pin (no policy moves it), restoring it if released."""
        return run_blocking(self.pin_async(rel))

    async def pin_async(self, rel: bytes) -> Outcome:
        """``pin`` as a coroutine."""
        rec = self.catalog.get(rel)
        resident = rec is None or rec.state == FileState.RESIDENT  # an archived record keeps its archived size
        size = await asyncio.to_thread(_size_on_hot_tier, self.hot_root, rel) if resident else None
        await asyncio.to_thread(self.catalog.set_pinned, [rel], True, None if size is None else {rel: size})
        if rec and rec.state == FileState.RELEASED:
            return replace(await self.restore_async(rel), action="pin")
        return Outcome(rel, "pin", DONE if not (rec and rec.pinned) else NOOP, "pinned to the hot tier")

    # -- restore -----------------------------------------------------------------

    def restore(self, rel: bytes, *, in_place: bool = False) -> Outcome:
        """Bring a released file's bytes back from its capacity tier, verified."""
        return run_blocking(self.restore_async(rel, in_place=in_place))

    async def restore_async(self, rel: bytes, *, in_place: bool = False) -> Outcome:
        """``restore`` as a coroutine.

        Every restore of a file first takes its restore lock (``restorelock``),
        so one restore runs at a time per file across processes and nodes; a
        second restorer waits up to ``lock_wait`` seconds, then finds the file
        restored (noop) or fails.

        ``in_place``: for a reader whose open already resolved to the stub's
        inode (the access guard). The verified bytes are copied into the stub's
        own inode instead of a new file renamed over it. Outcomes: done
        (restored); noop (resident already, its record not released: restored
        by another process meanwhile, say); failed with a one-line reason on any
        failure, the stub left exactly as it was (empty, marked), also for a
        file that carries a stub mark the catalog does not call released;
        skipped only when the stub was written to (kept as dirty: the reader
        sees the writer's bytes) or replaced. An in-place restore is never
        stopped part-way: cancelled, it runs to its end (a filled stub the
        catalog still called released would be taken for a written one), then
        the cancellation is passed on; to answer a reader on time, wait on it
        with a timeout rather than cancel it.
        """
        try:
            async with self._entry(rel) as where:
                if in_place:
                    return await _to_the_end(self._restore(where, True))
                return await self._restore(where, False)
        except (TieringError, OSError) as exc:
            return failure(rel, "restore", exc, None)

    async def _restore(self, where: Entry, in_place: bool) -> Outcome:
        rel = where.rel
        rec = self.catalog.get(rel)
        if rec is None or rec.state != FileState.RELEASED:
            return _not_released(where, rec, in_place)
        stub = await self.io(where.lstat)
        if not stat.S_ISREG(stub.st_mode):
            raise PathError(f"{show_path(rel)}: not a regular file any more (the stub was replaced); not restoring",
                            path=rel)
        # An object in an archive class is asked for and waited for (``thaw``); the guard asks on its own.
        if not in_place and thaw.may_sleep(self.config, rec):
            if asleep := await thaw.wake(self, rec, self.restore_tier):
                return asleep
        tmp = f"{RESTORE_TMP_PREFIX}{secrets.token_hex(6)}".encode()
        entry = await self.catalog.begin_async("restore", rel, "fetching", tier=rec.tier, object_key=rec.object_key,
                                               expect=rec, tmp=os.fsdecode(tmp), stub_ino=stub.st_ino,
                                               **({"in_place": True} if in_place else {}))
        crash_point("restore:begin")
        try:
            lock = await restorelock.acquire(where, self.lock_wait, self.io, self.host_locks)
        except BaseException as exc:
            await self.catalog.end_async(entry, "failed", error=str(exc)[:500])
            raise
        if isinstance(lock, Holder):
            why = f"{lock} has been restoring it for over {self.lock_wait:g}s"
            await self.catalog.end_async(entry, "rolled_back", error=why)
            return Outcome(rel, "restore", FAILED, f"{why}; left as it is (try again later)", tier=rec.tier)
        if lock.waited and self.view_lag:
            # Another restorer, maybe on another node, just let go: what it did reaches this node's view
            # of the file (size, mark) only after the filesystem client's caches expire.
            await asyncio.sleep(self.view_lag)
        try:
            close = await self._restore_locked(where, rec, stub, tmp, entry, in_place)
        except _Unsettled as exc:
            # The entry stays open and this process keeps the lock until it ends: ``recover`` settles the file.
            out = failure(rel, "restore", exc.__cause__ or exc, rec.tier)
            return replace(out, reason=f"{out.reason}; the partly filled stub is left for `tiering recover`")
        except BaseException as exc:
            lock.release()
            await self.catalog.end_async(entry, "failed", error=str(exc)[:500])
            raise
        # The lock goes before the journal closes, so a crash never leaves a lock without an open entry
        # for ``recover`` to find it by; a restorer that gets it meanwhile finds the file restored.
        await self.io(lock.release)
        await self.catalog.end_async(entry, close.status, record=close.record, **close.detail)
        if close.outcome.status != DONE:
            return close.outcome
        crash_point("restore:end")
        if not in_place and thaw.may_sleep(self.config, rec):
            await asyncio.to_thread(thaw.woken, self.catalog, rel)
        if self._mark_used(rel):
            await asyncio.to_thread(self.flush_heat)
        return close.outcome

    async def _restore_locked(self, where: Entry, rec: FileRecord, stub: os.stat_result, tmp: bytes, entry: int,
                              in_place: bool) -> _Close:
        """The restore proper, under the file's restore lock: how to close its journal entry."""
        rel = where.rel
        # Look again now that no other restorer can be at work: one may have finished since we looked
        # (while we waited for the lock, or just before we took it).
        found = await self._look_again(where, rec, stub)
        if isinstance(found, _Close):
            return found
        rec, stub, names = found
        try:
            try:
                note = await self._fetch(rec, where, tmp, stub, in_place, names)
            except NeedsRestoreError as exc:
                if in_place or not (asleep := await thaw.wake(self, rec, self.restore_tier)):
                    raise
                where.unlink(tmp)
                return _Close("rolled_back", None, {"error": str(exc)[:500]}, asleep)
            crash_point("restore:fetched")
            if in_place:
                new = await self._fill(where, tmp, stub, entry)
            else:
                new = await self._replace_stub(where, tmp, stub)
                # The rename must be on disk before the journal says "restored";
                # renames in one directory share one fsync of it.
                await self._syncer().sync_dir(where.dir_fd)
                crash_point("restore:renamed")
        except _Unsettled:
            raise  # (its temp file is what recovery finishes the fill from)
        except StubError as exc:
            where.unlink(tmp)
            if isinstance(exc, StubBusyError):  # work not done is not success: the stub is still there
                outcome = Outcome(rel, "restore", FAILED, f"the stub stayed open in another process for "
                                  f"{self.lease_wait:g}s; left as it is (try again once it is closed)", tier=rec.tier)
            else:
                outcome = Outcome(rel, "restore", SKIPPED, f"the stub changed ({exc.reason}); left as it is")
            return _Close("rolled_back", None, {"error": exc.reason}, outcome)
        except BaseException:
            where.unlink(tmp)
            raise
        record = replace(rec, state=FileState.ARCHIVED, mtime_ns=new.st_mtime_ns, ctime_ns=new.st_ctime_ns,
                         ino=new.st_ino, released_at=None)
        how = "in place " if in_place else ""
        return _Close("done", record, {}, Outcome(rel, "restore", DONE, f"restored {how}from {rec.tier} and verified",
                                                 bytes=rec.size, tier=rec.tier, warning=note))

    async def _look_again(self, where: Entry, rec: FileRecord,
                          stub: os.stat_result) -> tuple[FileRecord, os.stat_result, list[str]] | _Close:
        """Under the lock: the record and stub to restore from, and the names of the stub's xattrs (for
        the restored copy); or how to close the entry (noop when another restorer restored the file, in
        this process or another, on this node or another)."""
        rel, again = where.rel, "restored by another process"
        now, names = await self.io(_stub_now, where, stub.st_ino)
        marked = None if names is None else carries_mark(names)
        if marked is False and self.view_lag:
            # On a networked filesystem an empty, unmarked stub may be one another node just filled in
            # place, its size not yet in this node's view (the client's attribute cache): look until it shows.
            now = await _view_settled(where, now, self.view_lag)
        if stat.S_ISREG(now.st_mode) and now.st_size == 0 and now.st_ino == stub.st_ino:
            # Still our stub, so nobody restored it (its ctime may have moved: a restore that rolled back).
            return rec, now, names or []
        rec = self.catalog.get(rel)
        if rec is None or rec.state != FileState.RELEASED:
            return _Close("rolled_back", None, {"error": again},
                          Outcome(rel, "restore", NOOP, again, tier=rec.tier if rec else None))
        if (stat.S_ISREG(now.st_mode) and now.st_size == rec.size and not _marked(where)
                and _same_checksum(await asyncio.to_thread(checksum_at, where), rec.checksum)):
            # Its closing commit is not in yet (it lets go of the lock first), or it had no catalog to write.
            record = replace(rec, state=FileState.ARCHIVED, mtime_ns=now.st_mtime_ns, ctime_ns=now.st_ctime_ns,
                             ino=now.st_ino, released_at=None)
            return _Close("done", record, {"found": again}, Outcome(rel, "restore", NOOP, again, tier=rec.tier))
        if stat.S_ISREG(now.st_mode) and now.st_size != 0:
            return _Close("rolled_back", replace(rec, state=FileState.DIRTY), {"error": "the stub was written to"},
                          Outcome(rel, "restore", SKIPPED, "the stub was written to after release; kept as dirty",
                                  tier=rec.tier))
        return _Close("rolled_back", None, {"error": "the stub changed"},
                      Outcome(rel, "restore", SKIPPED, "the stub changed (replaced); left as it is", tier=rec.tier))

    async def _fill(self, where: Entry, tmp: bytes, stub: os.stat_result, entry: int) -> os.stat_result:
        """Copy the verified ``tmp`` into the stub's own inode (``fill_stub``), journaled first; the file's status."""
        await asyncio.to_thread(self.catalog.step, entry, "filling", stub_atime_ns=stub.st_atime_ns,
                                stub_mtime_ns=stub.st_mtime_ns)
        crash_point("restore:filling")
        try:
            new = await asyncio.to_thread(fill_stub, where, tmp, Identity.of(stub))
        except StubError:
            raise
        except BaseException as exc:
            if where.lstat().st_size != 0:  # the fill could not be undone: only recovery may settle it now
                raise _Unsettled() from exc
            raise
        crash_point("restore:filled")
        where.unlink(tmp)
        await self._syncer().sync_dir(where.dir_fd)  # no temp file outlives the journal entry
        return new

    async def _release_to_stub(self, where: Entry, rec: FileRecord, attrs: dict[str, bytes]) -> None:
        """``release_to_stub``, trying again for up to ``BUSY_WAIT`` seconds while the file is open
        elsewhere: an access guard holds each file opened in a watched folder for a moment."""
        def step() -> None:
            release_to_stub(where, Identity.of_record(rec), attrs, self._use_lease, self.before_truncate)

        await _while_busy(self.io.off_loop, step, BUSY_WAIT, 0.005, 0.1)

    async def _replace_stub(self, where: Entry, tmp: bytes, stub: os.stat_result) -> os.stat_result:
        """``replace_stub``, waiting up to ``lease_wait`` seconds for another process to close the stub;
        the restored file's status."""
        def step() -> os.stat_result:
            replace_stub(where, tmp, Identity.of(stub), self._use_lease)
            return where.lstat()

        return await _while_busy(self.io, step, self.lease_wait, 0.02, 0.5)

    async def _fetch(self, rec: FileRecord, where: Entry, tmp: bytes, stub: os.stat_result, in_place: bool,
                     names: list[str]) -> str:
        """Download into ``tmp`` beside ``where``, check it against the catalog, give it the stub's
        owner/mode/times (``in_place``: only the bytes matter, which are copied into the stub itself,
        and the stub is not opened); returns a warning for the outcome ('' when all was as expected)."""
        store = self.store(rec.tier)
        # Ours, not a planted link; kept open for the checks and attributes after the download (on a
        # networked filesystem every open and close is a round trip).
        fd = await self.io.acquire(_create_copy, os.close, where, tmp, stub)
        try:
            into = fd if rec.size <= INLINE_MAX and fills_descriptors(store) else \
                self._local_name(store, where, name=tmp)
            info = await self._transfer(store, "get_file", rec.object_key, into, size=rec.size)
            # The store checked the bytes against the object's own metadata; the catalog's checksum is
            # checked too, so an object whose metadata was lost (or replaced) never passes for the file.
            got = info.checksum or (await asyncio.to_thread(checksum_of, fd) if info.size == rec.size else "")
            if not _same_checksum(got, rec.checksum) or info.size != rec.size:
                lost = "" if info.checksum else ", its metadata is missing"
                raise IntegrityError(f"{show_path(rec.path)}: the object in {rec.tier} is not the archived version "
                                     f"(checksum {got or 'missing'}{lost}, expected {rec.checksum})")
            # One trip to the pool on a networked filesystem (fsync included); on a local disk the fsync
            # joins the loop's batch.
            await self.io(_settle_copy, where, fd, rec, None if in_place else stub, names, self.io.threaded)
            if not in_place and not self.io.threaded:
                await self._syncer().sync_file(fd)  # the bytes are on disk before the rename publishes them
        finally:
            await self.io(os.close, fd)
        return "" if info.checksum else (f"the object's metadata is missing in {rec.tier}; the bytes were verified "
                                          "against the catalog's checksum instead")


@dataclass(frozen=True, slots=True)
class _LoopState:
    """What the mover's actions on one event loop share."""

    syncer: SyncBatcher
    transfers: asyncio.Semaphore


@dataclass(frozen=True, slots=True)
class _Archived:
    """What ``_archive`` did, for ``_release`` to go on from."""

    outcome: Outcome
    record: FileRecord | None = None  # the file's record once archived (or as found, for a no-op)
    release_entry: int | None = None  # the release journal entry opened with the archive's commit
    copy: ObjectInfo | None = None  # the stored object as read back after the copy, if it was
    etag: str = ""  # the stored object's ETag as the write reported it
    confirmed: ObjectInfo | None = None  # what the write stored, when the store itself confirmed the bytes


@dataclass(frozen=True, slots=True)
class _Close:
    """How a restore closes its journal entry: status, the file's new record, details; and its outcome."""

    status: str
    record: FileRecord | None
    detail: dict
    outcome: Outcome


class _Unsettled(Exception):
    """An in-place fill failed and could not be undone (its cause says why): left for ``recover``."""


async def _to_the_end(coro: Coroutine[object, object, R]) -> R:
    """Await ``coro`` to its end even if the caller is cancelled meanwhile; then pass the cancellation on."""
    task = asyncio.ensure_future(coro)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # (seen: its outcome is the file's state, which the journal holds)
        raise asyncio.CancelledError
    return task.result()


def _not_released(where: Entry, rec: FileRecord | None, in_place: bool) -> Outcome:
    """The outcome of restoring a file the catalog does not call released."""
    state = rec.state if rec else "unmanaged"
    if in_place and _marked(where) and where.lstat().st_size == 0:
        # A reader must never be given an empty stub for the file: refuse rather than call it resident.
        return Outcome(where.rel, "restore", FAILED, f"it is a stub, but the catalog has it as {state}; not "
                       f"restoring it (the stub is left as it is)", tier=rec.tier if rec else None)
    return Outcome(where.rel, "restore", NOOP, f"not released ({state})")


def _marked(where: Entry) -> bool:
    """True if ``where`` carries our released-stub mark (read without following a symlink)."""
    return is_stub(where.fd_path(), follow_symlinks=False)


def open_store_as(config: Config, tier: str, storage_class: str) -> Store:
    """``tier``'s store, writing new objects in ``storage_class`` instead of the tier's own class."""
    from tiering.stores import open_store

    found = config.tier(tier)
    return open_store(found.url, {**found.options, "storage_class": storage_class}, retry=config.retry)


def checksum_at(where: Entry) -> str:
    """The checksum of the file at ``where`` (opened without following a symlink, never blocking)."""
    fd = where.open(os.O_RDONLY | os.O_NONBLOCK)
    try:
        return checksum_of(fd)
    finally:
        os.close(fd)


def _unrestorable(copy: ObjectInfo, rec: FileRecord, etag: str) -> str:
    """Why a restore could not verify ``copy`` as ``rec``'s bytes; '' if it could."""
    where = f"the capacity copy in {rec.tier}"
    if copy.size != rec.size:
        return f"{where} has {copy.size} bytes, the file {rec.size}"
    if copy.meta is None or not copy.meta.checksum:
        return f"{where} carries no checksum metadata (the store did not keep it), so no restore could verify it"
    if copy.meta.checksum != rec.checksum or copy.meta.size != rec.size:
        return f"{where} no longer matches the catalog (checksum {copy.meta.checksum}, expected {rec.checksum})"
    if etag and copy.etag and copy.etag != etag:
        return f"{where} was replaced since it was written (ETag {copy.etag}, written as {etag})"
    return ""


async def _while_busy(io: Callable[..., Awaitable[R]], step: Callable[[], R], wait: float, pause: float,
                      longest: float) -> R:
    """Run ``step`` (through ``io``) until it does not raise ``StubBusyError`` (the file open in another
    process), waiting between tries (``pause`` doubling up to ``longest``); after ``wait`` seconds the
    error is raised."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return await io(step)
        except StubBusyError:
            if (left := deadline - time.monotonic()) <= 0:
                raise
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, longest)


async def _view_settled(where: Entry, now: os.stat_result, lag: float) -> os.stat_result:
    """``where``'s status once it shows bytes, looking for up to ``lag`` seconds (``now`` if it never does)."""
    deadline = time.monotonic() + lag
    while now.st_size == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        now = where.lstat()
    return now


def _open_unchanged(where: Entry, ident: Identity) -> int:
    """``where`` opened for reading, once (no link followed), and still the version ``ident`` names."""
    fd = where.open(os.O_RDONLY | os.O_NONBLOCK)
    try:
        if Identity.of(os.fstat(fd)) != ident:
            raise SourceChangedError(f"{show_path(where.rel)}: changed before it was copied "
                                     f"({ident.changes(Identity.of(os.fstat(fd)))})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _close_then_lstat(fd: int, where: Entry) -> os.stat_result:
    os.close(fd)
    return where.lstat()


def _stub_now(where: Entry, ino: int) -> tuple[os.stat_result, list[str] | None]:
    """``where``'s status, and the names of its xattrs when it still looks like the stub (the inode
    ``ino``, empty); None when it does not look like it. One listing serves both the mark check and
    the copy of the user's xattrs to the restored file (on a networked filesystem each is a round trip)."""
    now = where.lstat()
    if stat.S_ISREG(now.st_mode) and now.st_size == 0 and now.st_ino == ino:
        return now, xattr_names(where.fd_path())
    return now, None


def _create_copy(where: Entry, name: bytes, stub: os.stat_result) -> int:
    """Create ``name`` beside ``where`` for a restored copy (a name already there is refused), open for
    reading and writing; with the stub's permission bits where it can (our own always: the store writes it)."""
    return where.open(os.O_RDWR | os.O_CREAT | os.O_EXCL, stat.S_IMODE(stub.st_mode) | 0o600, name=name)


def _settle_copy(where: Entry, fd: int, rec: FileRecord, stub: os.stat_result | None, names: list[str],
                 sync: bool) -> None:
    """Check the downloaded copy ``fd`` holds ``rec.size`` bytes and give it ``stub``'s attributes (none
    when ``stub`` is None: an in-place restore copies only the bytes; ``names``: the stub's xattrs, as
    listed under the restore lock); ``sync``: then fsync it."""
    st = os.fstat(fd)
    if st.st_size != rec.size:  # belt and braces: the bytes must be on our disk
        raise IntegrityError(f"{show_path(rec.path)}: restored copy has {st.st_size} bytes, expected {rec.size}")
    if stub is None:
        return
    _take_stub_attributes(where, fd, st, stub, names)
    if sync:
        os.fsync(fd)  # the bytes are on disk before the rename publishes them


def _take_stub_attributes(where: Entry, fd: int, st: os.stat_result, stub: os.stat_result,
                          names: list[str]) -> None:
    """Give the restored copy ``fd`` (now ``st``) the stub's user xattrs (``names``: listed under the
    restore lock), owner, mode and times; what it has already is not set again (each call is a round
    trip on a networked filesystem)."""
    copy_user_xattrs(where.fd_path(), fd, names)  # (by name through our directory descriptor: no link followed)
    chowned = os.geteuid() == 0 and (st.st_uid, st.st_gid) != (stub.st_uid, stub.st_gid)
    if chowned:
        os.fchown(fd, stub.st_uid, stub.st_gid)
    if chowned or stat.S_IMODE(st.st_mode) != stat.S_IMODE(stub.st_mode):  # (a chown drops set-id bits)
        os.fchmod(fd, stat.S_IMODE(stub.st_mode))
    # A restore is a use: atime says "now", or the next policy cycle would take the file that was
    # just staged in for the coldest on the tier and release it again. mtime stays the file's own.
    os.utime(fd, ns=(time.time_ns(), stub.st_mtime_ns))


def _same_checksum(got: str, expected: str | None) -> bool:
    """``got`` (a full checksum) is ``expected``, or starts with it where ``expected`` is the short one
    a stub's own mark carries (a guard restoring without the catalog: ``handoff.record_from_stub``)."""
    if not got or not expected:
        return False
    short = len(expected.partition(":")[2]) == STUB_DIGEST
    return got == expected or (short and got.startswith(expected))


def checksum_of(fd: int) -> str:
    """The checksum of the open file ``fd``'s bytes (for an object whose own metadata has none)."""
    return Hasher.of_file(f"/proc/self/fd/{fd}").value


def _size_on_hot_tier(root: HotRoot, rel: bytes) -> int | None:
    """A resident file's size, so a pinned file counts its bytes (None: not there, or not ours to read)."""
    try:
        with root.entry(rel) as where:
            return where.lstat().st_size
    except (OSError, PathError):
        return None
