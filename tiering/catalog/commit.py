"""Group commit: many threads' catalog writes, one durable transaction at a time.

The catalog commits durably (SQLite ``synchronous=FULL``, PostgreSQL
``synchronous_commit = on``): a commit that returned is on disk,
which is what lets the mover truncate a file on the strength of it. One fsync
per journal step would cap a mover at a few thousand steps a second, so
writers hand their statements to one committer thread, which runs everything
queued in one transaction, commits once, and only then wakes the writers. If
an item fails, the batch is redone with each item in its own SAVEPOINT, so the
failing item fails alone and the others still commit.
Latency per write stays one commit; throughput grows with concurrency. On a
server every statement would be a network round trip, so a batch is sent
pipelined (psycopg's pipeline mode): its statements go out without waiting,
values a writer needs back (a new journal id) are ``Pending`` until the batch's
results arrive, and the batch costs about one round trip plus the commit.

Writers on an event loop (the mover's actions) batch on the loop side
(``tiering.core.aio``): their items collect while the loop runs other
actions and go to a worker thread as one transaction, so a thread hand-off
is paid per batch, not per item, and the loop never waits on the fsync.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from tiering.catalog.backend import Connection
from tiering.core.aio import LoopBatcher, Outcomes, PerLoop, settle

Work = Callable[[Connection], Any]


class Pending:
    """A statement's result that arrives with the batch's results (a pipelined ``RETURNING``): its first
    row's first column (``shape`` "value"; None when no row came back), that row ("row"), or every row ("rows")."""

    def __init__(self, cursor: Any, shape: str = "value") -> None:
        self.cursor = cursor
        self.shape = shape

    def get(self) -> Any:
        rows = self.cursor.fetchall()
        self.cursor.close()
        if self.shape == "rows":
            return rows
        row = rows[0] if rows else None
        return row if self.shape == "row" or row is None else row[0]


def _pipelined(conn: Connection):
    """The connection's pipeline (statements sent without waiting for each answer), where it has one."""
    pipeline = getattr(conn, "pipeline", None)
    return pipeline() if pipeline is not None else contextlib.nullcontext()
_STOP = object()


class GroupCommitter:
    """Runs write functions on one connection, in batches, on its own thread."""

    def __init__(self, conn: Connection, max_batch: int = 512, *, begin: str = "BEGIN IMMEDIATE",
                 cursor_types: tuple[type, ...] = ()) -> None:
        self._conn = conn
        self._begin = begin  # SQLite's BEGIN IMMEDIATE takes the write lock up front; PostgreSQL's BEGIN
        self._cursor_types = cursor_types
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._conn_lock = threading.Lock()  # one transaction at a time: the thread's, or a loop's
        self._loop_batches: PerLoop[LoopBatcher[Work]] = PerLoop(lambda: LoopBatcher(self._transaction))
        self._thread = threading.Thread(target=self._run, name="catalog-commit", daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> Any:
        """Run ``work(conn)`` inside a transaction; return its result once committed."""
        future: Future = Future()
        self._queue.put((work, future))
        return future.result()

    async def submit_async(self, work: Work) -> Any:
        """``submit`` from an event loop: committed with the other items that loop has queued."""
        return await self._loop_batches.get().submit(work)

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
        for (_, future), (value, error) in zip(items, self._transaction([work for work, _ in items]), strict=True):
            settle(future, value, error)

    def _transaction(self, works: list[Work]) -> Outcomes:
        """Run ``works`` in one durable transaction; a (result, error) for each."""
        with self._conn_lock:
            conn = self._conn
            try:
                conn.execute(self._begin)
                try:
                    with _pipelined(conn):  # a server: the whole batch in one round trip
                        values = [work(conn) for work in works]
                    outcomes: Outcomes = [(self._value(value), None) for value in values]
                except Exception:  # some item failed: redo them one by one, so it fails alone
                    conn.execute("ROLLBACK")
                    conn.execute(self._begin)
                    outcomes = [self._isolated(work) for work in works]
                conn.execute("COMMIT")
            except BaseException as exc:  # the commit itself failed: nothing is durable
                try:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - SQLite may have rolled back already (a full disk), a
                    pass  # server's connection may be gone: either way the writers get exc
                return [(None, exc)] * len(works)
            return outcomes

    def _isolated(self, work: Work) -> tuple[Any, BaseException | None]:
        """Run one item inside its own SAVEPOINT: if it fails, only its own statements are undone."""
        conn = self._conn
        conn.execute("SAVEPOINT item")
        try:
            value = self._value(work(conn))
        except Exception as exc:
            conn.execute("ROLLBACK TO item")
            conn.execute("RELEASE item")
            return None, exc
        conn.execute("RELEASE item")
        return value, None


    def _value(self, value: Any) -> Any:
        """A cursor must not outlive this thread's use of the connection: results are values only."""
        if isinstance(value, Pending):
            return value.get()
        if isinstance(value, tuple) and any(isinstance(v, Pending) for v in value):
            return tuple(v.get() if isinstance(v, Pending) else v for v in value)
        if isinstance(value, self._cursor_types):
            value.close()
            return None
        return value
