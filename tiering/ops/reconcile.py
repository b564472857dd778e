"""``tiering reconcile``: where the hot tier, the catalog and the capacity tiers disagree, and safe repairs.

Three views of the same files can drift apart: the hot tier (files and
stubs), the catalog, and each capacity tier's bucket. An operator deletes
objects by hand, a bucket lifecycle rule expires them, a user rewrites a
file the catalog calls archived, a catalog is restored from an old backup.
Users of Robinhood and Lustre HSM report exactly this (orphans, missing
objects, stuck entries) and have no ``rclone check`` for it; this is ours.

Each disagreement is a ``Finding`` of one kind (``KINDS``, the most serious
first). ``missing-object`` for a released file means its only copy is gone:
nothing can repair that, and it is reported first.

Nothing is judged on a partial view: the scan of the hot tier and every
tier's listing must complete, or reconcile stops with that error before it
looks at anything (a listing that fails raises ``ListingError``).

``fix`` repairs only what is safe, and never deletes an object or a file:

- ``changed``, ``written-stub`` and ``missing-object`` of a file whose
  bytes are on the hot tier: archive it again (a verified copy, as
  ``archive`` makes);
- ``vanished``: forget the catalog entry (its object, if any, stays: it is
  reported as an orphan from then on, for a person to delete);
- ``stub-unknown``: adopt the stub as released when its object is there
  and its metadata carries the checksum the stub's mark names, and the size;
- ``orphan``: adopt the object as the file's archived copy when its
  metadata proves it is a copy of the file on the hot tier (same size,
  mtime and whole checksum, read from the file).
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tiering.catalog import Catalog, FileRecord
from tiering.config import Config, open_tier
from tiering.core.display import show_path
from tiering.core.errors import ITEM, StoreError, scope_of
from tiering.core.states import FileState
from tiering.mover.beneath import HotRoot
from tiering.mover.ops import checksum_at
from tiering.mover.outcome import DONE
from tiering.mover.stub import StubMark, read_mark
from tiering.stores.base import ObjectInfo, Store
from tiering.stores.keys import decode_key

#: Every kind of disagreement, most serious first, with what it means.
KINDS: dict[str, str] = {
    "missing-object": "the catalog names an object its tier does not have",
    "object-size": "the object is not the size the catalog archived",
    "object-checksum": "the object's metadata names another checksum than the catalog (--deep)",
    "written-stub": "the catalog calls the file released, but it has bytes on the hot tier",
    "changed": "the catalog calls the file archived, but it is not the version archived",
    "stub-unknown": "a stub on the hot tier that the catalog does not call released",
    "vanished": "a catalog entry for a file that is not on the hot tier",
    "orphan": "an object in a tier that no catalog entry names",
}
_ORDER = {kind: i for i, kind in enumerate(KINDS)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One disagreement: its kind, the file's path under the hot tier, where its object is, and why."""

    kind: str
    path: bytes
    tier: str | None
    key: str | None
    detail: str
    fixed: str = ""  # what ``fix`` did about it ('' when nothing was done)

    def as_json(self) -> dict:
        return {"kind": self.kind, "path": os.fsdecode(self.path), "tier": self.tier, "key": self.key,
                "detail": self.detail, "fixed": self.fixed}


@dataclass
class Report:
    """What reconcile looked at (``checked``) and what disagreed (``findings``, most serious first)."""

    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    @property
    def unresolved(self) -> list[Finding]:
        return [f for f in self.findings if not f.fixed]


@dataclass(frozen=True, slots=True)
class _HotFile:
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    mark: StubMark | None  # set for a stub


def reconcile(config: Config, catalog: Catalog, *, deep: bool = False, fix: bool = False,
              archive: Callable[[bytes], object] | None = None,
              note: Callable[[str], None] | None = None) -> Report:
    """Compare the hot tier, ``catalog`` and every configured tier; with ``fix``, repair what is safe.

    ``archive(rel)`` archives one file again (a ``Mover.archive``; needed with ``fix``), returning its
    ``Outcome``. ``deep``: also read each catalogued object's metadata (one HEAD each) to compare
    checksums. ``note`` is told what is being done (for a progress line).
    """
    say = note or (lambda _: None)
    report = Report()
    say("scanning the hot tier")
    hot = dict(_hot_files(config))
    say("reading the catalog")
    records = {rec.path: rec for rec in catalog.records()}
    stores: dict[str, Store] = {}
    try:
        listings: dict[str, dict[str, ObjectInfo]] = {}
        for name in config.tiers:
            say(f"listing tier {name}")
            stores[name] = open_tier(config, name)
            listings[name] = {info.key: info for info in stores[name].list("")}  # (raises if it cannot finish)
        report.checked = {"files": sum(1 for h in hot.values() if h.mark is None),
                          "stubs": sum(1 for h in hot.values() if h.mark is not None),
                          "entries": len(records), "objects": sum(len(v) for v in listings.values()),
                          "tiers": len(listings)}
        say("comparing")
        findings = list(_judge(hot, records, listings, stores, deep))
        if fix:
            if archive is None:
                raise ValueError("reconcile(fix=True) needs archive")
            root = HotRoot(Path(config.hot_path))
            try:
                findings = [_repair(f, hot, records, stores, catalog, archive, root) for f in findings]
            finally:
                root.close()
    finally:
        for store in stores.values():
            store.close()
    report.findings = sorted(findings, key=lambda f: (_ORDER[f.kind], f.tier or "", f.path, f.key or ""))
    return report


