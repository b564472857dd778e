"""The server backend: a PostgreSQL database shared by many nodes.

Transactions go through psycopg 3 on two connections in autocommit mode (the
group committer issues ``BEGIN``/``COMMIT`` itself, as on SQLite), with
``synchronous_commit = on``: a commit that returned is in the server's
flushed WAL, which is what the journal's durable ``begin`` needs.

Many processes on many hosts write at once: each action claims its file in
the transaction of its durable ``begin`` (``claims``, see ``tiering.catalog.db``),
so no two act on one file. What stays one at a time is the policy cycle
(``run``, the daemon): its lock is a session-level advisory lock on the
writer's connection, which the server drops when that session ends, however
its process died. The holder is named by the connection's
``application_name`` (pid, host, purpose).

Bulk reads into Arrow go through ADBC's PostgreSQL driver (``arrow.py``).
"""

from __future__ import annotations

import functools
import os
import socket
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import pyarrow as pa

from tiering.catalog.backend import redact
from tiering.catalog.commit import Pending
from tiering.catalog.lock import describe_holder
from tiering.catalog.schema import PG_MIGRATIONS, SCHEMA_VERSION
from tiering.core.errors import CatalogBusyError, CatalogError, ConfigError, UserError

#: The advisory lock key of the cycle lock ("tier"); below 2**31, so pg_locks shows it as objid.
CYCLE_LOCK_KEY = 0x74696572
#: Held while a writer brings the schema up to date, so two writers starting at once migrate once.
MIGRATE_LOCK_KEY = 0x74696573
#: The writers that run policy cycles: one at a time per catalog (cron's ``run``, the daemon). Every other
#: writer (``archive``, ``release``, ``restore`` ...) runs beside them, file by file under its claims.
CYCLE_PURPOSES = frozenset({"run", "daemon"})
#: A journal ``begin`` that claims its file in the same statement: the journal row exists only if the claim
#: was taken (no row back: another action holds the file). The entry's id is drawn first, so the claim names it
#: (``{sequence}``: the journal's id sequence, looked up once per connection rather than per statement).
CLAIM_BEGIN_SQL = (
    "WITH c AS (INSERT INTO claims (path, run_id, entry_id, claimed_at) "
    "VALUES (?, ?, nextval('{sequence}'), ?) ON CONFLICT DO NOTHING RETURNING entry_id) "
    "INSERT INTO journal (id, run_id, action, path, tier, object_key, step, status, detail, started_at) "
    "SELECT entry_id, ?, ?, ?, ?, ?, ?, 'open', ?, ? FROM c RETURNING id")
#: The ``files`` columns' types (``schema.PG_MIGRATIONS``), for statements whose values fill no column directly.
FILE_TYPES = (("path", "bytea"), ("state", "text"), ("tier", "text"), ("object_key", "text"),
              ("storage_class", "text"), ("checksum", "text"), ("size", "bigint"), ("mtime_ns", "bigint"),
              ("ctime_ns", "bigint"), ("ino", "bigint"), ("archived_at", "double precision"),
              ("released_at", "double precision"), ("heat", "double precision"), ("heat_at", "double precision"),
              ("pinned", "integer"), ("updated_at", "double precision"))
_INSTALL_HINT = "install the PostgreSQL catalog's drivers: pip install 'tiering[postgres]'"


def _psycopg():
    try:
        import psycopg
    except ImportError as exc:
        raise UserError(f"a postgresql:// catalog needs psycopg 3; {_INSTALL_HINT}") from exc
    return psycopg


class PgConnection:
    """A psycopg connection that takes the catalog's ``?`` placeholders (see ``backend.Connection``)."""

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    def execute(self, sql: str, args: Any = ()) -> Any:
        return self.raw.execute(_pg_sql(sql), args or None)

    def executemany(self, sql: str, rows: Any) -> Any:
        cur = self.raw.cursor()
        cur.executemany(_pg_sql(sql), list(rows))
        return cur

    def returning(self, sql: str, args: Any, shape: str = "value") -> Pending:
        """Run a statement with ``RETURNING``; its value is ``Pending`` (it arrives with the pipeline's
        results): the first column of its row (``shape`` "value"), the row, or every row ("rows")."""
        return Pending(self.raw.execute(_pg_sql(sql), args), shape)

    #: Merge a journal entry's detail on the server (a shallow merge, as ``{**old, **new}``): no read first.
    merge_detail = "(detail::jsonb || ?::jsonb)::text"  # (detail's column is text on both backends)

    def pipeline(self):
        return self.raw.pipeline()

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    # The catalog's SQL has no literal '?' or '%': placeholders are the only ones.
    return sql.replace("?", "%s")


