"""The catalog: what tiering knows about each managed file, and what it was doing.

Three tables: ``files`` (state, capacity copy, identity at archive time, heat,
pin), ``journal`` (every mover step, so ``recover`` can finish or roll back
after a crash) and ``runs``. Two backends behind one ``Catalog``: an embedded
SQLite file (WAL, ``synchronous=FULL``), the default, and a PostgreSQL server
for many nodes (``[catalog] url = "postgresql://..."``; ``tiering.catalog.postgres``).
One writer process at a time (``WriterLock``, or an advisory lock on the
server); any number of readers.
"""

from tiering.catalog.db import Catalog, FileRecord, JournalEntry
from tiering.core.states import STATES
from tiering.catalog.lock import CatalogBusyError

__all__ = ["Catalog", "CatalogBusyError", "FileRecord", "JournalEntry", "STATES"]
