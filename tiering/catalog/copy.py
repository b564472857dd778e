"""Moving a catalog between backends, and exporting it for analysis.

``copy_catalog`` copies every row of ``runs``, ``files`` and ``journal`` from
one catalog to an empty one (SQLite to PostgreSQL or back), page by page in
primary-key order, one transaction per page, keeping journal ids. The source
is opened as a writer, so no mover changes it meanwhile. Then both sides are
read again and compared, table by table: the row count and a checksum over
every row (values as stored, so a float or an inode that changed on the way
shows). ``export_parquet`` writes one table to a Parquet file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tiering.catalog.db import Catalog
from tiering.catalog.records import FILE_COLUMNS
from tiering.catalog.schema import TABLES
from tiering.core.errors import CatalogError, UserError

#: Each table's columns, its first column its key (what pages and checksums are ordered by).
COLUMNS: dict[str, list[str]] = {
    "runs": ["id", "command", "pid", "host", "started_at", "ended_at", "summary"],
    "files": FILE_COLUMNS,
    "journal": ["id", "run_id", "action", "path", "tier", "object_key", "step", "status", "detail",
                "started_at", "ended_at"],
}
_PAGE = 5000


@dataclass(frozen=True)
class TableCheck:
    """One table after a copy: rows, and a checksum (the sum of the rows' sha256, mod 2**256)."""

    table: str
    rows: int
    checksum: str


def copy_catalog(source: str | os.PathLike[str], dest: str | os.PathLike[str],
                 progress: Callable[[str, int], None] | None = None) -> list[TableCheck]:
    """Copy the catalog ``source`` into the new or empty catalog ``dest`` and verify the copy.

    ``CatalogError`` when the copy does not match the source (counts or checksums); ``UserError`` when
    ``dest`` already has rows or names the source itself.
    """
    with Catalog.open(source, writer=True, purpose="catalog migrate") as src, \
            Catalog.open(dest, writer=True, purpose="catalog migrate") as dst:
        if src.name == dst.name:
            raise UserError(f"catalog migrate: {src.name} is both the source and the destination")
        filled = [t for t in TABLES if dst._read(f"SELECT 1 FROM {t} LIMIT 1")]
        if filled:
            raise UserError(f"catalog migrate: {dst.name} is not empty (its {', '.join(filled)} have rows); "
                            "expected a new or empty catalog")
        for table in TABLES:
            _copy_table(src, dst, table, progress)
        if dst.backend == "postgresql":  # journal ids were copied: the next begin must follow them
            dst._write(lambda conn: conn.execute(
                "SELECT setval(pg_get_serial_sequence('journal', 'id'), coalesce(max(id), 0) + 1, false) FROM journal"))
        theirs, ours = verify(src), verify(dst)
    if theirs != ours:
        bad = [f"{a.table}: {a.rows} rows {a.checksum[:12]} vs {b.rows} rows {b.checksum[:12]}"
               for a, b in zip(theirs, ours) if a != b]
        raise CatalogError(f"catalog migrate: the copy in {dst.name} differs from {src.name} ({'; '.join(bad)})")
    return ours


def _copy_table(src: Catalog, dst: Catalog, table: str, progress: Callable[[str, int], None] | None) -> None:
    cols = COLUMNS[table]
    insert = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"
    done = 0
    for page in pages(src, table):
        dst._write(lambda conn, page=page: conn.executemany(insert, page))
        done += len(page)
        if progress:
            progress(table, done)


def pages(catalog: Catalog, table: str, size: int = _PAGE) -> Iterator[list[tuple]]:
    """Every row of ``table`` in key order, a page at a time (keyset pages: no cursor held open)."""
    cols = COLUMNS[table]
    key = cols[0]
    select = f"SELECT {', '.join(cols)} FROM {table}"
    rows = catalog._read(f"{select} ORDER BY {key} LIMIT ?", (size,))
    while rows:
        yield [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]
        rows = catalog._read(f"{select} WHERE {key} > ? ORDER BY {key} LIMIT ?", (rows[-1][0], size))


def verify(catalog: Catalog) -> list[TableCheck]:
    """Each table's row count and checksum."""
    checks = []
    for table in TABLES:
        total, n = 0, 0
        for page in pages(catalog, table):
            for row in page:  # repr: exact for bytes, ints, floats and text alike
                total += int.from_bytes(hashlib.sha256(repr(row).encode()).digest(), "big")
            n += len(page)
        # A sum of the rows' digests: the same whatever order a server's collation lists text keys in.
        checks.append(TableCheck(table, n, f"{total % (1 << 256):064x}"))
    return checks


def export_parquet(source: str | os.PathLike[str], out: Path, table: str = "files") -> int:
    """Write ``table`` of the catalog ``source`` to the Parquet file ``out`` (atomically); its row count.

    ``files`` gets its columns' meaning back: ``pinned`` a bool, ``ino`` unsigned.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if table not in COLUMNS:
        raise UserError(f"catalog export: unknown table {table!r}; expected one of {', '.join(COLUMNS)}")
    with Catalog.open(source) as cat:
        data = cat.columns(table, {c: _arrow_type(table, c) for c in COLUMNS[table]})
    if table == "files":
        data = data.set_column(data.schema.get_field_index("pinned"), "pinned",
                               pc.not_equal(data.column("pinned").cast(pa.int64()), 0))
        data = data.set_column(data.schema.get_field_index("ino"), "ino",
                               data.column("ino").cast(pa.int64()).cast(pa.uint64(), safe=False))
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(data, tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return data.num_rows


_TEXT = {"state", "tier", "object_key", "storage_class", "checksum", "run_id", "action", "step", "status", "detail",
         "command", "host", "summary"}
_INTEGER = {"size", "mtime_ns", "ctime_ns", "ino", "pinned", "pid"}


def _arrow_type(table: str, column: str):
    import pyarrow as pa

    if column == "id":
        return pa.string() if table == "runs" else pa.int64()
    if column == "path":
        return pa.binary()
    if column in _TEXT:
        return pa.string()
    if column in _INTEGER:
        return pa.int64()
    return pa.float64()  # the times and the heat
