"""Thawing: restoring a released file whose object sits in an archive class.

An object in OSS Archive/ColdArchive/DeepColdArchive or S3 GLACIER/DEEP_ARCHIVE
cannot be read until its store has made a readable copy (RestoreObject), which
takes minutes to days. A restore of such a file therefore goes in two runs:

1. ``tiering restore`` (or ``run``) finds the object asleep (``head``: not
   readable), asks the store to restore it at a restore tier (``--restore-tier``,
   else the tier's ``restore_tier`` option, else Standard) and journals the
   request as an ``object-restore`` entry (done) left at step ``waiting``; the file's
   outcome is ``PENDING``: "requested, ready in about 5 hours" (the delay of
   that class and restore tier in the cost model, ``[tiers.NAME.cost]``).
   An object whose restore is already under way is not asked for again.
2. A later ``restore`` or ``run`` (which restores every file with a pending
   request, ``pending_paths``) finds the object readable and restores the file
   as ever, verified; the waiting entries of the file then step on to ``restored``.

Nothing here touches the hot tier: a file waiting for its object stays a stub.
``wake`` is a coroutine (its blocking calls run on worker threads); the rest
are blocking calls on the catalog.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from tiering.catalog import Catalog, FileRecord
from tiering.config import Config
from tiering.core.states import FileState
from tiering.mover.outcome import PENDING, Outcome
from tiering.stores.base import ObjectInfo, SupportsRestore, call_async
from tiering.stores.options import ARCHIVE_CLASSES

#: The journal action of a request to restore an object, and the step it stays at until the file is back.
ACTION, WAITING, RESTORED = "object-restore", "waiting", "restored"
#: Restore tiers, fastest (dearest) first; what ``--restore-tier`` takes.
RESTORE_TIERS = ("Expedited", "Standard", "Bulk")


def may_sleep(config: Config, rec: FileRecord) -> bool:
    """Whether ``rec``'s object may be in an archive class (as recorded, else the tier's class of new objects).

    Only such files pay for a ``head`` before their restore; any other found asleep
    is thawed when its download is refused (``NeedsRestoreError``).
    """
    if rec.storage_class:
        return rec.storage_class in ARCHIVE_CLASSES
    tier = config.tiers.get(rec.tier or "")
    return bool(tier and tier.storage_class in ARCHIVE_CLASSES)


async def wake(mover, rec: FileRecord, restore_tier: str | None = None) -> Outcome | None:
    """None when ``rec``'s object can be read now (restore the file); else a ``PENDING`` outcome, after
    asking the store to restore the object unless a restore of it is under way already.

    ``mover``: the ``Mover`` whose store and catalog to use. Store errors are raised.
    """
    store = mover.store(rec.tier)
    if not isinstance(store, SupportsRestore):
        return None  # no archive classes: the download says what is wrong
    info = await call_async(store, "head", rec.object_key)  # (S3: its own HEAD shows the class and restore state)
    if info.readable:
        return None
    return await asyncio.to_thread(_wake, mover, store, rec, info, restore_tier)


def _wake(mover, store, rec: FileRecord, info: ObjectInfo, restore_tier: str | None) -> Outcome:
    catalog: Catalog = mover.catalog
    if rec.storage_class != info.storage_class:  # (learnt: the next restore looks before it downloads)
        catalog.put(replace(rec, storage_class=info.storage_class))
    asked = _requested(catalog, rec)
    if under_way(info) and asked is not None:
        tier = asked.detail.get("restore_tier", "")
        left = ready_in(mover.config, rec.tier, info.storage_class, tier, since=asked.started_at)
        return Outcome(rec.path, "restore", PENDING, f"its object's restore ({info.storage_class}, {tier}) is "
                       f"under way since {_clock(asked.started_at)}; {left}", tier=rec.tier)
    if under_way(info):  # asked for by somebody else (an access guard, the console): waited for, not paid again
        catalog.end(catalog.begin(ACTION, rec.path, WAITING, tier=rec.tier, object_key=rec.object_key,
                                  storage_class=info.storage_class, restore_tier=""))
        return Outcome(rec.path, "restore", PENDING, f"its object ({info.storage_class}) is being restored "
                       "already (requested elsewhere); run restore again once it is readable", tier=rec.tier)
    tier = restore_tier or getattr(store, "restore_tier", None) or "Standard"
    store.restore(rec.object_key, tier=tier)
    catalog.end(catalog.begin(ACTION, rec.path, WAITING, tier=rec.tier, object_key=rec.object_key,
                              storage_class=info.storage_class, restore_tier=tier))
    return Outcome(rec.path, "restore", PENDING, f"requested from {info.storage_class} ({tier}), "
                   f"{ready_in(mover.config, rec.tier, info.storage_class, tier)}", tier=rec.tier)


def woken(catalog: Catalog, rel: bytes) -> int:
    """Close the pending requests of ``rel`` (its file is back, or needs them no more); how many."""
    entries = [e for e in catalog.history(rel) if e.action == ACTION and e.step == WAITING]
    for entry in entries:
        catalog.step(entry.id, RESTORED, restored_at=time.time())
    return len(entries)


def pending_paths(catalog: Catalog) -> list[bytes]:
    """Released files with a pending request to restore their object: what ``run`` tries to finish each
    cycle. The requests of files no longer released (restored by a guard, forgotten) are closed here."""
    paths = []
    for path in sorted({entry.path for entry in catalog.entries_at(ACTION, WAITING)}):
        rec = catalog.get(path)
        if rec is not None and rec.state == FileState.RELEASED:
            paths.append(path)
        else:
            woken(catalog, path)
    return paths


def pending_note(config: Config, catalog: Catalog, rec: FileRecord) -> str:
    """For ``tiering status``: the pending request to restore ``rec``'s object, and when it should be
    ready ('' when there is none)."""
    asked = _requested(catalog, rec)
    if asked is None:
        return ""
    cls, tier = asked.detail.get("storage_class", ""), asked.detail.get("restore_tier", "")
    left = ready_in(config, rec.tier or "", cls, tier, since=asked.started_at) if tier else "ready time unknown"
    return f"object restore requested at {_clock(asked.started_at)} ({cls}, {tier or 'by another'}); {left}"


def under_way(info: ObjectInfo) -> bool:
    """Whether a restore of the (unreadable) object ``info`` is under way, by the store's answer."""
    said = info.extra.get("x-oss-restore") or info.extra.get("x-amz-restore") or ""
    return 'ongoing-request="true"' in said


