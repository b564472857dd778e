"""``Catalog``: typed access to the catalog (see ``tiering.catalog``), on either backend.

The SQL here is the common ground of SQLite and PostgreSQL (``?`` placeholders,
``ON CONFLICT``, ``RETURNING``); what differs lives in ``sqlite`` and ``postgres``.

Many writers (a server catalog): every writer is a run with a heartbeat, every
action's ``begin`` claims its file in the same transaction, and its end lets
go in the same transaction (``tiering.catalog.claims``). A claim another
action holds, or a record that changed since the caller read it (``expect``),
is a ``ClaimedError``: that action does not start. ``orphans`` hands
``recover`` only the entries of dead runs. On SQLite (one writer, the lock
file) nothing is claimed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

from tiering.catalog.backend import Backend, Connection, open_backend
from tiering.catalog.claims import HEARTBEAT_EVERY, Heartbeat, RunLife
from tiering.catalog.commit import GroupCommitter
from tiering.catalog.records import FILE_COLUMNS as _FILE_COLUMNS
from tiering.catalog.records import FileRecord, JournalEntry, record, stored_ino
from tiering.core.display import show_path
from tiering.core.errors import CatalogError, ClaimedError, UserError

__all__ = ["Catalog", "FileRecord", "JournalEntry"]

_PINNED, _UPDATED_AT = _FILE_COLUMNS.index("pinned"), _FILE_COLUMNS.index("updated_at")
_INO = _FILE_COLUMNS.index("ino")
_record = record
#: Heat and pin have writers of their own (add_heat, set_pinned): a state change
#: computed from an older read of the record must not roll them back.
_KEPT_ON_UPDATE = ("path", "heat", "heat_at", "pinned")
#: A resident record's size follows the file on the hot tier; any other state's is the archived version's.
_SIZE = "size = CASE WHEN files.state = 'resident' THEN coalesce(excluded.size, files.size) ELSE files.size END"
_JOURNAL_COLUMNS = "id, run_id, action, path, tier, object_key, step, status, detail, started_at, ended_at"
#: What an action decided on, of a file's record: a change to any of these since it read the record means
#: another writer acted on the file meanwhile (heat, pin and a resident file's size do not count).
_ACTED_ON = tuple(_FILE_COLUMNS.index(c) for c in ("state", "tier", "object_key", "checksum", "mtime_ns",
                                                   "ctime_ns", "ino", "archived_at", "released_at"))
#: ``begin``'s ``expect`` when the caller read no record to compare.
ANY = object()
_UPSERT = (f"INSERT INTO files ({', '.join(_FILE_COLUMNS)}) VALUES ({', '.join('?' for _ in _FILE_COLUMNS)}) "
           "ON CONFLICT (path) DO UPDATE SET "
           + ", ".join(f"{c} = excluded.{c}" for c in _FILE_COLUMNS if c not in _KEPT_ON_UPDATE))


class Catalog:
    """The catalog database. Open with ``Catalog.open(path_or_url, writer=...)``; use as a context manager."""

    def __init__(self, db: Backend, purpose: str = "") -> None:
        self._db = db
        self.path = getattr(db, "path", db.name)  # the SQLite file; a server's URL without its password
        self.name = db.name
        self._conn = db.reader  # reads only; serialised by _read_lock
        self._read_lock = threading.Lock()
        self._committer = (GroupCommitter(db.writer, begin=db.begin_sql, cursor_types=db.cursor_types)
                           if db.writer is not None else None)
        self.run_id = uuid.uuid4().hex[:12]
        #: Many writers: this writer's actions claim their files (a server catalog; ``tiering.catalog.claims``).
        self.claims = self._committer is not None and getattr(db, "claim_begin_sql", None) is not None
        self.heartbeat_every = HEARTBEAT_EVERY
        self._live: set[str] = set()  # this writer's runs that have not ended (they heartbeat)
        self._purpose = purpose or "writer"  # the command of the run a first begin registers (no start_run)
        self._run_lock = threading.Lock()
        self._fenced = ""  # why this writer's run was declared dead by another's recover, once it was
        self._heartbeat = Heartbeat(self._beat, self.heartbeat_every) if self.claims else None

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, target: str | os.PathLike[str], *, writer: bool = False, purpose: str = "") -> Catalog:
        """Open (and, for a writer, create or migrate) the catalog ``target`` names: a SQLite file's
        path, or a ``postgresql://`` URL (``tiering.catalog.backend``).

        A writer takes the writer lock first: a second writer gets
        ``CatalogBusyError`` naming the holder. Readers never block writers.
        """
        return cls(open_backend(target, writer=writer, purpose=purpose), purpose)

    @property
    def backend(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return "sqlite" if isinstance(self.path, Path) else "postgresql"

    def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            try:  # the runs this writer registered end with it (a cycle's own finish_run said more)
                self._end_runs()
            except CatalogError:
                pass  # the server is gone: the runs are dead by their heartbeat soon enough
        if self._committer:
            self._committer.close()
        self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._read_lock:
            return self._db.schema_version()

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._read_lock:
            try:
                return self._conn.execute(sql, args).fetchall()
            except self._db.operational as exc:
                raise CatalogError(f"catalog {self.name} cannot be read: {_one_line(exc)}") from exc

    def _write(self, work):
        """Run ``work(conn)`` in a durable transaction (group-committed with other threads').

        A write the database refuses (disk full, an unwritable file, a server gone) is a
        ``CatalogError``: the run cannot go on.
        """
        if self._committer is None:
            raise UserError(f"catalog {self.name} was opened read-only")
        try:
            return self._committer.submit(work)
        except self._db.operational as exc:  # (not a constraint a bad record broke: that is a bug)
            raise self._unwritable(exc) from exc

    async def _write_async(self, work):
        if self._committer is None:
            raise UserError(f"catalog {self.name} was opened read-only")
        try:
            return await self._committer.submit_async(work)
        except self._db.operational as exc:  # (not a constraint a bad record broke: that is a bug)
            raise self._unwritable(exc) from exc

    def _unwritable(self, exc: BaseException) -> CatalogError:
        return CatalogError(f"catalog {self.name} cannot be written: {_one_line(exc)}")

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
        rows = self._read("SELECT state, count(*), CAST(coalesce(sum(size), 0) AS BIGINT) FROM files GROUP BY state")
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
            f"heat = files.heat * pow(0.5, (? - coalesce(files.heat_at, ?)) / ?) + 1, heat_at = ?, updated_at = ?, {_SIZE}",
            rows))

    def columns(self, table: str, types: dict[str, pa.DataType]) -> pa.Table:
        """Every row of ``table`` (``files``, ``journal``, ``runs``) as Arrow, the columns ``types`` names,
        typed so, read in bulk (``tiering.catalog.arrow``: no Python object per row)."""
        with self._read_lock:
            try:
                return self._db.columns(table, types)
            except self._db.operational as exc:
                raise CatalogError(f"catalog {self.name} cannot be read: {_one_line(exc)}") from exc

    def state_table(self, now: float, half_life: float) -> pa.Table:
        """What the policy engine joins onto the inventory: state, tier, heat decayed to ``now``,
        pin, the identity (size, mtime, inode) of the archived version, its copy's storage class and age."""
        return _state(self.columns("files", _state_types()), now, half_life)

    def state_batches(self, now: float, half_life: float, batch_rows: int = 1 << 18) -> Iterator[pa.RecordBatch]:
        """``state_table`` as a stream of record batches of about ``batch_rows`` rows (in no particular order),
        read in bulk from one consistent view of the catalog, so a caller never holds the whole catalog: the
        out-of-core plan buckets them as they come. The read runs on a connection of its own (readers never
        block the writer); stop iterating early and that connection closes."""
        from tiering.catalog import arrow

        types = _state_types()
        if self.backend == "sqlite":
            raw = arrow.sqlite_batches(self.path, "files", types, batch_rows)
        else:
            raw = arrow.postgres_batches(self._db.url, "files", types, batch_rows)
        try:
            for batch in raw:
                yield _state(batch, now, half_life)
        except ImportError as exc:
            raise UserError("reading a postgresql:// catalog into Arrow needs adbc-driver-postgresql; "
                            "pip install 'tiering[postgres]'") from exc
        except Exception as exc:  # sqlite3's errors, or adbc_driver_manager's: a database gone, a read refused
            if isinstance(exc, self._db.operational) or exc.__class__.__module__.startswith("adbc_driver"):
                raise CatalogError(f"catalog {self.name} cannot be read: {_one_line(exc)}") from exc
            raise

    # -- journal -----------------------------------------------------------------

    def begin(self, action: str, path: bytes, step: str, *, tier: str | None = None,
              object_key: str | None = None, expect: FileRecord | None | object = ANY, **detail) -> int:
        """Journal the start of an action, durably, before anything is touched.

        With many writers the same transaction claims ``path``: ``ClaimedError`` if another action holds
        it, or if its record no longer matches ``expect`` (the record the caller decided on; None: no
        record), in which case the entry is closed again, rolled back.
        """
        self._registered()
        got = self._write(self._begin_work(action, path, step, tier, object_key, detail))
        entry, why = self._claimed(got, path, expect)
        if why:
            if entry is not None:
                self.end(entry, "rolled_back", error=why)
            raise ClaimedError(why)
        return entry

    async def begin_async(self, action: str, path: bytes, step: str, *, tier: str | None = None,
                          object_key: str | None = None, expect: FileRecord | None | object = ANY,
                          **detail) -> int:
        """``begin`` from an event loop."""
        if self.claims and not self._live:
            await asyncio.to_thread(self._registered)
        got = await self._write_async(self._begin_work(action, path, step, tier, object_key, detail))
        entry, why = self._claimed(got, path, expect)
        if why:
            if entry is not None:
                await self.end_async(entry, "rolled_back", error=why)
            raise ClaimedError(why)
        return entry

    def _begin_work(self, action: str, path: bytes, step: str, tier: str | None, object_key: str | None,
                    detail: dict):
        if self._fenced:
            raise CatalogError(self._fenced)
        args = (self.run_id, action, path, tier, object_key, step, json.dumps(detail), time.time())
        if not self.claims:
            return lambda conn: _returning(
                conn, "INSERT INTO journal (run_id, action, path, tier, object_key, step, status, detail, started_at) "
                      "VALUES (?, ?, ?, ?, ?, ?, 'open', ?, ?) RETURNING id", args)
        claim, read = (path, self.run_id, args[-1], *args), (f"SELECT {', '.join(_FILE_COLUMNS)} FROM files "
                                                              "WHERE path = ?")
        # The record is read after the claim is taken (a statement of its own: it sees what the claim's
        # previous holder committed), in the same round trip.
        return lambda conn: (conn.returning(self._db.claim_begin_sql, claim),
                             conn.returning(read, (path,), "row"))

    def _claimed(self, got, path: bytes, expect) -> tuple[int | None, str]:
        """(the new entry's id, why the action must not go on: "" when it may)."""
        if not self.claims:
            return got, ""
        entry, row = got
        if entry is None:
            return None, f"{show_path(path)}: {self._claim_holder(path)} is acting on it; skipped"
        if expect is not ANY and _acted_on_row(row) != _acted_on(expect):
            return entry, f"{show_path(path)}: another run acted on it since this one looked; skipped"
        return entry, ""

    def _claim_holder(self, path: bytes) -> str:
        rows = self._read("SELECT c.run_id, r.command, r.pid, r.host FROM claims c LEFT JOIN runs r ON r.id = c.run_id "
                          "WHERE c.path = ?", (path,))
        if not rows:
            return "another run"
        run, command, pid, host = rows[0]
        return f"run {run} ({command}, pid {pid} on {host})" if command else f"run {run}"

    def step(self, entry_id: int, step: str, **detail) -> None:
        """Journal that an open action reached ``step`` (``detail`` is merged in)."""
        self._write(lambda conn: _merge(conn, entry_id, step, None, detail))

    def end(self, entry_id: int, status: str = "done", record: FileRecord | None = None, **detail) -> None:
        """Close an action; with ``record``, the file's new state commits in the same transaction.

        With many writers its claim goes in that transaction too, and only if this writer still holds it:
        once another process's ``recover`` has taken the claim over (it declared this run dead), the end
        changes nothing and raises ``CatalogError`` (the fence; ``tiering.catalog.claims``).
        """
        self._ended(entry_id, self._write(self._end_work(entry_id, status, record, detail)))

    async def end_async(self, entry_id: int, status: str = "done", record: FileRecord | None = None,
                        **detail) -> None:
        """``end`` from an event loop."""
        self._ended(entry_id, await self._write_async(self._end_work(entry_id, status, record, detail)))

    def _end_work(self, entry_id: int, status: str, record: FileRecord | None, detail: dict):
        if not self.claims:
            return _end_work(entry_id, status, record, detail)
        sql = _claimed_end_sql(self._db.file_types, record is not None, bool(detail))
        args = [entry_id, sorted(self._live | {self.run_id})]
        if record is not None:
            args += _row(record)
        args += [status, *([json.dumps(detail)] if detail else []), time.time(), entry_id]
        return lambda conn: conn.returning(sql, tuple(args))

    def _ended(self, entry_id: int, got) -> None:
        """Raise the fence's error when a claimed end changed nothing (its claim was no longer ours)."""
        if self.claims and got is None:
            raise CatalogError(f"catalog {self.name}: journal entry {entry_id} was taken over by another "
                               "process's recover (it declared this run dead); its end is not recorded")

    async def end_then_begin_async(self, entry_id: int, record: FileRecord, detail: dict, action: str, step: str, *,
                                   tier: str | None = None, object_key: str | None = None, **begin_detail) -> int:
        """Close one action and journal the next on the same file, in one transaction (one commit to
        wait for instead of two); returns the new entry's id. The file's claim passes from one to the other
        in that transaction."""
        end = self._end_work(entry_id, "done", record, detail)
        begin = self._begin_work(action, record.path, step, tier, object_key, begin_detail)

        def work(conn: Connection):  # one flat tuple: the committer resolves a pipelined result one level deep
            ended, began = end(conn), begin(conn)
            return (ended, *began) if isinstance(began, tuple) else (ended, began)

        ended, *began = await self._write_async(work)
        got = tuple(began) if len(began) > 1 else began[0]
        entry, why = self._claimed(got, record.path, ANY)
        if self.claims and ended is None:  # fenced: the next action must not go on either
            if entry is not None:
                await self.end_async(entry, "rolled_back", error="the action before it was taken over by recover")
            self._ended(entry_id, ended)
        if why:  # (only a recover that declared this run dead took the file meanwhile)
            raise ClaimedError(why)
        return entry

    async def put_async(self, record: FileRecord) -> None:
        """``put`` from an event loop."""
        await self._write_async(lambda conn: _upsert(conn, record))

    def open_entries(self) -> list[JournalEntry]:
        """Actions not ended (status still 'open'), oldest first: a crash interrupted them, or (many
        writers) another run is still at them."""
        rows = self._read(f"SELECT {_JOURNAL_COLUMNS} FROM journal WHERE status = 'open' ORDER BY id")
        return [_entry(r) for r in rows]

    def orphans(self) -> Iterator[JournalEntry]:
        """The open entries ``recover`` may settle, oldest first: on one writer's catalog all of them; with
        many writers those of dead runs (``tiering.catalog.claims``), each claim taken over by this writer's
        run just before the entry is yielded (so two recovers never settle one entry), and the dead run
        marked ended. A live run's entries, on this host or another, are left alone."""
        if not self.claims:
            yield from self.open_entries()
            return
        self._registered()  # the claims taken over belong to a run of ours that others see alive
        rows = self._read(f"SELECT {', '.join('j.' + c for c in _JOURNAL_COLUMNS.split(', '))}, c.run_id "
                          "FROM journal j LEFT JOIN claims c ON c.entry_id = j.id WHERE j.status = 'open' ORDER BY j.id")
        lives = self._lives({row[-1] or row[1] for row in rows})
        here = socket.gethostname()
        for row in rows:
            entry, owner = _entry(row[:-1]), row[-1]
            life = lives.get(owner or entry.run_id)
            if (owner or entry.run_id) not in self._live and life is not None and not life.why_dead(here):
                continue  # a live run is at it
            if self._take_over(entry, owner):
                yield entry

    def _lives(self, run_ids: set[str]) -> dict[str, RunLife]:
        ids = sorted(run_ids)
        lives: dict[str, RunLife] = {}
        for i in range(0, len(ids), 500):
            part = ids[i:i + 500]
            rows = self._read("SELECT id, host, pid, started_at, ended_at, heartbeat_at, heartbeat_every, "
                              f"{self._db.now_sql} FROM runs WHERE id IN ({', '.join('?' for _ in part)})", tuple(part))
            lives.update((row[0], RunLife(*row)) for row in rows)
        return lives

    def _take_over(self, entry: JournalEntry, owner: str | None) -> bool:
        """Claim ``entry``'s file for this writer's run from its dead ``owner`` (None: the entry has no claim,
        as one copied from an older catalog); False if another recover was first. The dead run is marked ended."""
        now, dead = time.time(), owner or entry.run_id

        def work(conn: Connection):
            if dead not in self._live:
                conn.execute(f"UPDATE runs SET ended_at = {self._db.now_sql} WHERE id = ? AND ended_at IS NULL", (dead,))
            if owner is None:
                return conn.returning("INSERT INTO claims (path, run_id, entry_id, claimed_at) VALUES (?, ?, ?, ?) "
                                      "ON CONFLICT DO NOTHING RETURNING entry_id", (entry.path, self.run_id, entry.id, now))
            return conn.returning("UPDATE claims SET run_id = ?, claimed_at = ? WHERE entry_id = ? AND run_id = ? "
                                  "RETURNING entry_id", (self.run_id, now, entry.id, owner))

        return self._write(work) is not None

    def entries_at(self, action: str, step: str) -> list[JournalEntry]:
        """Journal entries of ``action`` whose last step is ``step`` (an ``object-restore`` still waiting), oldest first."""
        rows = self._read(
            "SELECT id, run_id, action, path, tier, object_key, step, status, detail, started_at, ended_at "
            "FROM journal WHERE action = ? AND step = ? ORDER BY id", (action, step))
        return [_entry(r) for r in rows]

    def history(self, path: bytes, limit: int = 20) -> list[JournalEntry]:
        rows = self._read(
            "SELECT id, run_id, action, path, tier, object_key, step, status, detail, started_at, ended_at "
            "FROM journal WHERE path = ? ORDER BY id DESC LIMIT ?", (path, limit))
        return [_entry(r) for r in rows]

    # -- runs --------------------------------------------------------------------

    def start_run(self, command: str) -> str:
        """Record the start of a run and return its id; journal entries that follow carry it.

        Each call starts a new run (a daemon records one per cycle), so the id is fresh each time. (With
        many writers, a writer that journals without starting a run is registered as one by its first
        ``begin``, named by the purpose it opened the catalog for: every entry has a run to judge.)
        """
        with self._run_lock:
            self.run_id = uuid.uuid4().hex[:12]
            self._insert_run(command)
        return self.run_id

    def _registered(self) -> None:
        """With many writers, make sure this writer's entries belong to a live run."""
        if self.claims and not self._live:
            with self._run_lock:
                if not self._live:
                    self._insert_run(self._purpose)

    def _insert_run(self, command: str) -> None:
        args = (self.run_id, command, os.getpid(), socket.gethostname(), time.time(), self.heartbeat_every)
        self._write(lambda conn: conn.execute(
            "INSERT INTO runs (id, command, pid, host, started_at, heartbeat_at, heartbeat_every) "
            f"VALUES (?, ?, ?, ?, ?, {self._db.now_sql}, ?)", args))
        if self.claims:
            self._live.add(self.run_id)

    def finish_run(self, summary: dict) -> None:
        args = (time.time(), json.dumps(summary), self.run_id)
        self._write(lambda conn: conn.execute("UPDATE runs SET ended_at = ?, summary = ? WHERE id = ?", args))
        self._live.discard(self.run_id)

    def _beat(self) -> None:
        """Refresh the heartbeat of this writer's live runs; a run another recover declared dead (ended
        meanwhile) fences this writer: it begins nothing more (``tiering.catalog.claims``)."""
        live = sorted(self._live)
        if not live:
            return
        marks = ", ".join("?" for _ in live)
        alive = self._write(lambda conn: conn.returning(
            f"UPDATE runs SET heartbeat_at = {self._db.now_sql} WHERE id IN ({marks}) AND ended_at IS NULL "
            "RETURNING id", tuple(live), "rows"))
        gone = (set(live) - {row[0] for row in alive}) & self._live  # (not a run finished meanwhile)
        if gone:
            self._fenced = (f"catalog {self.name}: run {min(gone)} was declared dead by another process's recover "
                            "(its heartbeat had stopped); it starts nothing more")

    def _end_runs(self) -> None:
        live, self._live = sorted(self._live), set()
        if live:
            marks = ", ".join("?" for _ in live)
            self._write(lambda conn: conn.execute(
                f"UPDATE runs SET ended_at = {self._db.now_sql} WHERE id IN ({marks}) AND ended_at IS NULL", tuple(live)))

    def last_run(self) -> dict | None:
        """The latest run that is going on or left a summary (a writer that only opened and closed, as a
        hand-run ``archive`` on a server catalog, left none)."""
        rows = self._read(
            "SELECT id, command, pid, host, started_at, ended_at, summary FROM runs "
            "WHERE summary IS NOT NULL OR ended_at IS NULL ORDER BY started_at DESC LIMIT 1")
        if not rows:
            return None
        row = rows[0]
        keys = ("id", "command", "pid", "host", "started_at", "ended_at", "summary")
        return {**dict(zip(keys, row)), "summary": json.loads(row[6]) if row[6] else None}


def _state_types() -> dict[str, pa.DataType]:
    import pyarrow as pa  # only planning needs Arrow; movers start faster without it

    return {"path": pa.binary(), "state": pa.string(), "tier": pa.string(), "heat": pa.float64(),
            "heat_at": pa.float64(), "pinned": pa.int64(), "size": pa.int64(), "mtime_ns": pa.int64(),
            "ino": pa.int64(), "storage_class": pa.string(), "archived_at": pa.float64()}


def _state(raw, now: float, half_life: float):
    """Raw ``files`` columns (a table or a batch) as ``state_table``'s columns: heat decayed to ``now``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    heat_at = pc.fill_null(raw.column("heat_at"), now)
    decay = pc.power(0.5, pc.divide(pc.subtract(pa.scalar(now), heat_at), half_life))
    columns = {
        "path": raw.column("path"),
        "state": raw.column("state"),
        "tier": raw.column("tier"),
        "heat": pc.multiply(raw.column("heat"), decay),
        "pinned": pc.not_equal(raw.column("pinned"), 0),
        "size": raw.column("size"),
        "mtime_ns": raw.column("mtime_ns"),
        "ino": raw.column("ino"),  # as stored: compare with an inventory's uint64 cast unsafely
        "storage_class": raw.column("storage_class"),  # of the capacity copy, as recorded (null: the tier's)
        "archived_at": raw.column("archived_at"),  # when that copy was made (seconds since the epoch)
    }
    return pa.table(columns) if isinstance(raw, pa.Table) else pa.RecordBatch.from_pydict(columns)


def _upsert(conn: Connection, record: FileRecord) -> None:
    conn.execute(_UPSERT, _row(record))


def _row(record: FileRecord) -> list:
    # Plain attribute reads: dataclasses.asdict deep-copies, and this runs for every journal step.
    values = [getattr(record, c) for c in _FILE_COLUMNS]
    values[_PINNED], values[_UPDATED_AT] = int(record.pinned), time.time()
    values[_INO] = stored_ino(record.ino)
    return values


def _end_work(entry_id: int, status: str, record: FileRecord | None, detail: dict):
    def work(conn: Connection) -> None:
        _merge(conn, entry_id, None, status, detail)
        if record is not None:
            _upsert(conn, record)

    return work


@functools.lru_cache(maxsize=8)
def _claimed_end_sql(types: tuple[tuple[str, str], ...], with_record: bool, with_detail: bool) -> str:
    """Many writers (a server): an action's end as one statement, so ending costs no more statements than
    with one writer. The claim goes only if a run of this writer still holds it (arguments: the entry, the
    writer's run ids); the record is written and the entry closed only if it went; the entry's id comes
    back, or no row when the claim was not ours. ``types``: the files columns' SQL types, for the record's
    values (in ``INSERT ... SELECT`` a parameter's type is not taken from the column it fills)."""
    ctes = ["unclaimed AS (DELETE FROM claims WHERE entry_id = ? AND run_id = ANY(?) RETURNING entry_id)"]
    if with_record:
        kinds = dict(types)
        values = ", ".join(f"CAST(? AS {kinds[c]})" for c in _FILE_COLUMNS)
        ctes.append(f"recorded AS (INSERT INTO files ({', '.join(_FILE_COLUMNS)}) SELECT {values} "
                    "WHERE EXISTS (SELECT 1 FROM unclaimed) " + _UPSERT[_UPSERT.index("ON CONFLICT"):] + ")")
    detail = "(detail::jsonb || ?::jsonb)::text" if with_detail else "detail"
    return (f"WITH {', '.join(ctes)} UPDATE journal SET status = ?, detail = {detail}, ended_at = ? "
            "WHERE id = ? AND EXISTS (SELECT 1 FROM unclaimed) RETURNING id")


_NO_RECORD = ("resident",) + (None,) * (len(_ACTED_ON) - 1)  # a resident file the catalog knows nothing of


def _acted_on(record: FileRecord | None) -> tuple:
    """What an action decides on, of ``record``, as the database holds it (``_acted_on_row``)."""
    if record is None:
        return _NO_RECORD
    return tuple(stored_ino(record.ino) if i == _INO else getattr(record, _FILE_COLUMNS[i]) for i in _ACTED_ON)


def _acted_on_row(row: tuple | None) -> tuple:
    """``_acted_on`` of a ``files`` row, read straight (this runs for every claimed begin)."""
    return _NO_RECORD if row is None else tuple(row[i] for i in _ACTED_ON)


def _returning(conn: Connection, sql: str, args: tuple):
    """The one value ``sql`` returns: now, or (a server's pipeline) once the batch's results are in."""
    deferred = getattr(conn, "returning", None)
    return deferred(sql, args) if deferred is not None else conn.execute(sql, args).fetchone()[0]


def _merge(conn: Connection, entry_id: int, step: str | None, status: str | None, detail: dict,
           before: tuple[str, list] = ("", [])) -> None:
    """Update an entry's step, status and detail (``before``: SQL and arguments that open the statement,
    its ``WITH`` clause)."""
    detail_sql, detail_arg = "coalesce(?, detail)", None
    on_server = getattr(conn, "merge_detail", None)
    if detail and on_server:  # merged by the server: no read in the middle of a pipelined batch
        detail_sql, detail_arg = on_server, json.dumps(detail)
    elif detail:
        row = conn.execute("SELECT detail FROM journal WHERE id = ?", (entry_id,)).fetchone()
        detail_arg = json.dumps({**json.loads(row[0]), **detail})
    conn.execute(
        before[0] + "UPDATE journal SET step = coalesce(?, step), status = coalesce(?, status), "
        f"detail = {detail_sql}, ended_at = coalesce(?, ended_at) WHERE id = ?",
        (*before[1], step, status, detail_arg, None if status is None else time.time(), entry_id))


def _entry(row: tuple) -> JournalEntry:
    return JournalEntry(*row[:3], bytes(row[3]), *row[4:8], json.loads(row[8]), row[9], row[10])


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
