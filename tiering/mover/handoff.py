"""The catalog an access guard's restores are journaled in: the shared server, or a ledger handed over.

With a server catalog (``[catalog] url``) there are many writers, file by
file under claims, on every node: the guard opens the catalog itself and
journals its restores there as a run of its own (``open_guard_catalog``),
so ``tiering status`` on any node sees a restore the moment it is done, and
``recover`` on any node settles a guard's interrupted restore once the
guard's run is dead (``tiering.catalog.claims``). Everything below is about
the embedded SQLite catalog (and a server that cannot be reached when the
guard starts).

The SQLite catalog has one writer at a time (``catalog.lock``): a ``tiering release``
or the daemon may hold it for a long while, and a reader blocked in ``open``
cannot wait for it. So the access guard never writes the catalog. It restores
through a ``GuardLedger``: records are read from the catalog (read-only; on a
node without it, from the stub's own ``user.tiering.stub`` mark), and the
journal and the results go to the guard's own small catalog, the *ledger*
(one per host, in the ``[guard] dir`` folder). The same ``Mover`` code runs
either way: there is one restore.

Whoever next holds the catalog's writer lock applies the ledger
(``apply_handoffs``: every command's session, and the daemon's loop): a file
the guard restored becomes ARCHIVED in the catalog if it is still exactly as
the guard left it, DIRTY if it was written since. Applying is idempotent.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
import logging
from dataclasses import replace
from pathlib import Path

from tiering.catalog import Catalog, FileRecord
from tiering.core.errors import CatalogError, PathError, UserError
from tiering.core.states import FileState
from tiering.mover.beneath import HotRoot
from tiering.mover.outcome import DONE, Outcome
from tiering.mover.stub import STUB_XATTR
from tiering.stores.keys import encode_key

log = logging.getLogger("tiering.guard")


def open_guard_catalog(config, ledger_path: Path, hot_root: HotRoot) -> Catalog | GuardLedger:
    """The catalog a guard's mover journals to (``Mover(config, this)``).

    A server catalog: the catalog itself, opened for writing as a run named
    "guard" (heartbeat, claims). The SQLite catalog: a ``GuardLedger`` at
    ``ledger_path``. A server that cannot be reached now: a ledger too, its
    records read from the stubs' own marks, so readers are still served;
    the next writer of the catalog applies it (``join_guard``).
    """
    if config.catalog_url:
        try:
            return Catalog.open(config.catalog_url, writer=True, purpose="guard")
        except CatalogError as exc:  # (its message shows the URL without its password)
            log.error("%s; restores go to the ledger %s until the guard's worker restarts", exc, ledger_path)
            return GuardLedger(Catalog.open(ledger_path, writer=True, purpose="guard"), None, hot_root)
    return GuardLedger(Catalog.open(ledger_path, writer=True, purpose="guard"), config.catalog_path, hot_root)


def read_catalog(catalog: Catalog | GuardLedger) -> Catalog | None:
    """The catalog to read released files from, beside ``open_guard_catalog``'s (None: none on this node)."""
    return catalog.catalog() if isinstance(catalog, GuardLedger) else catalog


class GuardLedger:
    """The catalog a guard's mover uses: reads from the catalog or the stub, writes to the ledger."""

    def __init__(self, ledger: Catalog, catalog_path: Path | None, hot_root: HotRoot) -> None:
        self.ledger = ledger
        self.catalog_path = catalog_path
        self.hot_root = hot_root
        self._main: Catalog | None = None

    def __getattr__(self, name: str):
        return getattr(self.ledger, name)  # the journal, heat and results: all the ledger's

    def catalog(self) -> Catalog | None:
        """The catalog, read-only (None where there is none: the stubs describe themselves)."""
        if self._main is None and self.catalog_path is not None:
            try:
                self._main = Catalog.open(self.catalog_path)
            except (UserError, CatalogError):
                return None  # no catalog on this node (yet): the stub describes itself
        return self._main

    def get(self, path: bytes) -> FileRecord | None:
        """The file's record: the catalog's when it says released, else what the stub's mark says."""
        main = self.catalog()
        rec = main.get(path) if main is not None else None
        if rec is not None and rec.state == FileState.RELEASED:
            return rec
        return record_from_stub(self.hot_root, path) or rec

    def close(self) -> None:
        if self._main is not None:
            self._main.close()
        self.ledger.close()