def ready_in(config: Config, tier: str, storage_class: str, restore_tier: str, since: float | None = None) -> str:
    """"ready in about 5 hours" from the cost model's delay for the class and restore tier (counted from
    ``since``, the request's time, when given); says so when the model has no delay for them."""
    price = config.cost.price(tier, storage_class)
    restores = price.restore if price else {}
    # OSS Archive takes no restore tier: its one priced delay is the one that applies.
    one = restores.get(restore_tier) or (next(iter(restores.values())) if len(restores) == 1 else None)
    if one is None or not one.delay:
        return f"ready time unknown (no delay priced for {storage_class} {restore_tier} in [tiers.{tier}.cost])"
    left = one.delay - (time.time() - since if since is not None else 0.0)
    return f"ready in about {about(left)}" if left > 0 else "should be ready by now"


def about(seconds: float) -> str:
    """A wait for people: "a minute", "25 minutes", "an hour", "5 hours", "2 days"."""
    minutes = round(seconds / 60)
    if minutes <= 1:
        return "a minute"
    if minutes < 55:
        return f"{minutes} minutes"
    hours = round(seconds / 3600)
    if hours < 36:
        return "an hour" if hours == 1 else f"{hours} hours"
    return f"{round(seconds / 86400)} days"


def _requested(catalog: Catalog, rec: FileRecord):
    """The latest pending request for ``rec``'s object, or None."""
    for entry in catalog.history(rec.path):
        if entry.action == ACTION and entry.step == WAITING and entry.object_key == rec.object_key:
            return entry
    return None


def _clock(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


__all__ = ["ACTION", "RESTORE_TIERS", "WAITING", "about", "may_sleep", "pending_note", "pending_paths",
           "ready_in", "under_way", "wake", "woken"]
