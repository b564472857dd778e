"""``tiered://``: an fsspec filesystem over the hot tier that reads released files too.

Dataloaders, pandas and pyarrow read a half-released dataset through it
without a stage-in::

    fs = TieredFileSystem(config="tiering.toml")            # or $TIERING_CONFIG, ./tiering.toml
    pq.read_table("imagenet/meta.parquet", filesystem=fs)
    pd.read_csv("tiered://imagenet/labels.csv", storage_options={"config": "tiering.toml"})

URLs name paths relative to the hot tier's root: ``tiered://imagenet/labels.csv``.
``tiered:///imagenet/labels.csv`` means the same (leading slashes are
ignored), and ``tiered://`` is the root. A path that would leave the hot tier
(``..``, or a symlink pointing outside it) raises ``InvalidKeyError``.

What a read does is decided when the file is opened:

- its bytes are on the hot tier (resident, archived, dirty or unmanaged): the
  local file is read in place;
- it is released (a zero-length stub the catalog says is released): it is
  streamed from its capacity tier in ranged reads of ``block_size`` bytes,
  after checking the object is the archived version, and no byte is returned
  unverified: the first read hashes the whole object against the catalog's
  checksum and remembers a hash per MiB, which every ranged read is checked
  against (``fs_released``);
- released, with ``restore_on_read=True``: the mover restores it first
  (verified, renamed over the stub), then it is read in place. The catalog's
  writer lock is held for the restore only; if another process holds it, the
  file is streamed instead and a warning is logged. Restores within one
  process run one at a time.

``ls``/``info``/``find``/``glob`` are plain ``os`` calls on the hot tier; a
released file reports its true size from the catalog. Regular files carry
``tiering_state`` (the catalog's state; ``resident`` when the catalog does not
know the file; ``unrecorded-stub`` for a stub the catalog does not describe,
which refuses to open: run ``tiering recover``) and, when archived somewhere,
``tiering_tier``.

The filesystem is read-only: tiering never writes through it. Store clients
and the read-only catalog are shared by all threads, opened on first use,
reopened after a fork (dataloader workers), and closed by ``close()`` or when
the instance is collected.
"""

from __future__ import annotations

import errno
import logging
import os
import posixpath
import stat
import threading
import weakref
from datetime import UTC, datetime

from fsspec.spec import AbstractFileSystem

from tiering.catalog import Catalog, CatalogBusyError, FileRecord
from tiering.config import Config, find_config, load_config, open_tier
from tiering.core.errors import IntegrityError, InvalidKeyError, StoreError, UserError
from tiering.access.released import ReleasedFile, check_copy
from tiering.core.states import FileState
from tiering.mover.ops import RESTORE_TMP_PREFIX
from tiering.mover.stub import is_stub
from tiering.stores.base import Store

__all__ = ["TieredFileSystem"]

log = logging.getLogger(__name__)

DEFAULT_BLOCK_SIZE = 4 * 1024 * 1024
UNRECORDED_STUB = "unrecorded-stub"


