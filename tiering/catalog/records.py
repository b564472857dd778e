"""The catalog's value objects and how they map to rows (the same on every backend)."""

from __future__ import annotations

from dataclasses import dataclass, fields


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


FILE_COLUMNS = [f.name for f in fields(FileRecord)]
_INO = FILE_COLUMNS.index("ino")
#: Inode numbers are unsigned 64-bit (FUSE filesystems such as SeaweedFS use the whole range) and both
#: backends' integers are signed 64-bit: stored two's complement, read back unsigned.
_INO_WRAP = 1 << 64


def stored_ino(ino: int | None) -> int | None:
    return ino - _INO_WRAP if ino is not None and ino >= 1 << 63 else ino


def record(row: tuple) -> FileRecord:
    """A ``FileRecord`` from a row of ``FILE_COLUMNS``."""
    values = dict(zip(FILE_COLUMNS, row))
    values["path"] = bytes(values["path"])
    values["pinned"] = bool(values["pinned"])
    if values["ino"] is not None and values["ino"] < 0:
        values["ino"] += _INO_WRAP
    return FileRecord(**values)
