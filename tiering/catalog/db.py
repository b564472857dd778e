"""``Catalog``: typed access to the SQLite catalog (see ``tiering.catalog``)."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

from tiering.catalog.commit import GroupCommitter
from tiering.catalog.lock import WriterLock
from tiering.catalog.schema import MIGRATIONS, SCHEMA_VERSION
from tiering.core.errors import CatalogError, UserError


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One managed file, as the catalog knows it."""

    path: bytes
    state: str
    tier: str | None = None
    object_key: str | None = None
    storage_class: str | None = None
    checksum: str | None = None
    size: int | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None
    ino: int | None = None
    archived_at: float | None = None
    released_at: float | None = None
    heat: float = 0.0
    heat_at: float | None = None
    pinned: bool = False
    updated_at: float = 0.0


_FILE_COLUMNS = [f.name for f in fields(FileRecord)]
_PINNED, _UPDATED_AT = _FILE_COLUMNS.index("pinned"), _FILE_COLUMNS.index("updated_at")
_INO = _FILE_COLUMNS.index("ino")
#: Heat and pin have writers of their own (add_heat, set_pinned): a state change
#: computed from an older read of the record must not roll them back.
_KEPT_ON_UPDATE = ("path", "heat", "heat_at", "pinned")
#: A resident record's size follows the file on the hot tier; any other state's is the archived version's.
_SIZE = "size = CASE WHEN files.state = 'resident' THEN coalesce(excluded.size, files.size) ELSE files.size END"
_UPSERT = (f"INSERT INTO files ({', '.join(_FILE_COLUMNS)}) VALUES ({', '.join('?' for _ in _FILE_COLUMNS)}) "
           "ON CONFLICT (path) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in _FILE_COLUMNS if c not in _KEPT_ON_UPDATE))


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One journaled mover action and the last step it reached."""

    id: int
    run_id: str
    action: str
    path: bytes
    tier: str | None
    object_key: str | None
    step: str
    status: str
    detail: dict
    started_at: float
    ended_at: float | None


class Catalog:
    """The catalog database. Open with ``Catalog.open(path, writer=...)``; use as a context manager."""

    def __init__(self, path: Path, reader: sqlite3.Connection, writer: sqlite3.Connection | None,
                 lock: WriterLock | None) -> None:
        self.path = path
        self._conn = reader  # reads only; serialised by _read_lock
        self._read_lock = threading.Lock()
        self._writer_conn = writer
        self._committer = GroupCommitter(writer) if writer is not None else None
        self._lock = lock
        self.run_id = uuid.uuid4().hex[:12]

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, writer: bool = False, purpose: str = "") -> Catalog:
        """Open (and, for a writer, create or migrate) the catalog at ``path``.

        A writer takes the writer lock first: a second writer gets
        ``CatalogBusyError`` naming the holder. Readers never block writers.
        """
        path = Path(path)
        lock = None
        if writer:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = WriterLock(path.with_name(path.name + ".lock"), purpose)
            lock.acquire()
        elif not path.exists():
            raise UserError(f"catalog {path} does not exist yet (run a scan or an archive first)")
        try:
            write_conn = _connect(path, writer=True) if writer else None
            if write_conn is not None:
                _migrate(write_conn, path)
            read_conn = _connect(path, writer=False)
            _check_version(read_conn, path)
            if not writer and read_conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                read_conn.close()  # a writer has just created the file and not yet its tables
                raise UserError(f"catalog {path} is still being created; try again in a moment")
        except BaseException:
            if lock:
                lock.release()
            raise
        return cls(path, read_conn, write_conn, lock)

    def close(self) -> None:
        if self._committer:
            self._committer.close()
            self._writer_conn.close()
        self._conn.close()
        if self._lock:
            self._lock.release()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self._read("PRAGMA user_version")[0][0]

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._read_lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                raise CatalogError(f"catalog {self.path} cannot be read: {exc}") from exc

    def _write(self, work):
        """Run ``work(conn)`` in a durable transaction (group-committed with other threads').

        A write SQLite refuses (disk full, an unwritable file) is a ``CatalogError``: the run cannot go on.
        """
        if self._committer is None:
            raise UserError(f"catalog {self.path} was opened read-only")
        try:
            return self._committer.submit(work)
        except sqlite3.OperationalError as exc:  # (not a constraint a bad record broke: that is a bug)
            raise self._unwritable(exc) from exc

    async def _write_async(self, work):
        if self._committer is None:
            raise UserError(f"catalog {self.path} was opened read-only")
        try:
            return await self._committer.submit_async(work)
        except sqlite3.OperationalError as exc:  # (not a constraint a bad record broke: that is a bug)
            raise self._unwritable(exc) from exc

    def _unwritable(self, exc: sqlite3.OperationalError) -> CatalogError:
        return CatalogError(f"catalog {self.path} cannot be written: {exc}")

    # -- files -------------------------------------------------------------------

    def get(self, path: bytes) -> FileRecord | None:
        rows = self._read(f"SELECT {', '.join(_FILE_COLUMNS)} FROM files WHERE path = ?", (path,))
        return _record(rows[0]) if rows else None

    def put(self, record: FileRecord) -> None:
        """Insert or replace one file's record (``updated_at`` is set now)."""
        self._write(lambda conn: _upsert(conn, record))

    def forget(self, path: bytes) -> None:
        self._write(lambda conn: conn.execute("DELETE FROM files WHERE path = ?", (path,)))

    def records(self, state: str | None = None) -> Iterator[FileRecord]:
        """Every record (optionally of one state), streamed in path order."""
        where, args = ("AND state = ?", (state,)) if state else ("", ())
        after = b""
        while True:  # keyset pages: no cursor is held open between yields
            rows = self._read(f"SELECT {', '.join(_FILE_COLUMNS)} FROM files WHERE path > ? {where} "
                              "ORDER BY path LIMIT 1000", (after, *args))
            if not rows:
                return
            yield from (_record(r) for r in rows)
            after = rows[-1][0]

    def released_since(self, since: float) -> list[tuple[bytes, float]]:
        """(path, released_at) of the files released after ``since`` (Unix time), oldest first.

        For the access guard on a node that does not own the catalog: it follows new stubs this way.
        """
        return [(bytes(p), t) for p, t in self._read(
            "SELECT path, released_at FROM files WHERE state = 'released' AND released_at > ? ORDER BY released_at",
            (since,))]

    def counts(self) -> dict[str, tuple[int, int]]:
        """Files and bytes by state."""
        rows = self._read("SELECT state, count(*), coalesce(sum(size), 0) FROM files GROUP BY state")
        return {state: (n, b) for state, n, b in rows}

    def set_pinned(self, paths: Iterable[bytes], pinned: bool, sizes: Mapping[bytes, int] | None = None) -> None:
        """Set or clear the pin of ``paths``; a path new to the catalog becomes a resident record.

        ``sizes`` (the files' sizes on the hot tier) keep a resident record's size true, so a pinned
        file counts its bytes in ``counts``; an archived or released record keeps its own size.
        """
        now, sizes = time.time(), sizes or {}
        rows = [(p, int(pinned), sizes.get(p), now) for p in paths]
        self._write(lambda conn: conn.executemany(
            "INSERT INTO files (path, state, pinned, size, updated_at) VALUES (?, 'resident', ?, ?, ?) "
            f"ON CONFLICT (path) DO UPDATE SET pinned = excluded.pinned, updated_at = excluded.updated_at, {_SIZE}",
            rows))

    def add_heat(self, paths: Iterable[bytes], now: float, half_life: float,
                 sizes: Mapping[bytes, int] | None = None) -> None:
        """Count one access for each path: decay the stored heat to ``now``, add 1 (``sizes``: as in
        ``set_pinned``)."""
        sizes = sizes or {}
        rows = [(p, sizes.get(p), now, now, now, now, half_life, now, now) for p in paths]
        self._write(lambda conn: conn.executemany(
            "INSERT INTO files (path, state, size, heat, heat_at, updated_at) VALUES (?, 'resident', ?, 1, ?, ?) "
            "ON CONFLICT (path) DO UPDATE SET "
            f"heat = heat * pow(0.5, (? - coalesce(heat_at, ?)) / ?) + 1, heat_at = ?, updated_at = ?, {_SIZE}",
            rows))

    def state_table(self, now: float, half_life: float) -> pa.Table:
        """What the policy engine joins onto the inventory: state, tier, heat decayed to ``now``,
        pin, and the identity (size, mtime, inode) of the archived version."""
        import pyarrow as pa  # only planning needs Arrow; movers start faster without it
        import pyarrow.compute as pc

        rows = self._read("SELECT path, state, tier, heat, coalesce(heat_at, ?), pinned, size, mtime_ns, ino "
                          "FROM files", (now,))
        cols = list(zip(*rows)) or [()] * 9
        age = pc.subtract(pa.scalar(now), pa.array(cols[4], pa.float64()))
        decay = pc.power(0.5, pc.divide(age, half_life))
        return pa.table({
            "path": pa.array(cols[0], pa.binary()),
            "state": pa.array(cols[1], pa.string()),
            "tier": pa.array(cols[2], pa.string()),
            "heat": pc.multiply(pa.array(cols[3], pa.float64()), decay),
            "pinned": pa.array([bool(p) for p in cols[5]], pa.bool_()),
            "size": pa.array(cols[6], pa.int64()),
            "mtime_ns": pa.array(cols[7], pa.int64()),
            "ino": pa.array(cols[8], pa.int64()),  # as stored: compare with an inventory's uint64 cast unsafely
        })

    # -- journal -----------------------------------------------------------------

    def begin(self, action: str, path: bytes, step: str, *, tier: str | None = None,
              object_key: str | None = None, **detail) -> int:
        """Journal the start of an action, durably, before anything is touched."""
        return self._write(self._begin_work(action, path, step, tier, object_key, detail))

    async def begin_async(self, action: str, path: bytes, step: str, *, tier: str | None = None,
                          object_key: str | None = None, **detail) -> int:
        """``begin`` from an event loop."""
        return await self._write_async(self._begin_work(action, path, step, tier, object_key, detail))

    def _begin_work(self, action: str, path: bytes, step: str, tier: str | None, object_key: str | None,
                    detail: dict):
        args = (self.run_id, action, path, tier, object_key, step, json.dumps(detail), time.time())
        return lambda conn: conn.execute(
            "INSERT INTO journal (run_id, action, path, tier, object_key, step, status, detail, started_at) "
            "VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?)", args).lastrowid

    def step(self, entry_id: int, step: str, **detail) -> None:
        """Journal that an open action reached ``step`` (``detail`` is merged in)."""
        self._write(lambda conn: _merge(conn, entry_id, step, None, detail))

    def end(self, entry_id: int, status: str = "done", record: FileRecord | None = None, **detail) -> None:
        """Close an action; with ``record``, the file's new state commits in the same transaction."""
        self._write(_end_work(entry_id, status, record, detail))

    async def end_async(self, entry_id: int, status: str = "done", record: FileRecord | None = None,
                        **detail) -> None:
        """``end`` from an event loop."""
        await self._write_async(_end_work(entry_id, status, record, detail))

    async def end_then_begin_async(self, entry_id: int, record: FileRecord, detail: dict, action: str, step: str, *,
                                   tier: str | None = None, object_key: str | None = None, **begin_detail) -> int:
        """Close one action and journal the next on the same file, in one transaction (one commit to
        wait for instead of two); returns the new entry's id."""
        end = _end_work(entry_id, "done", record, detail)
        begin = self._begin_work(action, record.path, step, tier, object_key, begin_detail)

        def work(conn: sqlite3.Connection) -> int:
            end(conn)
            return begin(conn)

        return await self._write_async(work)

    async def put_async(self, record: FileRecord) -> None:
        """``put`` from an event loop."""
        await self._write_async(lambda conn: _upsert(conn, record))

    def open_entries(self) -> list[JournalEntry]:
        """Actions a crash interrupted (status still 'open'), oldest first."""
        rows = self._read(
            "SELECT id, run_id, action, path, tier, object_key, step, status, detail, started_at, ended_at "
            "FROM journal WHERE status = 'open' ORDER BY id")
        return [JournalEntry(*r[:8], json.loads(r[8]), r[9], r[10]) for r in rows]

    def history(self, path: bytes, limit: int = 20) -> list[JournalEntry]:
        rows = self._read(
            "SELECT id, run_id, action, path, tier, object_key, step, status, detail, started_at, ended_at "
            "FROM journal WHERE path = ? ORDER BY id DESC LIMIT ?", (path, limit))
        return [JournalEntry(*r[:8], json.loads(r[8]), r[9], r[10]) for r in rows]

    # -- runs --------------------------------------------------------------------

    def start_run(self, command: str) -> str:
        """Record the start of a run and return its id; journal entries that follow carry it.

        Each call starts a new run (a daemon records one per cycle), so the id is fresh each time.
        """
        self.run_id = uuid.uuid4().hex[:12]
        args = (self.run_id, command, os.getpid(), socket.gethostname(), time.time())
        self._write(lambda conn: conn.execute(
            "INSERT INTO runs (id, command, pid, host, started_at) VALUES (?, ?, ?, ?, ?)", args))
        return self.run_id

    def finish_run(self, summary: dict) -> None:
        args = (time.time(), json.dumps(summary), self.run_id)
        self._write(lambda conn: conn.execute("UPDATE runs SET ended_at = ?, summary = ? WHERE id = ?", args))

    def last_run(self) -> dict | None:
        rows = self._read(
            "SELECT id, command, pid, host, started_at, ended_at, summary FROM runs ORDER BY started_at DESC LIMIT 1")
        if not rows:
            return None
        row = rows[0]
        keys = ("id", "command", "pid", "host", "started_at", "ended_at", "summary")
        return {**dict(zip(keys, row)), "summary": json.loads(row[6]) if row[6] else None}


def _upsert(conn: sqlite3.Connection, record: FileRecord) -> None:
    # Plain attribute reads: dataclasses.asdict deep-copies, and this runs for every journal step.
    values = [getattr(record, c) for c in _FILE_COLUMNS]
    values[_PINNED], values[_UPDATED_AT] = int(record.pinned), time.time()
    if record.ino is not None and record.ino >= 1 << 63:
        # SQLite INTEGER is signed 64-bit and FUSE filesystems (SeaweedFS) hand out the whole unsigned
        # range: stored two's complement, read back unsigned by _record
        values[_INO] = record.ino - (1 << 64)
    conn.execute(_UPSERT, values)


def _end_work(entry_id: int, status: str, record: FileRecord | None, detail: dict):
    def work(conn: sqlite3.Connection) -> None:
        _merge(conn, entry_id, None, status, detail)
        if record is not None:
            _upsert(conn, record)

    return work


def _merge(conn: sqlite3.Connection, entry_id: int, step: str | None, status: str | None, detail: dict) -> None:
    merged = None
    if detail:
        row = conn.execute("SELECT detail FROM journal WHERE id = ?", (entry_id,)).fetchone()
        merged = {**json.loads(row[0]), **detail}
    conn.execute(
        "UPDATE journal SET step = coalesce(?, step), status = coalesce(?, status), "
        "detail = coalesce(?, detail), ended_at = CASE WHEN ? IS NULL THEN ended_at ELSE ? END WHERE id = ?",
        (step, status, json.dumps(merged) if merged is not None else None, status, time.time(), entry_id))


def _record(row: tuple) -> FileRecord:
    values = dict(zip(_FILE_COLUMNS, row))
    values["pinned"] = bool(values["pinned"])
    if values["ino"] is not None and values["ino"] < 0:
        values["ino"] += 1 << 64
    return FileRecord(**values)


def _connect(path: Path, writer: bool) -> sqlite3.Connection:
    uri = f"file:{path}?mode={'rwc' if writer else 'ro'}"
    try:
        # The writer runs in autocommit mode: GroupCommitter issues BEGIN/COMMIT itself.
        conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False,
                               isolation_level=None if writer else "")
        if writer:
            conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit that returned is on disk; the mover releases files on the strength of it.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 30000")
    except sqlite3.DatabaseError as exc:
        raise UserError(f"catalog {path} cannot be opened: {exc}") from exc
    return conn


def _check_version(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise UserError(f"catalog {path} has schema version {version}, newer than this tiering ({SCHEMA_VERSION}); upgrade tiering")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    _check_version(conn, path)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for target in range(version + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[target - 1]
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> Iterator[str]:
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line.split("--", 1)[0] + ("\n" if "--" in line else "")
        if sqlite3.complete_statement(buf):
            if buf.strip():
                yield buf.strip()
            buf = ""