class PostgresBackend:
    """A catalog in the PostgreSQL database ``url`` names (see ``tiering.catalog.backend.Backend``)."""

    begin_sql = "BEGIN"
    #: The server's clock, so heartbeats from hosts whose clocks differ compare alike.
    now_sql = "extract(epoch FROM clock_timestamp())::float8"

    def __init__(self, url: str, reader: PgConnection, writer: PgConnection | None) -> None:
        psycopg = _psycopg()
        self.url = url
        self.name = redact(url)
        self.reader = reader
        self.writer = writer
        self.operational = (psycopg.OperationalError,)
        self.cursor_types = (psycopg.Cursor,)
        sequence = reader.execute("SELECT pg_get_serial_sequence('journal', 'id')").fetchone()[0]
        self.claim_begin_sql: str | None = CLAIM_BEGIN_SQL.format(sequence=sequence.replace("'", "''"))
        self.file_types = FILE_TYPES

    @classmethod
    def open(cls, url: str, *, writer: bool, purpose: str) -> PostgresBackend:
        name = redact(url)
        opened: list[PgConnection] = []
        try:
            write_conn = None
            if writer:
                write_conn = _connect(url, purpose or "writer")
                opened.append(write_conn)
                if purpose in CYCLE_PURPOSES:
                    _lock(write_conn, name)
                _migrate(write_conn, name)
            read_conn = _connect(url, "reader")
            opened.append(read_conn)
            version = _version(read_conn)
            _check_version(version, name)
            if version == 0:
                raise UserError(f"catalog {name} has no tables yet (a writer creates them: run a scan or an archive first)")
        except BaseException:
            for conn in opened:
                conn.close()
            raise
        return cls(url, read_conn, write_conn)

    def schema_version(self) -> int:
        return _version(self.reader)

    def columns(self, table: str, types: dict[str, pa.DataType]) -> pa.Table:
        """Read by ADBC's PostgreSQL driver: the server's binary COPY straight into Arrow, in C."""
        from tiering.catalog.arrow import postgres_columns

        try:
            return postgres_columns(self.url, table, types)
        except ImportError as exc:
            raise UserError(f"reading a postgresql:// catalog into Arrow needs adbc-driver-postgresql; "
                            f"{_INSTALL_HINT}") from exc
        except Exception as exc:  # adbc_driver_manager's errors: a server gone, a read refused
            if exc.__class__.__module__.startswith("adbc_driver"):
                raise CatalogError(f"catalog {self.name} cannot be read: {_one_line(exc)}") from exc
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()  # ends the session: the server drops the advisory cycle lock
        self.reader.close()


def _connect(url: str, role: str) -> PgConnection:
    """A connection in autocommit mode, named for ``tiering status`` and the busy error; one-line errors:
    a malformed URL is a ``ConfigError``, refused credentials or a missing database a ``UserError``, an
    unreachable server a ``CatalogError``."""
    psycopg = _psycopg()
    name = redact(url)
    check_url(url)
    app = f"tiering:{os.getpid()}:{socket.gethostname()}:{role}"[:63]
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10, application_name=app)
    except psycopg.ProgrammingError as exc:
        raise _bad_url(name, _one_line(exc)) from exc
    except psycopg.OperationalError as exc:
        if _refused(exc):
            raise UserError(f"catalog {name}: {_one_line(exc)}") from exc
        raise CatalogError(f"catalog {name} cannot be reached: {_one_line(exc)}") from exc
    conn.execute("SET synchronous_commit = on")  # whatever the server's default: a commit is durable
    return PgConnection(conn)


