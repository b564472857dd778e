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

The SQLite driver runs in a child process of its own, streaming Arrow IPC back
(``sqlite_batches``): it carries its own copy of SQLite, and two copies of SQLite
in one process corrupt a database (sqlite.org/howtocorrupt.html, 2.2.1). POSIX
locks belong to a process, so when the driver's copy closes its file descriptors
it drops every lock the process holds on the catalog, ``sqlite3``'s included:
another process may then checkpoint and truncate the WAL under this process's
open read transaction, or under its writer (measured: a ``wal_checkpoint(TRUNCATE)``
that an open reader holds back goes through once the driver has read in the
same process; tests/test_catalog_scale.py).

Ten million rows of ``files`` into ``state_table`` on this machine (warm cache): SQLite
19 s and 1.6 GiB peak RSS through ADBC, batch by batch, against 40 s and 5.9 GiB row by row;
PostgreSQL 12 s and 1.4 GiB.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from tiering.core.errors import CatalogError

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

    try:
        import adbc_driver_sqlite  # noqa: F401 - only whether it is there
    except ImportError:
        return _rows_to_arrow(reader, table, types)
    return pa.Table.from_batches(list(sqlite_batches(path, table, types, 1 << 20)), schema=empty(types).schema)


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


def sqlite_batches(path: Path, table: str, types: dict[str, pa.DataType],
                   batch_rows: int) -> Iterator[pa.RecordBatch]:
    """``sqlite_columns`` as a stream of batches of about ``batch_rows`` rows, one read transaction (a
    consistent view), read by ADBC in a child process (see the module docstring) and streamed back as Arrow
    IPC; only a batch or two is in memory at once. Without ADBC, keyset pages of ``sqlite3`` rows here
    (``types`` must then start with the table's key, ``path``)."""
    import pyarrow as pa

    try:
        import adbc_driver_sqlite  # noqa: F401 - only whether it is there
    except ImportError:
        yield from _row_pages(path, table, types, batch_rows)
        return
    schema = empty(types).schema
    child = subprocess.Popen(
        [sys.executable, "-P", "-c", _CHILD, str(path), table, schema.serialize().to_pybytes().hex(), str(batch_rows)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env())
    try:
        try:
            yield from pa.ipc.open_stream(child.stdout)
        except pa.ArrowInvalid:  # the child wrote nothing: it failed before its first batch (said below)
            pass
        status, why = child.wait(), child.stderr.read().decode(errors="replace").strip()
        if status:
            raise CatalogError(f"catalog {path} cannot be read: {why.splitlines()[-1] if why else status}")
    finally:
        if child.poll() is None:  # stopped early: the reader goes
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()


_CHILD = "import sys; from tiering.catalog.arrow import export_batches; export_batches(*sys.argv[1:])"
_PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def _child_env() -> dict[str, str]:
    env = dict(os.environ)  # the child imports this package from wherever this process did
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_PARENT, env.get("PYTHONPATH")]))
    return env


def export_batches(path: str, table: str, schema_hex: str, batch_rows: str) -> None:
    """In the child: ``table``'s columns (as the serialized ``schema`` names and types them) read by ADBC's
    SQLite driver, written to stdout as an Arrow IPC stream."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from adbc_driver_sqlite import dbapi

    schema = pa.ipc.read_schema(pa.py_buffer(bytes.fromhex(schema_hex)))
    select = ", ".join(f"{f.name} IS NULL, coalesce({f.name}, {_zero(f.type)})" for f in schema)
    with dbapi.connect(f"file:{quote(path)}?mode=ro") as conn, conn.cursor() as cur, \
            pa.ipc.new_stream(sys.stdout.buffer, schema) as out:
        cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": batch_rows})
        cur.execute(f"SELECT {select} FROM {table}")
        for raw in cur.fetch_record_batch():
            columns = [pc.if_else(pc.equal(raw.column(2 * i), 1), pa.scalar(None, f.type),
                                  raw.column(2 * i + 1).cast(f.type)) for i, f in enumerate(schema)]
            out.write_batch(pa.record_batch(columns, schema=schema))


def _row_pages(path: Path, table: str, types: dict[str, pa.DataType],
               batch_rows: int) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    names = list(types)
    key = names[0]
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        after = b""
        while rows := reader.execute(f"SELECT {', '.join(names)} FROM {table} WHERE {key} > ? "
                                     f"ORDER BY {key} LIMIT ?", (after, batch_rows)).fetchall():
            cols = list(zip(*rows))
            yield pa.record_batch([pa.array(col, t) for col, t in zip(cols, types.values())], names=names)
            after = rows[-1][0]
    finally:
        reader.close()


def postgres_batches(url: str, table: str, types: dict[str, pa.DataType],
                     batch_rows: int) -> Iterator[pa.RecordBatch]:
    """``postgres_columns`` as a stream: the binary COPY decoded batch by batch (the driver cuts batches by
    bytes, hinted from ``batch_rows`` and an estimate of a row's width; each is cut to ``batch_rows`` here)."""
    import pyarrow as pa
    from adbc_driver_postgresql import dbapi

    schema = empty(types).schema
    with dbapi.connect(url) as conn, conn.cursor() as cur:
        hint = batch_rows * 64  # ~64 bytes a row of file state
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(hint)})
        cur.execute(f"SELECT {', '.join(types)} FROM {table}")
        for raw in cur.fetch_record_batch():
            batch = pa.record_batch([raw.column(i).cast(t) for i, t in enumerate(types.values())], schema=schema)
            for start in range(0, batch.num_rows, batch_rows):  # the hint is in bytes: cut to rows as promised
                yield batch.slice(start, batch_rows)


def empty(types: dict[str, pa.DataType]) -> pa.Table:
    import pyarrow as pa

    return pa.table({name: pa.array([], type_) for name, type_ in types.items()})
