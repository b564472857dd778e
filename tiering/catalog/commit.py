"""Group commit: many threads' catalog writes, one durable transaction at a time.

The catalog runs with ``synchronous=FULL``: a commit that returned is on disk,
which is what lets the mover truncate a file on the strength of it. One fsync
per journal step would cap a mover at a few thousand steps a second, so
writers hand their statements to one committer thread, which runs everything
queued in one transaction (each item in its own SAVEPOINT, so one failing item
does not undo the others), commits once, and only then wakes the writers.
Latency per write stays one commit; throughput grows with concurrency.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

Work = Callable[[sqlite3.Connection], Any]
_STOP = object()


class GroupCommitter:
    """Runs write functions on one connection, in batches, on its own thread."""

    def __init__(self, conn: sqlite3.Connection, max_batch: int = 512) -> None:
        self._conn = conn
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="catalog-commit", daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> Any:
        """Run ``work(conn)`` inside a transaction; return its result once committed."""
        future: Future = Future()
        self._queue.put((work, future))
        return future.result()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = _STOP in batch
            items = [item for item in batch if item is not _STOP]
            if items:
                self._commit(items)
            if stop:
                return

    def _commit(self, items: list[tuple[Work, Future]]) -> None:
        results: list[tuple[Future, Any, BaseException | None]] = []
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for work, future in items:
                conn.execute("SAVEPOINT item")
                try:
                    value = work(conn)
                    if isinstance(value, sqlite3.Cursor):
                        # A cursor must not outlive this thread's use of the connection.
                        value.close()
                        value = None
                    conn.execute("RELEASE item")
                    results.append((future, value, None))
                except Exception as exc:  # this item fails alone
                    conn.execute("ROLLBACK TO item")
                    conn.execute("RELEASE item")
                    results.append((future, None, exc))
            conn.execute("COMMIT")
        except BaseException as exc:  # the commit itself failed: nothing is durable
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _, future in items:
                future.set_exception(exc)
            return
        for future, value, error in results:
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