class TieredFileSystem(AbstractFileSystem):
    """Read-only fsspec filesystem over a tiering configuration's hot tier (protocol ``tiered``)."""

    protocol = "tiered"
    root_marker = ""

    def __init__(self, config: str | os.PathLike[str] | None = None, restore_on_read: bool = False,
                 block_size: int = DEFAULT_BLOCK_SIZE, **storage_options) -> None:
        super().__init__(**storage_options)
        self.config = load_config(find_config(config))
        self.restore_on_read = bool(restore_on_read)
        self.blocksize = int(block_size)
        self.hot = os.fspath(self.config.hot_path)
        if not os.path.isdir(self.hot):
            raise UserError(f"{self.config.path}: the hot tier {self.hot} does not exist or is not a directory")
        self._hot_real = os.path.realpath(self.hot)
        self._handles = _Handles(self.config)
        weakref.finalize(self, self._handles.close)

    def close(self) -> None:
        """Close store clients and the catalog; a later call opens them again."""
        self._handles.close()

    # -- paths -------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path):
        path = super()._strip_protocol(path)
        return [p.lstrip("/") for p in path] if isinstance(path, list) else path.lstrip("/")

    def _relative(self, path) -> str:
        rel = self._strip_protocol(path)
        norm = posixpath.normpath(rel) if rel else ""
        if norm == ".." or norm.startswith("../"):
            raise InvalidKeyError(f"tiered://{rel}: leaves the hot tier {self.hot}; paths are relative to its root")
        return "" if norm == "." else norm

    def _local(self, rel: str) -> str:
        """The hot-tier path of ``rel``, refusing one whose symlinks lead outside the hot tier."""
        local = os.path.join(self.hot, rel) if rel else self.hot
        if not self._inside(local):
            raise InvalidKeyError(f"tiered://{rel}: resolves to {os.path.realpath(local)}, outside the hot tier "
                                  f"{self.hot}")
        return local

    def _inside(self, local: str) -> bool:
        real = os.path.realpath(local)
        return real == self._hot_real or real.startswith(self._hot_real.rstrip("/") + "/")

    # -- listing -----------------------------------------------------------------

    def info(self, path, **kwargs) -> dict:
        rel = self._relative(path)
        local = self._local(rel)
        return self._entry(rel, local, _stat(local, rel))

    def ls(self, path, detail: bool = True, **kwargs):
        rel = self._relative(path)
        local = self._local(rel)
        st = _stat(local, rel)
        entries = list(self._scan(rel, local)) if stat.S_ISDIR(st.st_mode) else [self._entry(rel, local, st)]
        return entries if detail else [e["name"] for e in entries]

    def _scan(self, rel: str, local: str):
        with os.scandir(local) as it:
            children = [e for e in it if not e.name.startswith(RESTORE_TMP_PREFIX)]
        for child in sorted(children, key=lambda e: e.name):
            name = posixpath.join(rel, child.name) if rel else child.name
            try:
                if child.is_symlink() and not self._inside(child.path):
                    st = child.stat(follow_symlinks=False)  # listed, but refused when opened
                    yield {**_basic(name, st), "type": "other", "islink": True}
                    continue
                yield self._entry(name, child.path, child.stat())
            except FileNotFoundError:
                continue  # removed (or a dangling link) while we listed

    def _entry(self, rel: str, local: str, st: os.stat_result) -> dict:
        entry = _basic(rel, st)
        if stat.S_ISDIR(st.st_mode):
            return {**entry, "type": "directory", "size": 0}
        if not stat.S_ISREG(st.st_mode):
            return {**entry, "type": "other"}
        rec = self._record(rel)
        state = rec.state if rec else FileState.RESIDENT
        if st.st_size == 0 and is_stub(local) and not _released(rec):
            state = UNRECORDED_STUB
        elif state == FileState.RELEASED and not (st.st_size == 0 and rec.size):
            state = FileState.DIRTY  # written to since it was released: the local bytes are the file
        entry.update(type="file", tiering_state=state, size=rec.size if state == FileState.RELEASED else st.st_size)
        if rec and rec.tier:
            entry["tiering_tier"] = rec.tier
        return entry

    def modified(self, path) -> datetime:
        return datetime.fromtimestamp(self.info(path)["mtime"], tz=UTC)

    # -- reading -------------------------------------------------------------------

    def _open(self, path, mode: str = "rb", block_size: int | None = None, autocommit: bool = True,
              cache_options: dict | None = None, cache_type: str = "readahead", **kwargs):
        if mode != "rb":
            raise PermissionError(errno.EROFS, f"tiered:// is read-only: cannot open with mode {mode!r} "
                                  "(tiering never writes through it; write to the hot tier itself)", path)
        rel = self._relative(path)
        local = self._local(rel)
        streaming = {"block_size": block_size or self.blocksize, "cache_type": cache_type,
                     "cache_options": cache_options}
        opened, rec = self._open_local(rel, local)
        if opened is not None:
            return opened
        if self.restore_on_read and self._restore(rel):
            opened, rec = self._open_local(rel, local)
            if opened is not None:
                return opened
        store = self._handles.store(rec.tier)
        check_copy(store, rec, f"tiered://{rel}")
        return ReleasedFile(self, rel, store, rec, **streaming)

    def _open_local(self, rel: str, local: str):
        """(the local file, None) when its bytes are on the hot tier, else (None, its released record)."""
        f = open(local, "rb")  # noqa: SIM115 - handed to the caller
        try:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > 0:
                return f, None  # open fd: a release (under a lease) cannot truncate it under us
            rec = self._record(rel)
            if _released(rec):
                f.close()
                if not rec.object_key or not rec.tier:
                    raise IntegrityError(f"tiered://{rel}: released, but the catalog names no capacity copy")
                return None, rec
            if is_stub(local):
                raise IntegrityError(f"tiered://{rel}: a released stub the catalog does not describe; "
                                     "run `tiering recover` (or check the catalog path) before reading it")
            return f, None
        except BaseException:
            f.close()
            raise

    def _restore(self, rel: str) -> bool:
        """Restore a released file through the mover; False when it must be streamed instead."""
        # The mover is heavy; only restore-on-read needs it.
        from tiering.mover.outcome import FAILED, PENDING, SKIPPED
        from tiering.ops.session import mover_session

        with self._handles.restore_lock:
            try:
                with mover_session(self.config, f"tiered:// restore-on-read of {rel}") as (mover, _):
                    outcome = mover.restore(os.fsencode(rel))
            except CatalogBusyError as exc:
                log.warning("tiered://%s: not restoring on read, streaming from its capacity tier instead: %s",
                            rel, exc)
                return False
        if outcome.status in (FAILED, PENDING):  # (pending: its archived object is not readable yet)
            raise StoreError(f"tiered://{rel}: restore on read failed: {outcome.reason}")
        if outcome.status == SKIPPED:
            log.warning("tiered://%s: not restored (%s); reading what is there", rel, outcome.reason)
        return True

    def _record(self, rel: str) -> FileRecord | None:
        catalog = self._handles.catalog()
        return catalog.get(os.fsencode(rel)) if catalog is not None else None

    # -- read-only ---------------------------------------------------------------

    def _refuse(self, *args, **kwargs):
        raise PermissionError(errno.EROFS, "tiered:// is read-only: tiering never writes through it; "
                              "change files on the hot tier itself")

    mkdir = makedirs = rmdir = rm = rm_file = _rm = cp_file = copy = mv = put = put_file = _refuse
    pipe = pipe_file = touch = _refuse