#: What libpq says when the server answered but will not let us in: the user's to fix (exit 2), not an outage.
#: (A failed connection attempt carries no SQLSTATE in psycopg, only libpq's text.)
_REFUSALS = ("password authentication failed", "no password supplied", "does not exist", "no pg_hba.conf entry",
             "permission denied for database")


def _refused(exc: BaseException) -> bool:
    state = getattr(exc, "sqlstate", None) or ""
    return state.startswith("28") or state == "3D000" or any(r in str(exc) for r in _REFUSALS)


def check_url(url: str) -> None:
    """A ``ConfigError`` for a URL libpq would refuse only when connecting (a port that is no number,
    an unknown option), before anything is tried."""
    from psycopg.conninfo import conninfo_to_dict

    psycopg = _psycopg()
    try:
        urlsplit(url).port  # noqa: B018 - raises ValueError for a port that is not a number
        conninfo_to_dict(url)
    except (ValueError, psycopg.ProgrammingError) as exc:
        raise _bad_url(redact(url), _one_line(exc)) from exc


def _bad_url(name: str, why: str) -> ConfigError:
    return ConfigError(f"catalog url {name}: {why}; expected postgresql://USER:${{VAR}}@HOST[:PORT]/DATABASE")


def _one_line(exc: BaseException) -> str:
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _lock(conn: PgConnection, name: str) -> None:
    if conn.execute("SELECT pg_try_advisory_lock(?)", (CYCLE_LOCK_KEY,)).fetchone()[0]:
        return
    holder = _holder(conn)
    raise CatalogBusyError(f"{name} is in use by {describe_holder(holder)}", holder)


def _holder(conn: PgConnection) -> dict:
    """Who holds the cycle lock, from its session's application_name (as ``lock.read_holder``)."""
    row = conn.execute(
        "SELECT a.application_name, extract(epoch FROM a.backend_start)::float8 FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid = 0 AND l.objid = ? AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        (CYCLE_LOCK_KEY,)).fetchone()
    if not row or not (row[0] or "").startswith("tiering:"):
        return {}
    _, pid, host, purpose = (row[0].split(":", 3) + ["", "", ""])[:4]
    return {"pid": int(pid) if pid.isdigit() else pid, "host": host, "purpose": purpose,
            "started": row[1] or time.time()}


def holder_of(url: str) -> dict | None:
    """Who holds the cycle lock on the server ``url`` names, or None (``backend.writer_holder``)."""
    conn = _connect(url, "status")
    try:
        return _holder(conn) or None
    finally:
        conn.close()


def _version(conn: PgConnection) -> int:
    if conn.execute("SELECT to_regclass('tiering_schema') IS NULL").fetchone()[0]:
        return 0
    row = conn.execute("SELECT version FROM tiering_schema").fetchone()
    return row[0] if row else 0


def _check_version(version: int, name: str) -> None:
    if version > SCHEMA_VERSION:
        raise UserError(f"catalog {name} has schema version {version}, newer than this tiering ({SCHEMA_VERSION}); upgrade tiering")


def _migrate(conn: PgConnection, name: str) -> None:
    """Bring the database to ``SCHEMA_VERSION``, one transaction per step (DDL is transactional here);
    under the migration lock, so writers starting at once on many nodes migrate once (a writer that finds
    the schema current takes no lock: a stopped writer never holds up the others' start)."""
    version = _version(conn)
    _check_version(version, name)
    if version == SCHEMA_VERSION:
        return
    conn.execute("SELECT pg_advisory_lock(?)", (MIGRATE_LOCK_KEY,))
    try:
        _migrate_locked(conn, name)
    finally:
        conn.execute("SELECT pg_advisory_unlock(?)", (MIGRATE_LOCK_KEY,))


def _migrate_locked(conn: PgConnection, name: str) -> None:
    version = _version(conn)
    _check_version(version, name)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN")
        try:
            if target == 1:
                conn.execute("CREATE TABLE tiering_schema (version INTEGER NOT NULL)")
                conn.execute("INSERT INTO tiering_schema VALUES (0)")
            conn.raw.execute(PG_MIGRATIONS[target - 1])  # several statements, no parameters
            conn.execute("UPDATE tiering_schema SET version = ?", (target,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