# -- the three views ---------------------------------------------------------------------------------


def _hot_files(config: Config) -> Iterator[tuple[bytes, _HotFile]]:
    """Every regular file under the hot tier (not our own temporary files), with its stub mark if it has one."""
    from tiering.core.inventory import FILE
    from tiering.scan import Scan

    root = HotRoot(Path(config.hot_path))
    try:
        for batch in Scan(config.hot_path):
            cols = batch.to_pydict()
            for path, kind, size, mtime, ctime, ino in zip(cols["path"], cols["type"], cols["size"],
                                                           cols["mtime_ns"], cols["ctime_ns"], cols["ino"]):
                if kind != FILE or path.rpartition(b"/")[2].startswith(b".tiering-"):
                    continue
                mark = None
                if size == 0:  # (only an empty file can be a stub: one xattr read, through the tier's root)
                    with root.entry(path) as where:
                        mark = read_mark(where.fd_path())
                yield path, _HotFile(size, mtime, ctime, ino, mark)
    finally:
        root.close()


def _judge(hot: dict[bytes, _HotFile], records: dict[bytes, FileRecord], listings: dict[str, dict[str, ObjectInfo]],
           stores: dict[str, Store], deep: bool) -> Iterator[Finding]:
    named: set[tuple[str, str]] = set()
    for rel, rec in records.items():
        here = hot.get(rel)
        copy = None
        if rec.tier and rec.object_key and rec.state != FileState.RESIDENT:
            named.add((rec.tier, rec.object_key))
            listing = listings.get(rec.tier)
            if listing is None:
                yield Finding("missing-object", rel, rec.tier, rec.object_key,
                              f"the catalog names tier {rec.tier!r}, which is not configured")
            else:
                copy = listing.get(rec.object_key)
                if copy is None:
                    at_risk = rec.state == FileState.RELEASED and (here is None or here.mark is not None)
                    yield Finding("missing-object", rel, rec.tier, rec.object_key,
                                  "the file's only copy is gone" if at_risk else
                                  "the file's bytes are still on the hot tier")
                elif rec.size is not None and copy.size != rec.size and rec.state != FileState.DIRTY:
                    yield Finding("object-size", rel, rec.tier, rec.object_key,
                                  f"object has {copy.size} bytes, catalog archived {rec.size}")
                elif deep and rec.state != FileState.DIRTY:
                    yield from _deep(rel, rec, stores[rec.tier])
        if here is None:
            yield Finding("vanished", rel, rec.tier, rec.object_key,
                          f"catalog says {rec.state}; no file or stub at this path")
        elif rec.state == FileState.RELEASED and here.mark is None:
            yield Finding("written-stub", rel, rec.tier, rec.object_key,
                          f"has {here.size} bytes and no stub mark" if here.size else "empty, without a stub mark")
        elif rec.state == FileState.ARCHIVED and here.mark is not None:
            yield Finding("stub-unknown", rel, here.mark.tier, rec.object_key, "catalog says archived")
        elif rec.state == FileState.ARCHIVED and _changed(rec, here):
            yield Finding("changed", rel, rec.tier, rec.object_key, _how_changed(rec, here))
    for rel, here in hot.items():
        rec = records.get(rel)
        if here.mark is not None and (rec is None or rec.state == FileState.RESIDENT):
            yield Finding("stub-unknown", rel, here.mark.tier, None,
                          "no catalog entry" if rec is None else "catalog says resident")
    for tier, listing in listings.items():
        for key, info in listing.items():
            if (tier, key) not in named:
                try:
                    rel = decode_key(key)
                except (ValueError, UnicodeError):
                    rel = b""
                if rel in hot and hot[rel].mark is not None and hot[rel].mark.tier == tier:
                    continue  # the copy of a stub the catalog does not know: reported as ``stub-unknown``
                yield Finding("orphan", rel, tier, key, f"{info.size} bytes; no catalog entry names it")


def _deep(rel: bytes, rec: FileRecord, store: Store) -> Iterator[Finding]:
    try:
        info = store.head(rec.object_key)
    except StoreError as exc:
        if scope_of(exc) != ITEM:
            raise
        yield Finding("missing-object", rel, rec.tier, rec.object_key, f"listed but not readable: {exc}")
        return
    if info.checksum != rec.checksum:
        yield Finding("object-checksum", rel, rec.tier, rec.object_key,
                      f"object says {info.checksum or 'no checksum'}, catalog {rec.checksum}")


def _changed(rec: FileRecord, here: _HotFile) -> bool:
    return (here.size, here.mtime_ns, here.ctime_ns, here.ino) != (rec.size, rec.mtime_ns, rec.ctime_ns, rec.ino)


