"""Finish or roll back whatever a crash interrupted.

Each open journal entry is settled by looking at the world, not by trusting
the last step it recorded (a step is journaled *before* it is taken):

- archive: roll back. The copy may be partial, unverified or complete; it is
  deleted (with any unfinished upload), and a record that claimed an older
  verified copy under the same key is marked dirty, since that copy may have
  been overwritten.
- release: the truncate either happened or did not. A zero-length file whose
  record says it had bytes is a stub: finish (released). An untouched file:
  roll back (still archived). Anything else changed: dirty.
- restore: the temp file is removed. If the rename already happened (the
  file has its true size again and its checksum matches), finish (archived);
  if the stub is still there, roll back (still released).

Recovery is idempotent: a crash during recovery is settled by the next one.
It is cheap when there is nothing to do (one indexed query).
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace

from tiering.catalog import JournalEntry
from tiering.core.errors import PathError, StoreError
from tiering.core.states import FileState
from tiering.mover.beneath import Entry
from tiering.mover.identity import Identity
from tiering.mover.ops import Mover
from tiering.mover.outcome import DONE, FAILED, Outcome
from tiering.stores.base import SupportsCleanup
from tiering.stores.checksum import Hasher


def recover(mover: Mover) -> list[Outcome]:
    """Settle every open journal entry; returns one outcome per entry."""
    outcomes = []
    for entry in mover.catalog.open_entries():
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
    store.delete(entry.object_key)
    rec = mover.catalog.get(entry.path)
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
            if tmp := entry.detail.get("tmp"):
                where.unlink(os.fsencode(tmp))
            return _settle_restore(mover, entry, where)
    except FileNotFoundError:
        return _close(mover, entry, "rolled_back", "file is gone from the hot tier")
    except PathError as exc:
        return _close(mover, entry, "rolled_back", f"file cannot be reached safely any more: {exc}")


def _settle_restore(mover: Mover, entry: JournalEntry, where: Entry) -> Outcome:
    rec = mover.catalog.get(entry.path)
    st = where.lstat()
    if rec is None or rec.state != FileState.RELEASED:
        return _close(mover, entry, "rolled_back", "record is no longer released")
    if st.st_size == 0 and st.st_ino == entry.detail.get("stub_ino", rec.ino):
        return _close(mover, entry, "rolled_back", "stub still in place")
    if stat.S_ISREG(st.st_mode) and st.st_size == rec.size and _checksum(where) == rec.checksum:
        record = replace(rec, state=FileState.ARCHIVED, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, ino=st.st_ino,
                         released_at=None)
        return _close(mover, entry, "done", "restored file is in place and verifies", record)
    return _close(mover, entry, "rolled_back", "file changed", replace(rec, state=FileState.DIRTY))


def _checksum(where: Entry) -> str:
    fd = where.open(os.O_RDONLY | os.O_NONBLOCK)
    try:
        return Hasher.of_file(f"/proc/self/fd/{fd}").value
    finally:
        os.close(fd)
