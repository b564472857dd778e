"""The catalog's SQLite schema and its migrations.

``PRAGMA user_version`` holds the schema version. ``MIGRATIONS[i]`` takes a
database from version ``i`` to ``i + 1``; each runs in one transaction, so a
crash mid-migration leaves the previous version intact. Append, never edit.
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
]

SCHEMA_VERSION = len(MIGRATIONS)
