"""Bulk reads of catalog columns into Arrow, with no Python object per row, on both backends.

Both go through ADBC drivers, which fill Arrow buffers in C:

- PostgreSQL: ``adbc-driver-postgresql`` runs the query as ``COPY ... TO STDOUT
  (FORMAT binary)`` and decodes that stream into Arrow. (psycopg's binary COPY
  would hand Python one tuple per row; ``fetchall`` the same.)
- SQLite: ``adbc-driver-sqlite`` steps the statement in C. SQLite has no column
  types, so that driver guesses each column's type from the first rows, and a
  column that starts with NULLs is guessed wrong. So every nullable column is
  read as two that are never NULL (``x IS NULL``, ``coalesce(x, <zero>)``) and
  put back together here with a validity mask. Without the driver installed,
  rows are read through ``sqlite3`` (the slow path, one tuple per row).

On a million rows (this machine) the SQLite read takes ~1.2 s instead of ~4.2 s.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    import pyarrow as pa


def _zero(type_: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_binary(type_):
        return "X''"
    if pa.types.is_string(type_):
        return "''"
    return "0.0" if pa.types.is_floating(type_) else "0"


def sqlite_columns(path: Path, reader: sqlite3.Connection, table: str, types: dict[str, pa.DataType]) -> pa.Table:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        from adbc_driver_sqlite import dbapi
    except ImportError:
        return _rows_to_arrow(reader, table, types)
    select = ", ".join(f"{c} IS NULL, coalesce({c}, {_zero(t)})" for c, t in types.items())
    with dbapi.connect(f"file:{quote(str(path))}?mode=ro") as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {select} FROM {table}")
        raw = cur.fetch_arrow_table()
    if raw.num_rows == 0:
        return empty(types)
    out = {}
    for i, (name, type_) in enumerate(types.items()):
        values = raw.column(2 * i + 1).cast(type_)
        out[name] = pc.if_else(pc.equal(raw.column(2 * i), 1), pa.scalar(None, type_), values)
    return pa.table(out)


def _rows_to_arrow(reader: sqlite3.Connection, table: str, types: dict[str, pa.DataType]) -> pa.Table:
    import pyarrow as pa

    rows = reader.execute(f"SELECT {', '.join(types)} FROM {table}").fetchall()
    cols = list(zip(*rows)) or [()] * len(types)
    return pa.table({name: pa.array(col, type_) for (name, type_), col in zip(types.items(), cols)})


def postgres_columns(url: str, table: str, types: dict[str, pa.DataType]) -> pa.Table:
    import pyarrow as pa
    from adbc_driver_postgresql import dbapi

    with dbapi.connect(url) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {', '.join(types)} FROM {table}")
        raw = cur.fetch_arrow_table()
    if raw.num_rows == 0:
        return empty(types)
    return pa.table({name: raw.column(i).cast(type_) for i, (name, type_) in enumerate(types.items())})


def empty(types: dict[str, pa.DataType]) -> pa.Table:
    import pyarrow as pa

    return pa.table({name: pa.array([], type_) for name, type_ in types.items()})
