"""The catalog: what tiering knows about each managed file, and what it was doing.

An embedded SQLite database (WAL, ``synchronous=FULL``) with three tables:
``files`` (state, capacity copy, identity at archive time, heat, pin),
``journal`` (every mover step, so ``recover`` can finish or roll back after a
crash) and ``runs``. One writer process at a time (``WriterLock``); any
number of readers.
"""

from tiering.catalog.db import Catalog, FileRecord, JournalEntry
from tiering.core.states import STATES
from tiering.catalog.lock import CatalogBusyError

__all__ = ["Catalog", "CatalogBusyError", "FileRecord", "JournalEntry", "STATES"]
