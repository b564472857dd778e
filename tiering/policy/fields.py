"""The fields an expression can name, and how each is computed.

Each field reads one column of an *augmented* batch: the inventory
(``tiering.core.inventory.SCHEMA``) joined with the catalog columns, plus the derived
columns ``augment`` adds. Every field has two definitions side by side: a
vectorized one (pyarrow compute over a whole batch) and a per-row one (plain
Python, for the reference evaluator and ``explain``). They must agree; the
property test checks that they do.

Conventions:

- Paths are exact bytes. ``name`` is the last component, ``dirname`` everything
  before the last ``/`` (``""`` at the top), ``suffix`` the last ``.ext`` of the
  name as ``pathlib`` defines it (``".gz"`` for ``a.tar.gz``; ``""`` for
  ``.bashrc`` and ``a.``). All are case-sensitive bytes; ``depth`` is the number
  of components (``a`` is 1, ``a/b`` is 2).
- Ages are float seconds from ``now`` (a fixed ``int`` of ns since the epoch) to
  the timestamp; a timestamp in the future gives a negative age.
- Catalog columns may be null or absent (unmanaged files): ``state`` is then
  ``"resident"``, ``tier`` ``""``, ``heat`` ``0.0``, ``pinned`` false and
  ``storage_class`` (the capacity copy's, as recorded) ``""``; ``archived_age``
  (time since that copy was made) is 0 for a file with none.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tiering.core.states import STATES, FileState
from tiering.policy.syntax import BOOL, DURATION, ID, NUMBER, SIZE, TEXT, TIME

TYPES = ("file", "dir", "symlink")
_CATALOG_DEFAULTS: dict[str, tuple[Any, pa.DataType]] = {
    "state": (FileState.RESIDENT, pa.string()),
    "tier": ("", pa.string()),
    "heat": (0.0, pa.float64()),
    "pinned": (False, pa.bool_()),
    "storage_class": ("", pa.string()),
}


@dataclass(frozen=True)
class FieldSpec:
    """One field: its kind, the augmented-batch column it reads and its Arrow type."""

    name: str
    kind: str
    column: str
    arrow_type: pa.DataType
    values: tuple[str, ...] = ()  # the only valid values, for text fields that have a fixed set


def _spec(name: str, kind: str, arrow_type: pa.DataType, column: str = "", values: tuple[str, ...] = ()) -> FieldSpec:
    return FieldSpec(name, kind, column or name, arrow_type, values)


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        _spec("path", TEXT, pa.binary()),
        _spec("name", TEXT, pa.binary()),
        _spec("suffix", TEXT, pa.binary()),
        _spec("dirname", TEXT, pa.binary()),
        _spec("depth", NUMBER, pa.int64()),
        _spec("type", TEXT, pa.string(), values=TYPES),
        _spec("size", SIZE, pa.int64()),
        _spec("blocks", NUMBER, pa.int64()),
        _spec("uid", NUMBER, pa.uint32()),
        _spec("gid", NUMBER, pa.uint32()),
        _spec("user", ID, pa.uint32(), "uid"),
        _spec("group", ID, pa.uint32(), "gid"),
        _spec("nlink", NUMBER, pa.uint32()),
        _spec("atime", TIME, pa.int64(), "atime_ns"),
        _spec("mtime", TIME, pa.int64(), "mtime_ns"),
        _spec("ctime", TIME, pa.int64(), "ctime_ns"),
        _spec("atime_age", DURATION, pa.float64()),
        _spec("mtime_age", DURATION, pa.float64()),
        _spec("ctime_age", DURATION, pa.float64()),
        _spec("heat", NUMBER, pa.float64()),
        _spec("state", TEXT, pa.string(), values=tuple(s.value for s in STATES)),  # plain text: shown with repr()
        _spec("tier", TEXT, pa.string()),
        _spec("pinned", BOOL, pa.bool_()),
        _spec("storage_class", TEXT, pa.string()),
        _spec("archived_age", DURATION, pa.float64()),
    )
}

# -- vectorized ------------------------------------------------------------------

_EMPTY = pa.scalar(b"", pa.binary())


def _path(batch: pa.RecordBatch) -> pa.Array:
    path = batch.column("path")
    return path if path.type == pa.binary() else pc.cast(path, pa.binary())


def _extract(batch: pa.RecordBatch, pattern: str) -> pa.Array:
    return pc.fill_null(pc.struct_field(pc.extract_regex(_path(batch), pattern), [0]), _EMPTY)


def _age(column: str) -> Callable[[pa.RecordBatch, int], pa.Array]:
    def age(batch: pa.RecordBatch, now: int) -> pa.Array:
        elapsed = pc.subtract(pa.scalar(now, pa.int64()), batch.column(column))
        return pc.divide(pc.cast(elapsed, pa.float64(), safe=False), 1e9)

    return age


def _catalog(name: str) -> Callable[[pa.RecordBatch, int], pa.Array]:
    default, arrow_type = _CATALOG_DEFAULTS[name]

    def column(batch: pa.RecordBatch, now: int) -> pa.Array:
        if name not in batch.schema.names:
            return pa.repeat(pa.scalar(default, arrow_type), batch.num_rows)
        return pc.fill_null(pc.cast(batch.column(name), arrow_type), pa.scalar(default, arrow_type))

    return column


#: Columns ``augment`` computes (or normalizes), by name.
DERIVED: dict[str, Callable[[pa.RecordBatch, int], pa.Array]] = {
    "path": lambda batch, now: _path(batch),
    "name": lambda batch, now: _extract(batch, r"(?s)(?P<n>[^/]*)\z"),
    "dirname": lambda batch, now: pc.replace_substring_regex(_path(batch), r"(?s)(^|/)[^/]*\z", "", max_replacements=1),
    "suffix": lambda batch, now: _extract(batch, r"(?s)[^/](?P<s>\.[^./]+)\z"),
    "depth": lambda batch, now: pc.add(pc.cast(pc.count_substring(_path(batch), "/"), pa.int64()), 1),
    "atime_age": _age("atime_ns"),
    "mtime_age": _age("mtime_ns"),
    "ctime_age": _age("ctime_ns"),
    "archived_age": lambda batch, now: _archived_age(batch, now),
    **{name: _catalog(name) for name in _CATALOG_DEFAULTS},
}


def _archived_age(batch: pa.RecordBatch, now: int) -> pa.Array:
    """Seconds since the capacity copy was made (``archived_at``); 0 for a file with none."""
    if "archived_at" not in batch.schema.names:
        return pa.repeat(pa.scalar(0.0), batch.num_rows)
    since = pc.cast(batch.column("archived_at"), pa.float64())
    return pc.fill_null(pc.subtract(pa.scalar(now / 1e9), since), 0.0)


def augment(batch: pa.RecordBatch | pa.Table, columns: Iterable[str], now: int) -> pa.RecordBatch | pa.Table:
    """``batch`` (a record batch or table) with the derived columns among ``columns`` added (or normalized in place).

    Only what ``columns`` names is computed, so a policy that never mentions
    ``suffix`` never pays for it. ``now`` is ns since the epoch. Columns that are
    already present and need no normalizing are left as they are.
    """
    for column in sorted(set(columns) & DERIVED.keys()):
        if column == "path" and batch.schema.field("path").type == pa.binary():
            continue
        values = DERIVED[column](batch, now)
        index = batch.schema.get_field_index(column)
        if index >= 0:
            batch = batch.set_column(index, column, values)
        else:
            batch = batch.append_column(column, values)
    return batch


# -- per row -----------------------------------------------------------------------


def _suffix(name: bytes) -> bytes:
    dot = name.rfind(b".")
    return name[dot:] if 0 < dot < len(name) - 1 else b""


def _row_path(row: Mapping[str, Any]) -> bytes:
    path = row["path"]
    return path.encode("utf-8", "surrogateescape") if isinstance(path, str) else bytes(path)


_ROW: dict[str, Callable[[Mapping[str, Any], int], Any]] = {
    "path": lambda row, now: _row_path(row),
    "name": lambda row, now: _row_path(row).rpartition(b"/")[2],
    "dirname": lambda row, now: _row_path(row).rpartition(b"/")[0],
    "suffix": lambda row, now: _suffix(_row_path(row).rpartition(b"/")[2]),
    "depth": lambda row, now: _row_path(row).count(b"/") + 1,
    "atime_age": lambda row, now: float(now - row["atime_ns"]) / 1e9,
    "mtime_age": lambda row, now: float(now - row["mtime_ns"]) / 1e9,
    "ctime_age": lambda row, now: float(now - row["ctime_ns"]) / 1e9,
    "archived_age": lambda row, now: now / 1e9 - row["archived_at"] if row.get("archived_at") is not None else 0.0,
}


def row_value(field: str, row: Mapping[str, Any], now: int) -> Any:
    """The value of ``field`` for one inventory row (a dict keyed like ``SCHEMA``)."""
    if field in _ROW:
        return _ROW[field](row, now)
    if field in _CATALOG_DEFAULTS:
        value = row.get(field)
        value = _CATALOG_DEFAULTS[field][0] if value is None else value
        return float(value) if field == "heat" else value
    value = row[FIELDS[field].column]
    return float(value) if FIELDS[field].arrow_type == pa.float64() else value


# -- users and groups --------------------------------------------------------------


def user_id(name: str) -> int | None:
    """The uid of user ``name``, or None when there is no such user."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def group_id(name: str) -> int | None:
    """The gid of group ``name``, or None when there is no such group."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


def id_name(field: str, number: int) -> str:
    """The user or group name of ``number`` (the number itself when unknown)."""
    try:
        return pwd.getpwuid(number).pw_name if field == "user" else grp.getgrgid(number).gr_name
    except (KeyError, OverflowError):
        return str(number)