def _how_changed(rec: FileRecord, here: _HotFile) -> str:
    if here.size != rec.size:
        return f"{here.size} bytes now, {rec.size} archived"
    if here.mtime_ns != rec.mtime_ns:
        return "modified since it was archived"
    return "replaced or its metadata changed since it was archived"


# -- repairs --------------------------------------------------------------------------------------


def _repair(f: Finding, hot: dict[bytes, _HotFile], records: dict[bytes, FileRecord], stores: dict[str, Store],
            catalog: Catalog, archive: Callable[[bytes], object], root: HotRoot) -> Finding:
    here, rec = hot.get(f.path), records.get(f.path)
    if f.kind in ("changed", "written-stub", "missing-object", "object-size", "object-checksum"):
        if here is None or here.mark is not None or rec is None or not here.size:
            return f  # no bytes on the hot tier to copy again: nothing safe to do
        catalog.put(replace(rec, state=FileState.DIRTY))  # (an archived or released record would be a no-op)
        out = archive(f.path)
        if out.status == DONE:
            return replace(f, fixed=f"archived again to {out.tier}")
        catalog.put(rec)
        return replace(f, detail=f"{f.detail}; archiving again failed: {out.reason}")
    if f.kind == "vanished":
        if any(e.path == f.path for e in catalog.open_entries()):
            return replace(f, detail=f"{f.detail}; an action on it is still open (run `tiering recover`)")
        catalog.forget(f.path)
        kept = f"; its object stays in {rec.tier}" if rec and rec.tier and rec.state != FileState.RESIDENT else ""
        return replace(f, fixed=f"catalog entry forgotten{kept}")
    if f.kind == "stub-unknown" and here is not None and here.mark is not None:
        return _adopt_stub(f, here, rec, stores, catalog)
    if f.kind == "orphan" and f.path and here is not None and here.mark is None:
        return _adopt_orphan(f, here, rec, stores, catalog, root)
    return f


def _adopt_stub(f: Finding, here: _HotFile, rec: FileRecord | None, stores: dict[str, Store],
                catalog: Catalog) -> Finding:
    from tiering.stores.keys import encode_key

    store = stores.get(here.mark.tier)
    if store is None:
        return replace(f, detail=f"{f.detail}; its mark names tier {here.mark.tier!r}, which is not configured")
    key = rec.object_key if rec and rec.object_key else encode_key(f.path)
    try:
        info = store.head(key)
    except StoreError as exc:
        if scope_of(exc) != ITEM:
            raise
        return replace(f, detail=f"{f.detail}; no object to adopt it with ({exc})")
    if info.size != here.mark.size or not here.mark.matches(info.checksum):
        return replace(f, detail=f"{f.detail}; the object at {key} is not the copy its mark names")
    base = rec or FileRecord(f.path, FileState.RELEASED)
    meta = info.meta
    catalog.put(replace(base, state=FileState.RELEASED, tier=here.mark.tier, object_key=key, checksum=info.checksum,
                        size=info.size, mtime_ns=meta.mtime_ns if meta else here.mtime_ns, ctime_ns=here.ctime_ns,
                        ino=here.ino, released_at=time.time()))
    return replace(f, fixed=f"adopted as released (object {key} in {here.mark.tier})")


def _adopt_orphan(f: Finding, here: _HotFile, rec: FileRecord | None, stores: dict[str, Store], catalog: Catalog,
                  root: HotRoot) -> Finding:
    if rec is not None and rec.state != FileState.RESIDENT:
        return f  # the file has a copy of its own already: this object is a stray
    try:
        info = stores[f.tier].head(f.key)
    except StoreError as exc:
        if scope_of(exc) != ITEM:
            raise
        return f
    meta = info.meta
    if meta is None or not info.checksum or meta.size != here.size or meta.mtime_ns != here.mtime_ns:
        return replace(f, detail=f"{f.detail}; its metadata does not match the file at this path")
    if _checksum_of_file(root, f.path) != info.checksum:
        return replace(f, detail=f"{f.detail}; the file at this path has other bytes")
    base = rec or FileRecord(f.path, FileState.ARCHIVED)
    catalog.put(replace(base, state=FileState.ARCHIVED, tier=f.tier, object_key=f.key, checksum=info.checksum,
                        size=here.size, mtime_ns=here.mtime_ns, ctime_ns=here.ctime_ns, ino=here.ino,
                        archived_at=time.time(), released_at=None))
    return replace(f, fixed=f"adopted as the archived copy of {show_path(f.path)}")


def _checksum_of_file(root: HotRoot, rel: bytes) -> str:
    """The whole checksum of the hot file ``rel``, read through the tier's root (no link followed); '' if it
    is no longer a regular file."""
    with root.entry(rel) as where:
        return checksum_at(where) if stat.S_ISREG(where.lstat().st_mode) else ""


def show(f: Finding) -> str:
    """One line for a finding."""
    where = show_path(f.path) if f.path else "(no path)"
    obj = f" [{f.tier}:{f.key}]" if f.tier and f.key else (f" [{f.tier}]" if f.tier else "")
    fixed = f" -> fixed: {f.fixed}" if f.fixed else ""
    return f"{f.kind:15s} {where}{obj}: {f.detail}{fixed}"
