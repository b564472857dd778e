"""The embedded backend: one SQLite file (WAL, ``synchronous=FULL``) and a lock file beside it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

from tiering.catalog.lock import WriterLock
from tiering.catalog.schema import MIGRATIONS, SCHEMA_VERSION
from tiering.core.errors import UserError


class SqliteBackend:
    """A catalog in the SQLite file ``path`` (see ``tiering.catalog.backend.Backend``)."""

    begin_sql = "BEGIN IMMEDIATE"
    claim_begin_sql: str | None = None  # one writer (the lock file): no file needs a claim
    now_sql = "((julianday('now') - 2440587.5) * 86400.0)"
    operational = (sqlite3.OperationalError,)
    cursor_types = (sqlite3.Cursor,)

    def __init__(self, path: Path, reader: sqlite3.Connection, writer: sqlite3.Connection | None,
                 lock: WriterLock | None) -> None:
        self.path = path
        self.name = str(path)
        self.reader = reader
        self.writer = writer
        self._lock = lock

    @classmethod
    def open(cls, path: Path, *, writer: bool, purpose: str) -> SqliteBackend:
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
            if not writer and _version(read_conn) == 0:
                read_conn.close()  # a writer has just created the file and not yet its tables
                raise UserError(f"catalog {path} is still being created; try again in a moment")
        except BaseException:
            if lock:
                lock.release()
            raise
        return cls(path, read_conn, write_conn, lock)

    def schema_version(self) -> int:
        return _version(self.reader)

    def columns(self, table: str, types: dict[str, pa.DataType]) -> pa.Table:
        """Read by ADBC's SQLite driver (C: rows into Arrow buffers) when it is installed, else row by row."""
        from tiering.catalog.arrow import sqlite_columns

        return sqlite_columns(self.path, self.reader, table, types)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader.close()
        if self._lock:
            self._lock.release()


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


def _version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def _check_version(conn: sqlite3.Connection, path: Path) -> None:
    version = _version(conn)
    if version > SCHEMA_VERSION:
        raise UserError(f"catalog {path} has schema version {version}, newer than this tiering ({SCHEMA_VERSION}); upgrade tiering")


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    _check_version(conn, path)
    for target in range(_version(conn) + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[target - 1]):
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
