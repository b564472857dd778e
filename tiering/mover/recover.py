"""Finish or roll back whatever a crash interrupted.

Each open journal entry is settled by looking at the world, not by trusting
the last step it recorded (a step is journaled *before* it is taken):

- archive: roll back. The copy may be partial, unverified or complete; it is
  deleted (with any unfinished upload), and a record that claimed an older
  verified copy under the same key is marked dirty, since that copy may have
  been overwritten. Never when the file's record is released under that key
  (another writer released it while this archive was open): that object is
  the file's only copy; it is kept, and checked against the record.
- release: the truncate either happened or did not. A zero-length file whose
  record says it had bytes is a stub: finish (released). An untouched file:
  roll back (still archived). Anything else changed: dirty.
- restore: the temp file is removed. If the rename already happened (the
  file has its true size again and its checksum matches), finish (archived);
  if the stub is still there, roll back (still released).
- restore in place, caught while "filling" the stub's own inode: if the
  inode already holds exactly the archived bytes (size and checksum), finish
  (its stub mark goes); else if the verified temp file is still there, fill
  the inode from it again and finish, once the inode verifies; otherwise
  empty the inode again (it keeps, or gets back, its stub mark): still
  released. A partial fill is never left looking like a restored file.
- a restore's lock (``restorelock``) left by a dead holder of this host is
  removed once its entry is settled.

Recovery is idempotent: a crash during recovery is settled by the next one.
It is cheap when there is nothing to do (one indexed query). With many writers
on a server catalog it settles only the entries of dead runs, each after taking
over its claim (``Catalog.orphans``), so it may run on any node at any time.
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace

from tiering.catalog import FileRecord, JournalEntry
from tiering.core.errors import NotFoundError, PathError, StoreError
from tiering.core.states import FileState
from tiering.mover import restorelock
from tiering.mover.beneath import Entry
from tiering.mover.identity import Identity
from tiering.mover.ops import Mover, checksum_at, checksum_of
from tiering.mover.outcome import DONE, FAILED, Outcome
from tiering.mover.stub import empty_stub, fill_from, stub_attributes, unmark
from tiering.stores.base import SupportsCleanup


def recover(mover: Mover) -> list[Outcome]:
    """Settle every open journal entry of a dead run (on a one-writer catalog: every open entry; with many
    writers, ``Catalog.orphans``: never a live run's, on this host or another); one outcome per entry."""
    outcomes = []
    for entry in mover.catalog.orphans():
        handler = {"archive": _archive, "release": _release, "restore": _restore}.get(entry.action)
        try:
            outcomes.append(handler(mover, entry) if handler else _close(mover, entry, "rolled_back", "unknown action"))
        except (StoreError, OSError) as exc:  # leave it open; the next recovery tries again
            outcomes.append(Outcome(entry.path, f"recover-{entry.action}", FAILED, str(exc)))
    return outcomes


def _close(mover: Mover, entry: JournalEntry, status: str, why: str, record=None) -> Outcome:
    mover.catalog.end(entry.id, status, record=record, recovered=why)
    return Outcome(entry.path, f"recover-{entry.action}", DONE, f"{status}: {why}", tier=entry.tier)


def _archive(mover: Mover, entry: JournalEntry) -> Outcome:
    store = mover.store(entry.tier)
    if isinstance(store, SupportsCleanup):
        store.cleanup_incomplete(entry.object_key)
    rec = mover.catalog.get(entry.path)
    if rec and rec.state == FileState.RELEASED and (rec.tier, rec.object_key) == (entry.tier, entry.object_key):
        # The object at this key is a released file's only copy (another run released the file while this
        # archive was open): never deleted here. Whether it is still the released bytes is checked.
        return _keep_released_copy(mover, entry, store, rec)
    store.delete(entry.object_key)
    ours = rec and rec.state == FileState.ARCHIVED and rec.object_key == entry.object_key
    record = replace(rec, state=FileState.DIRTY) if ours else None
    return _close(mover, entry, "rolled_back", "unverified copy removed", record)


def _release(mover: Mover, entry: JournalEntry) -> Outcome:
    rec = mover.catalog.get(entry.path)
    try:
        with mover.hot_root.entry(entry.path) as where:
            st = where.lstat()
    except FileNotFoundError:
        return _close(mover, entry, "rolled_back", "file is gone from the hot tier")
    except PathError as exc:
        return _close(mover, entry, "rolled_back", f"file cannot be reached safely any more: {exc}")
    if rec is None:
        return _close(mover, entry, "rolled_back", "no catalog record")
    if Identity.of(st) == Identity.of_record(rec):
        return _close(mover, entry, "rolled_back", "file was not truncated")
    if stat.S_ISREG(st.st_mode) and st.st_size == 0 and st.st_ino == rec.ino and rec.size:
        return _close(mover, entry, "done", "file is a stub", replace(rec, state=FileState.RELEASED))
    return _close(mover, entry, "rolled_back", "file changed", replace(rec, state=FileState.DIRTY))


def _restore(mover: Mover, entry: JournalEntry) -> Outcome:
    try:
        with mover.hot_root.entry(entry.path) as where:
            if entry.detail.get("in_place") and entry.step == "filling":
                status, why, record = _settle_fill(mover, entry, where)
            else:
                if tmp := entry.detail.get("tmp"):
                    where.unlink(os.fsencode(tmp))
                status, why, record = _settle_restore(mover, entry, where)
            # Settled: the crashed restorer's lock goes first, so none outlives its entry.
            restorelock.clear_dead(where)
            return _close(mover, entry, status, why, record)
    except FileNotFoundError:
        return _close(mover, entry, "rolled_back", "file is gone from the hot tier")
    except PathError as exc:
        return _close(mover, entry, "rolled_back", f"file cannot be reached safely any more: {exc}")


def _settle_restore(mover: Mover, entry: JournalEntry, where: Entry) -> tuple[str, str, FileRecord | None]:
    rec = mover.catalog.get(entry.path)
    st = where.lstat()
    if rec is None or rec.state != FileState.RELEASED:
        return "rolled_back", "record is no longer released", None
    if st.st_size == 0 and st.st_ino == entry.detail.get("stub_ino", rec.ino):
        return "rolled_back", "stub still in place", None
    if stat.S_ISREG(st.st_mode) and st.st_size == rec.size and checksum_at(where) == rec.checksum:
        return "done", "restored file is in place and verifies", _archived(rec, st)
    return "rolled_back", "file changed", replace(rec, state=FileState.DIRTY)


def _settle_fill(mover: Mover, entry: JournalEntry, where: Entry) -> tuple[str, str, FileRecord | None]:
    """An in-place restore caught while filling the stub's inode: finish it, or empty the inode again."""
    rec = mover.catalog.get(entry.path)
    tmp = os.fsencode(entry.detail["tmp"])
    st = where.lstat()
    if (rec is None or rec.state != FileState.RELEASED or not stat.S_ISREG(st.st_mode)
            or st.st_ino != entry.detail.get("stub_ino")):
        where.unlink(tmp)
        return _settle_restore(mover, entry, where)  # not our stub's inode any more: as any restore
    atime_ns = entry.detail.get("stub_atime_ns", st.st_atime_ns)
    mtime_ns = entry.detail.get("stub_mtime_ns", rec.mtime_ns or st.st_mtime_ns)
    fd = where.open(os.O_RDWR | os.O_NONBLOCK)
    try:
        if st.st_size == rec.size and checksum_of(fd) == rec.checksum:
            unmark(fd, mtime_ns)
            status, why = "done", "the stub's inode holds the restored bytes"
        elif _verifies(where, tmp, rec):
            os.ftruncate(fd, 0)  # (it keeps its stub mark until every byte is back)
            src = where.open(os.O_RDONLY, name=tmp)
            try:
                fill_from(fd, src, rec.size, atime_ns, mtime_ns)
            finally:
                os.close(src)
            if checksum_of(fd) == rec.checksum:
                status, why = "done", "filled the stub's inode from the verified temp file"
            else:
                status, why = "rolled_back", "the fill from the temp file did not verify; the stub was emptied again"
        else:
            status, why = "rolled_back", "partly filled stub emptied again (no verified copy to finish from)"
        if status != "done":
            empty_stub(fd, atime_ns, mtime_ns, stub_attributes(rec.size, rec.checksum, rec.tier))
    finally:
        os.close(fd)
    where.unlink(tmp)
    where.fsync_dir()
    return status, why, _archived(rec, where.lstat()) if status == "done" else None


def _archived(rec: FileRecord, st: os.stat_result) -> FileRecord:
    return replace(rec, state=FileState.ARCHIVED, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, ino=st.st_ino,
                   released_at=None)


def _verifies(where: Entry, tmp: bytes, rec: FileRecord) -> bool:
    """True if the temp file ``tmp`` is there and holds exactly the archived bytes."""
    try:
        fd = where.open(os.O_RDONLY | os.O_NONBLOCK, name=tmp)
    except FileNotFoundError:
        return False
    try:
        st = os.fstat(fd)
        return stat.S_ISREG(st.st_mode) and st.st_size == rec.size and checksum_of(fd) == rec.checksum
    finally:
        os.close(fd)


def _keep_released_copy(mover: Mover, entry: JournalEntry, store, rec: FileRecord) -> Outcome:
    """Close an interrupted archive whose key holds a released file's only copy, keeping the object; a
    copy that no longer matches the record (the interrupted archive wrote over it) fails loudly."""
    try:
        copy = store.head(entry.object_key)
    except NotFoundError:
        copy = None
    meta = copy.meta if copy else None
    if copy is None or copy.size != rec.size or (meta is not None and meta.checksum and meta.checksum != rec.checksum):
        mover.catalog.end(entry.id, "failed", recovered="the released file's only copy no longer matches its record")
        found = "is gone" if copy is None else f"has {copy.size} bytes, checksum {meta.checksum if meta else '?'}"
        return Outcome(entry.path, "recover-archive", FAILED,
                       f"the capacity copy {entry.tier}:{entry.object_key} of this released file {found}, not "
                       f"the {rec.size} bytes {rec.checksum} released: an interrupted archive wrote over it")
    return _close(mover, entry, "rolled_back", "kept the object: it is the released file's only copy")
