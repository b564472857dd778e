"""The catalog's schema and its migrations, one list per backend, version for version.

``MIGRATIONS[i]`` (SQLite) and ``PG_MIGRATIONS[i]`` (PostgreSQL) take a
database from version ``i`` to ``i + 1``: the same tables, columns and
constraints in each dialect (BLOB/BYTEA, REAL/DOUBLE PRECISION). Each runs in
one transaction, so a crash mid-migration leaves the previous version intact.
SQLite keeps the version in ``PRAGMA user_version``, PostgreSQL in the one row
of ``tiering_schema``. Append to both lists together, never edit.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 0 -> 1: files, journal, runs.
    """
    CREATE TABLE files (
        path          BLOB PRIMARY KEY,           -- exact bytes, relative to the hot tier
        state         TEXT NOT NULL CHECK (state IN ('resident', 'archived', 'released', 'dirty')),
        tier          TEXT,                       -- capacity tier holding a copy
        object_key    TEXT,                       -- key of that copy under the tier's prefix
        storage_class TEXT,
        checksum      TEXT,                       -- 'blake3:<hex>' of the archived bytes
        size          INTEGER,                    -- true size at archive time
        mtime_ns      INTEGER,                    -- identity of the archived version ...
        ctime_ns      INTEGER,
        ino           INTEGER,                    -- ... so a later change is detected
        archived_at   REAL,
        released_at   REAL,
        heat          REAL NOT NULL DEFAULT 0,    -- decayed access count, as of heat_at
        heat_at       REAL,
        pinned        INTEGER NOT NULL DEFAULT 0,
        updated_at    REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX files_state ON files (state);

    CREATE TABLE journal (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id      TEXT NOT NULL,
        action      TEXT NOT NULL,                -- archive | release | restore | ...
        path        BLOB NOT NULL,
        tier        TEXT,
        object_key  TEXT,
        step        TEXT NOT NULL,                -- the last step reached
        status      TEXT NOT NULL CHECK (status IN ('open', 'done', 'failed', 'rolled_back')),
        detail      TEXT NOT NULL DEFAULT '{}',   -- JSON: what recovery needs (temp paths, identity)
        started_at  REAL NOT NULL,
        ended_at    REAL
    );
    CREATE INDEX journal_open ON journal (status) WHERE status = 'open';
    CREATE INDEX journal_path ON journal (path);

    CREATE TABLE runs (
        id          TEXT PRIMARY KEY,
        command     TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        host        TEXT NOT NULL,
        started_at  REAL NOT NULL,
        ended_at    REAL,
        summary     TEXT                          -- JSON, once the run ends
    );
    """,
    # 1 -> 2: many writers (used on a server; the same tables here, so one schema): a run's heartbeat, and
    # the claims, one row per file an action is running on (``tiering.catalog.claims``).
    """
    ALTER TABLE runs ADD COLUMN heartbeat_at REAL;      -- the database's clock, refreshed while the run lives
    ALTER TABLE runs ADD COLUMN heartbeat_every REAL;   -- seconds between heartbeats, as the run promised
    CREATE TABLE claims (
        path        BLOB PRIMARY KEY,             -- one action on a file at a time, across every writer
        run_id      TEXT NOT NULL,                -- the owner: live while its run is (heartbeat, pid)
        entry_id    INTEGER NOT NULL UNIQUE,      -- the open journal entry it covers; goes when that ends
        claimed_at  REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2 -> 3: indexes for a catalog of 10^8 rows. (state, size) covers the summary of ``status`` and the
    # daemon's counts (files and bytes by state) from the index alone: with (state) only, each row's size
    # was a lookup by key (10^7 rows: 21-28 s, now 3-5 s). (action, step) finds the object restores still
    # waiting, which every cycle asks for, without reading the whole journal.
    """
    CREATE INDEX files_state_size ON files (state, size);
    DROP INDEX files_state;
    CREATE INDEX journal_action_step ON journal (action, step);
    """,
]

PG_MIGRATIONS: list[str] = [
    # 0 -> 1: files, journal, runs (as MIGRATIONS[0]).
    """
    CREATE TABLE files (
        path          BYTEA PRIMARY KEY,
        state         TEXT NOT NULL CHECK (state IN ('resident', 'archived', 'released', 'dirty')),
        tier          TEXT,
        object_key    TEXT,
        storage_class TEXT,
        checksum      TEXT,
        size          BIGINT,
        mtime_ns      BIGINT,
        ctime_ns      BIGINT,
        ino           BIGINT,
        archived_at   DOUBLE PRECISION,
        released_at   DOUBLE PRECISION,
        heat          DOUBLE PRECISION NOT NULL DEFAULT 0,
        heat_at       DOUBLE PRECISION,
        pinned        INTEGER NOT NULL DEFAULT 0,
        updated_at    DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX files_state ON files (state);

    CREATE TABLE journal (
        id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        run_id      TEXT NOT NULL,
        action      TEXT NOT NULL,
        path        BYTEA NOT NULL,
        tier        TEXT,
        object_key  TEXT,
        step        TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('open', 'done', 'failed', 'rolled_back')),
        detail      TEXT NOT NULL DEFAULT '{}',
        started_at  DOUBLE PRECISION NOT NULL,
        ended_at    DOUBLE PRECISION
    );
    CREATE INDEX journal_open ON journal (status) WHERE status = 'open';
    CREATE INDEX journal_path ON journal (path);

    CREATE TABLE runs (
        id          TEXT PRIMARY KEY,
        command     TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        host        TEXT NOT NULL,
        started_at  DOUBLE PRECISION NOT NULL,
        ended_at    DOUBLE PRECISION,
        summary     TEXT
    );
    """,
    # 1 -> 2 (as MIGRATIONS[1]).
    """
    ALTER TABLE runs ADD COLUMN heartbeat_at DOUBLE PRECISION;
    ALTER TABLE runs ADD COLUMN heartbeat_every DOUBLE PRECISION;
    CREATE TABLE claims (
        path        BYTEA PRIMARY KEY,
        run_id      TEXT NOT NULL,
        entry_id    BIGINT NOT NULL UNIQUE,
        claimed_at  DOUBLE PRECISION NOT NULL
    );
    """,
    # 2 -> 3 (as MIGRATIONS[2]; PostgreSQL answers the summary by an index-only scan once vacuumed).
    """
    CREATE INDEX files_state_size ON files (state, size);
    DROP INDEX files_state;
    CREATE INDEX journal_action_step ON journal (action, step);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
assert len(PG_MIGRATIONS) == SCHEMA_VERSION, "every migration has a PostgreSQL twin"

#: The tables a catalog is made of, in the order a copy fills them (``tiering catalog migrate``).
TABLES = ("runs", "files", "journal")
