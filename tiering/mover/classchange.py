"""Transition: a file's capacity copy moved to another storage class, in place on the object store.

The second step of a class-aware policy ("IA -> Archive after 90 days idle"):
the store copies the object onto itself in the new class (S3 CopyObject with a
new ``x-amz-storage-class``, OSS CopyObject with ``x-oss-storage-class``,
``SupportsStorageClass``); no byte goes through the hot tier, and the file's
state (archived or released) does not change. Journaled like every action;
the copy is read back (class, size and checksum metadata as before) before
the catalog records the new class. A crash in between leaves the entry for
``recover`` to roll back; the next plan then sees the old class in the
catalog, and the transition finds the object in its class already and only
records it.

An object in an archive class cannot be copied until it is restored: that
file's transition fails with the reason (restore it first, or leave it).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from tiering.core.display import show_path
from tiering.core.errors import IntegrityError
from tiering.core.states import FileState
from tiering.mover.outcome import DONE, FAILED, NOOP, SKIPPED, Outcome
from tiering.stores.base import SupportsStorageClass, call_async

#: The journal action (and the mover task's action) of a class change.
ACTION = "transition"


async def transition(mover, rel: bytes, storage_class: str) -> Outcome:
    """Move ``rel``'s capacity copy to ``storage_class`` in place; ``mover``: the ``Mover`` to act with.

    noop when the catalog has it there already; skipped when the file has no capacity
    copy to move (resident, or dirty: its copy is stale) or its tier has no storage classes.
    """
    rec = mover.catalog.get(rel)
    if rec is None or rec.state not in (FileState.ARCHIVED, FileState.RELEASED) or not rec.object_key:
        state = rec.state if rec else "unmanaged"
        return Outcome(rel, ACTION, SKIPPED, f"no current capacity copy to move ({state})")
    was = rec.storage_class or mover.config.tier(rec.tier).storage_class or "(the bucket's default)"
    if rec.storage_class == storage_class:
        return Outcome(rel, ACTION, NOOP, f"already in {storage_class}", tier=rec.tier)
    store = mover.store(rec.tier)
    if not isinstance(store, SupportsStorageClass):
        return Outcome(rel, ACTION, SKIPPED, f"tier {rec.tier} has no storage classes", tier=rec.tier)
    before = await call_async(store, "head", rec.object_key)
    if before.size != rec.size or before.checksum != rec.checksum:
        return Outcome(rel, ACTION, FAILED, f"the object in {rec.tier} is not the archived version (size "
                       f"{before.size}, checksum {before.checksum or 'missing'}); left as it is", tier=rec.tier)
    if before.storage_class and before.storage_class.lower() == storage_class.lower():
        await mover.catalog.put_async(replace(rec, storage_class=before.storage_class))
        return Outcome(rel, ACTION, NOOP, f"already in {before.storage_class} (recorded now)", tier=rec.tier)
    if not before.readable:
        return Outcome(rel, ACTION, FAILED, f"its object is in {before.storage_class}: it must be restored "
                       "before its class can change", tier=rec.tier)
    entry = await mover.catalog.begin_async(ACTION, rel, "copying", tier=rec.tier, object_key=rec.object_key,
                                            storage_class=storage_class, was=was)
    try:
        await asyncio.to_thread(store.set_storage_class, rec.object_key, storage_class)
        after = await call_async(store, "head", rec.object_key)
        if after.size != rec.size or after.checksum != rec.checksum:
            raise IntegrityError(f"{show_path(rel)}: the object's copy in {storage_class} does not verify "
                                 f"(size {after.size}, checksum {after.checksum or 'missing'})")
    except BaseException as exc:
        await mover.catalog.end_async(entry, "failed", error=str(exc)[:500])
        raise
    shown = after.storage_class or storage_class  # (a server may not echo the class: ours was accepted)
    await mover.catalog.end_async(entry, record=replace(rec, storage_class=shown), transitioned_at=time.time())
    return Outcome(rel, ACTION, DONE, f"{was} -> {shown} in place in {rec.tier}", tier=rec.tier)


__all__ = ["ACTION", "DONE", "FAILED", "transition"]