class _Handles:
    """Store clients per tier and the read-only catalog: opened on first use, dropped after a fork."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.restore_lock = threading.Lock()
        self._stores: dict[str, Store] = {}
        self._catalog: Catalog | None = None

    def _forked(self) -> None:
        # A forked child (a dataloader worker) must not share its parent's
        # connections or locks: forget them, unclosed, and open its own.
        if os.getpid() != self._pid:
            self._reset()

    def store(self, tier: str) -> Store:
        self._forked()
        with self._lock:
            if tier not in self._stores:
                self._stores[tier] = open_tier(self.config, tier)
            return self._stores[tier]

    def catalog(self) -> Catalog | None:
        """The catalog, read-only; None while it does not exist (then no file is released)."""
        self._forked()
        with self._lock:
            if self._catalog is None and (self.config.catalog_url or os.path.exists(self.config.catalog_path)):
                self._catalog = Catalog.open(self.config.catalog_target)
            return self._catalog

    def close(self) -> None:
        if os.getpid() != self._pid:
            return
        with self._lock:
            stores, self._stores = list(self._stores.values()), {}
            catalog, self._catalog = self._catalog, None
        for store in stores:
            store.close()
        if catalog is not None:
            catalog.close()


def _stat(local: str, rel: str) -> os.stat_result:
    try:
        return os.stat(local)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such file or directory in the hot tier", f"tiered://{rel}") from None


def _basic(name: str, st: os.stat_result) -> dict:
    return {"name": name, "size": st.st_size, "mtime": st.st_mtime, "mode": st.st_mode, "uid": st.st_uid,
            "gid": st.st_gid, "ino": st.st_ino, "nlink": st.st_nlink}


def _released(rec: FileRecord | None) -> bool:
    return rec is not None and rec.state == FileState.RELEASED and bool(rec.size)
