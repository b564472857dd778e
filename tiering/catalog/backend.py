"""Which database a catalog lives in: a SQLite file (the default) or a PostgreSQL server.

``Catalog.open`` takes a path or a URL. A ``postgresql://`` (or ``postgres://``)
URL selects the server backend, imported only then (the ``postgres`` extra);
anything else is a SQLite file. Both backends hand the catalog the same
three things: a connection for reads, one for the group committer (writers
only; SQLite's under the writer lock, a server's beside other writers, file
by file under claims), and a bulk read of columns into Arrow. Their connections
take the catalog's SQL with ``?`` placeholders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from tiering.config.catalog_url import SCHEMES as PG_SCHEMES
from tiering.config.catalog_url import redact

if TYPE_CHECKING:
    import pyarrow as pa

class Connection(Protocol):
    """What the catalog's SQL runs on: ``sqlite3.Connection`` itself, or an adapter to it."""

    def execute(self, sql: str, args: Any = ()) -> Any: ...
    def executemany(self, sql: str, rows: Any) -> Any: ...

    @property
    def in_transaction(self) -> bool: ...


class Backend(Protocol):
    """One open catalog database (see the module docstring)."""

    name: str               # for messages: the file, or the URL without its password
    begin_sql: str          # how a write transaction starts
    claim_begin_sql: str | None  # a journal begin that claims its file (many writers), or None (one writer)
    now_sql: str            # the database's clock, in Unix seconds (heartbeats compare on one clock)
    operational: tuple[type[BaseException], ...]  # the database cannot be reached or written: a CatalogError
    cursor_types: tuple[type, ...]
    reader: Connection
    writer: Connection | None

    def schema_version(self) -> int: ...

    def columns(self, table: str, types: dict[str, pa.DataType]) -> pa.Table:
        """Every row of ``table``, the columns ``types`` names, typed so: the bulk read into Arrow,
        no Python object per row (``arrow.py``)."""
        ...
    def close(self) -> None: ...


def is_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names a catalog server rather than a SQLite file."""
    return isinstance(target, str) and urlsplit(target).scheme in PG_SCHEMES


def open_backend(target: str | os.PathLike[str], *, writer: bool, purpose: str) -> Backend:
    """Open the catalog database ``target`` names (a writer takes the writer lock and migrates)."""
    if is_url(target):
        from tiering.catalog.postgres import PostgresBackend

        return PostgresBackend.open(str(target), writer=writer, purpose=purpose)
    from tiering.catalog.sqlite import SqliteBackend

    return SqliteBackend.open(Path(target), writer=writer, purpose=purpose)


def writer_holder(target: str | os.PathLike[str]) -> dict | None:
    """Who holds the writer lock of the catalog ``target`` names now (pid, host, purpose, started), or None."""
    if is_url(target):
        from tiering.catalog.postgres import holder_of

        return holder_of(str(target))
    from tiering.catalog.lock import read_holder

    path = Path(target)
    return read_holder(path.with_name(path.name + ".lock"))
