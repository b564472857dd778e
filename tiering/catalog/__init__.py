"""The catalog: what tiering knows about each managed file, and what it was doing.

Four tables: ``files`` (state, capacity copy, identity at archive time, heat,
pin), ``journal`` (every mover step, so ``recover`` can finish or roll back
after a crash), ``runs`` (with a heartbeat) and ``claims`` (which action holds
which file, with many writers). Two backends behind one ``Catalog``: an embedded
SQLite file (WAL, ``synchronous=FULL``), the default, and a PostgreSQL server
for many nodes (``[catalog] url = "postgresql://..."``; ``tiering.catalog.postgres``).
On SQLite one writer process at a time (``WriterLock``); on a server many
writers at once, each action claiming its file (``claims``, ``db``) and one
policy cycle at a time (an advisory lock); any number of readers.
"""

from tiering.catalog.db import Catalog, FileRecord, JournalEntry
from tiering.core.states import STATES
from tiering.catalog.lock import CatalogBusyError

__all__ = ["Catalog", "CatalogBusyError", "FileRecord", "JournalEntry", "STATES"]
