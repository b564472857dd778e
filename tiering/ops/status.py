"""What ``tiering status`` reports: per file, or for the whole hot tier."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from tiering.catalog import Catalog, FileRecord
from tiering.catalog.backend import writer_holder
from tiering.config import Config, open_tier
from tiering.core.display import show_path
from tiering.core.errors import ITEM, CatalogError, PathError, StoreError, UserError, scope_of
from tiering.core.states import FileState
from tiering.stores.checksum import CHUNK, Hasher


@dataclass(frozen=True)
class FileStatus:
    path: bytes
    state: str  # resident (unmanaged) | archived | released | dirty
    size: int | None
    tier: str | None
    object_key: str | None
    checksum: str | None
    pinned: bool
    verified: str = ""  # with --verify: "ok" or what is wrong with the capacity copy
    note: str = ""  # what is under way for it elsewhere (an access guard's request to restore its object)

    def as_json(self) -> dict:
        return {"path": os.fsdecode(self.path), "state": self.state, "size": self.size, "tier": self.tier,
                "object_key": self.object_key, "checksum": self.checksum, "pinned": self.pinned,
                **({"verified": self.verified} if self.verified else {}), **({"note": self.note} if self.note else {})}


def file_status(config: Config, catalog: Catalog | None, rel: bytes, verify: bool = False) -> FileStatus:
    """One file's state; ``PathError`` when it is neither on the hot tier nor in the catalog."""
    rec = catalog.get(rel) if catalog else None
    if rec is None:
        try:
            size = os.lstat(os.path.join(os.fsencode(config.hot_path), rel)).st_size
        except (FileNotFoundError, NotADirectoryError):
            raise PathError(f"{show_path(rel)}: no such file", path=rel) from None
        return FileStatus(rel, FileState.RESIDENT, size, None, None, None, False, "no capacity copy" if verify else "")
    checked = verify_copy(config, rec) if verify and rec.tier else ""
    note = ""
    if rec.state == FileState.RELEASED:  # a restore of its archived object asked for, by a restore or a guard
        from tiering.mover.thaw import pending_note  # (the mover's modules load only for a released file)

        note = pending_note(config, catalog, rec) or object_restore_note(config, rec, catalog)
    return FileStatus(rel, rec.state, rec.size, rec.tier, rec.object_key, rec.checksum, rec.pinned, checked, note)


def object_restore_note(config: Config, rec: FileRecord, catalog: Catalog | None = None) -> str:
    """"restoring object, requested at ..." when an access guard asked the store to restore the file's
    archived object since it was released ('' otherwise): journaled in a server ``catalog`` itself, or in
    the guards' ledgers."""
    from tiering.mover.guardlink import GuardPaths

    def requested(journal: Catalog) -> float:
        return max((entry.started_at for entry in journal.history(rec.path)
                    if entry.action == "object-restore" and entry.object_key == rec.object_key), default=0.0)

    folder = GuardPaths.of(config).dir
    latest = requested(catalog) if catalog is not None and catalog.backend == "postgresql" else 0.0
    for path in sorted(folder.glob("*.db")) if folder.is_dir() else ():
        try:
            with Catalog.open(path) as ledger:
                latest = max(latest, requested(ledger))
        except (UserError, CatalogError):
            continue
    if latest <= (rec.released_at or 0):
        return ""
    return f"restoring object, requested at {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(latest))}"


def verify_copy(config: Config, rec: FileRecord) -> str:
    """Read the capacity copy back and check it against the catalog: "ok" or the problem.

    A problem with this copy (missing, other bytes) is the answer; a tier that cannot be
    reached or refuses our credentials is raised: it says nothing about the copy.
    """
    store = open_tier(config, rec.tier)
    try:
        hasher = Hasher()
        with store.open(rec.object_key) as stream:
            while data := stream.read(CHUNK):
                hasher.update(data)
    except StoreError as exc:
        if scope_of(exc) != ITEM:
            raise
        return f"FAILED: {exc}"
    finally:
        store.close()
    if hasher.size != rec.size:
        return f"FAILED: capacity copy has {hasher.size} bytes, catalog says {rec.size}"
    if hasher.value != rec.checksum:
        return f"FAILED: capacity copy checksum {hasher.value} != catalog {rec.checksum}"
    return "ok"


def tier_summary(config: Config) -> dict:
    """Hot-tier usage against the policy's watermarks, files and bytes by state, the last cycle,
    whether a daemon (or another writer) holds the catalog."""
    from tiering.plan import Usage  # pyarrow and the policy engine: only the summary needs them, not a file's status

    usage = Usage.of(config.hot_path)
    out = {"hot_tier": str(config.hot_path), "used": usage.used, "total": usage.total,
           "used_fraction": round(usage.fraction, 4), "watermark": _watermark(config), "by_state": {},
           "last_run": None, "writer": None, "daemon": None}
    holder = writer_holder(config.catalog_target)
    if holder:
        out["writer"] = holder
        if holder.get("purpose") == "daemon":  # the lock is held, so its holder is alive
            d = config.daemon
            out["daemon"] = {**holder, "metrics": f"http://{d.metrics_address}:{d.metrics_port}/metrics"
                             if d.metrics_port else None}
    if config.catalog_url or config.catalog_path.exists():
        with Catalog.open(config.catalog_target) as cat:
            out["by_state"] = {s: {"files": n, "bytes": b} for s, (n, b) in cat.counts().items()}
            out["last_run"] = cat.last_run()
            out["in_progress"], out["interrupted"] = _open_actions(cat, holder)
    out["checked_at"] = time.time()
    return out


def _open_actions(cat: Catalog, holder: dict | None) -> tuple[int, int]:
    """(actions in progress, interrupted actions): the catalog's open journal entries, by whether the run
    at each is alive. A server's: each run by its host, pid and heartbeat, as ``recover`` judges them
    (``catalog.claims``). SQLite's: all in progress while a writer holds the lock (its holder settled what
    was left before it began, so every open entry is its own: the kernel drops the lock with a dead holder),
    all interrupted otherwise."""
    if cat.backend == "postgresql":
        from tiering.catalog.claims import open_entries_by_life

        return open_entries_by_life(cat, socket.gethostname())
    count = len(cat.open_entries())
    return (count, 0) if holder else (0, count)


def _watermark(config: Config) -> dict | None:
    """The configured policy's watermarks (None: no policy or no [watermark]; an error: what is wrong)."""
    if config.policy_path is None:
        return None
    from tiering.policy import load_policy

    try:
        wm = load_policy(config.policy_path, config).watermark
    except UserError as exc:
        return {"error": str(exc)}
    return None if wm is None else {"high": wm.high, "low": wm.low, "policy": str(config.policy_path)}
