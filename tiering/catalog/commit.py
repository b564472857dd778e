"""Group commit: many threads' catalog writes, one durable transaction at a time.

The catalog runs with ``synchronous=FULL``: a commit that returned is on disk,
which is what lets the mover truncate a file on the strength of it. One fsync
per journal step would cap a mover at a few thousand steps a second, so
writers hand their statements to one committer thread, which runs everything
queued in one transaction, commits once, and only then wakes the writers. If
an item fails, the batch is redone with each item in its own SAVEPOINT, so the
failing item fails alone and the others still commit.
Latency per write stays one commit; throughput grows with concurrency.

Writers on an event loop (the mover's actions) skip the thread: their items
collect while the loop runs other actions, and one commit of all of them runs
in the loop itself when the loop next gets to it. That costs the loop one
fsync's pause per batch, and saves two thread hand-offs per item, which for
small files cost more than the fsync.
"""

from __future__ import annotations

import asyncio
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
        self._conn_lock = threading.Lock()  # one transaction at a time: the thread's, or a loop's
        self._loop_items: dict[asyncio.AbstractEventLoop, list] = {}  # per loop: items for its next commit
        self._thread = threading.Thread(target=self._run, name="catalog-commit", daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> Any:
        """Run ``work(conn)`` inside a transaction; return its result once committed."""
        future: Future = Future()
        self._queue.put((work, future))
        return future.result()

    async def submit_async(self, work: Work) -> Any:
        """``submit`` from an event loop: committed in the loop with the other items it has queued."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        items = self._loop_items.get(loop)
        if items is None:  # the first item since the last commit: commit once the loop gets round to it
            items = self._loop_items[loop] = []
            loop.call_soon(self._commit_loop_items, loop)
        items.append((work, future))
        return await future

    def _commit_loop_items(self, loop: asyncio.AbstractEventLoop) -> None:
        self._commit(self._loop_items.pop(loop))

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
        with self._conn_lock:
            self._commit_locked(items)

    def _commit_locked(self, items: list[tuple[Work, Future]]) -> None:
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                results = [(future, _no_cursor(work(conn)), None) for work, future in items]
            except Exception:  # some item failed: redo them one by one, so it fails alone
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
                results = [self._isolated(work, future) for work, future in items]
            conn.execute("COMMIT")
        except BaseException as exc:  # the commit itself failed: nothing is durable
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for _, future in items:
                _resolve(future, None, exc)
            return
        for future, value, error in results:
            _resolve(future, value, error)

    def _isolated(self, work: Work, future: Future) -> tuple[Future, Any, BaseException | None]:
        """Run one item inside its own SAVEPOINT: if it fails, only its own statements are undone."""
        conn = self._conn
        conn.execute("SAVEPOINT item")
        try:
            value = _no_cursor(work(conn))
        except Exception as exc:
            conn.execute("ROLLBACK TO item")
            conn.execute("RELEASE item")
            return future, None, exc
        conn.execute("RELEASE item")
        return future, value, None


def _resolve(future, value: Any, error: BaseException | None) -> None:
    """Hand a result to its writer (a thread's or a loop's future), unless it stopped waiting."""
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


def _no_cursor(value: Any) -> Any:
    """A cursor must not outlive this thread's use of the connection: results are values only."""
    if isinstance(value, sqlite3.Cursor):
        value.close()
        return None
    return value