def record_from_stub(hot_root: HotRoot, path: bytes) -> FileRecord | None:
    """A RELEASED record built from a stub's mark (``released SIZE TIER ALGO:DIGEST16``), or None.

    The object key is the path's (``encode_key``), as at release; the checksum
    is the mark's 16-digit prefix: the store verifies the bytes against the
    object's full checksum, and the restore checks that against the prefix.
    """
    try:
        with hot_root.entry(path) as where:
            fd = where.open(os.O_RDONLY | os.O_PATH)
            try:
                mark = os.getxattr(f"/proc/self/fd/{fd}", STUB_XATTR)
                st = os.fstat(fd)
            finally:
                os.close(fd)
    except (OSError, PathError):
        return None
    fields = mark.decode(errors="replace").split()
    if len(fields) != 4 or fields[0] != FileState.RELEASED or not fields[1].isdigit() or not stat.S_ISREG(st.st_mode):
        return None
    return FileRecord(path=path, state=FileState.RELEASED, tier=fields[2], object_key=encode_key(path),
                      checksum=fields[3], size=int(fields[1]), mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns,
                      ino=st.st_ino)


def apply_handoffs(catalog: Catalog, hot_root: HotRoot, ledgers: list[Path]) -> list[Outcome]:
    """Bring the guards' restores into ``catalog`` (held for writing); one outcome per record applied."""
    outcomes = []
    for path in ledgers:
        try:
            ledger = Catalog.open(path)
        except (UserError, CatalogError):
            continue  # no ledger yet, or one being created
        try:
            restored = list(ledger.records(FileState.ARCHIVED))
        finally:
            ledger.close()
        for done in restored:
            rec = catalog.get(done.path)
            if rec is None or rec.state != FileState.RELEASED or rec.object_key != done.object_key:
                continue  # applied already, or the catalog moved on (the file was released again later)
            state, why = _now(hot_root, done)
            if state is None:
                continue
            record = replace(rec, state=state, mtime_ns=done.mtime_ns, ctime_ns=done.ctime_ns, ino=done.ino,
                             released_at=None)
            catalog.put(record)
            outcomes.append(Outcome(done.path, "apply-guard-restore", DONE, why, tier=rec.tier))
    return outcomes


def _now(hot_root: HotRoot, done: FileRecord) -> tuple[str | None, str]:
    """What the file restored as ``done`` is now: ARCHIVED if untouched, DIRTY if written, None if a stub."""
    try:
        with hot_root.entry(done.path) as where:
            st = where.lstat()
    except (OSError, PathError):
        return None, ""
    if stat.S_ISREG(st.st_mode) and st.st_size == 0:
        return None, ""  # still (or again) a stub: nothing to hand over
    now = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    same = now == (done.ino, done.mtime_ns, done.ctime_ns, done.size)
    if same:
        return FileState.ARCHIVED, "restored by the access guard"
    return FileState.DIRTY, "restored by the access guard, written since"


def join_guard(mover) -> list[Outcome]:
    """Wire a catalog-owning ``mover`` to this host's guard: apply the guards' restores to its catalog,
    and have every release announce its stub's directory to the guard first (``GuardLink``)."""
    from tiering.mover.guardlink import GuardLink, GuardPaths

    paths = GuardPaths.of(mover.config)
    link = GuardLink(paths, mover.hot)
    mover.before_truncate = link.announce
    if not paths.dir.is_dir():
        return []
    apply_heat(mover.catalog, sorted(paths.dir.glob("*.heat")), mover.config.heat_half_life)
    return apply_handoffs(mover.catalog, mover.hot_root, sorted(paths.dir.glob("*.db")))


def apply_heat(catalog: Catalog, logs: list[Path], half_life: float) -> int:
    """Count the opens in the guards' heat logs as heat (``Catalog.add_heat``), and remove what was taken.

    A log is renamed aside before it is read: the guard's next flush starts a
    new one, so no count is applied twice.
    """
    counted: list[bytes] = []
    for log_path in logs:
        taken = log_path.with_name(f"{log_path.name}.taking-{secrets.token_hex(4)}")
        try:
            os.rename(log_path, taken)
        except FileNotFoundError:
            continue
        try:
            for line in taken.read_bytes().split():
                try:
                    counted.append(bytes.fromhex(line.decode()))
                except ValueError:
                    continue  # a torn line: one count less
        finally:
            taken.unlink(missing_ok=True)
    if counted:
        try:
            catalog.add_heat(counted, time.time(), half_life)
        except CatalogError:
            return 0  # heat only ranks files: a catalog that cannot take it loses the counts, not the run
    return len(counted)
