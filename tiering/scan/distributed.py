"""A scan spread over a Dask distributed cluster: ``tiering scan --executor dask://HOST:PORT``.

The workers must see the hot tier at the same path as the coordinator (a Dask
worker on each node that mounts the parallel filesystem), and the snapshot's
directory too: each worker writes its own files of the partitioned snapshot,
so no row travels back to the coordinator.

Balancing is work stealing by budget, coordinated here:

- The coordinator keeps the directories nobody is reading yet (at first, the
  root) and hands them out as tasks, shallowest first (the biggest subtrees),
  with up to two tasks per worker thread in flight.
- A task walks its directories depth first with a ``Walker``, like a scan
  process, until its time ``budget`` is spent; then it stops between two
  directories and returns the ones it has not read yet, which the coordinator
  queues again. So a huge subtree never pins one worker while the others idle:
  within a budget its unexplored directories are back in the queue. (One
  directory is read by one task: a directory's listing cannot be split.)
- Each worker thread keeps one ``PartitionedWriter`` for the whole scan (its
  own ``part-<id>.parquet`` in every partition it has rows for); at the end the
  coordinator has every worker close its writers and report the files and rows
  they hold, checks the rows against what the tasks counted, and writes the
  layout file. A worker lost mid-scan loses the rows it buffered: the counts
  disagree and the scan fails (``ListingError``) rather than miss rows.

The rows are those of a one-process scan (each directory is read exactly once,
by whichever task holds it); only their order within a partition differs.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tiering.core.errors import ListingError, UserError
from tiering.scan.results import ProgressCallback, ScanProgress, ScanSummary
from tiering.scan.walker import ErrorLog, Task, Walker

#: Seconds a task walks before it hands its unread directories back.
DEFAULT_BUDGET = 2.0


def scheduler_address(executor: str) -> str:
    """``tcp://HOST:PORT`` of ``dask://HOST:PORT`` (a ``UserError`` for anything else)."""
    parts = urlsplit(executor)
    if parts.scheme != "dask" or not parts.hostname or not parts.port:
        raise UserError(f"--executor {executor!r}: expected dask://HOST:PORT (a Dask scheduler) or 'threads'")
    return f"tcp://{parts.hostname}:{parts.port}"


def connect(executor: str, timeout: float = 10.0):
    """A ``distributed.Client`` to the scheduler ``executor`` names (``dask://HOST:PORT``)."""
    address = scheduler_address(executor)
    try:
        from distributed import Client
    except ImportError as exc:
        raise UserError("--executor dask:// needs Dask: pip install 'tiering[dask]'") from exc
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise UserError(f"cannot reach the Dask scheduler at {address}: {exc}") from None


@dataclass(frozen=True)
class TaskResult:
    """What one task did: the directories it left unread, its counters and its error log."""

    unread: list[Task]
    counters: tuple[int, ...]  # (files, dirs, symlinks, specials, bytes, errors), as ``Walker.counters``
    errors: ErrorLog


def scan_on_cluster(client, root: Path, directory: Path, buckets: int, *, batch_rows: int, threads: int = 0,
                    budget: float | None = None, progress: ProgressCallback | None = None) -> ScanSummary:
    """Scan ``root`` on the cluster ``client`` talks to into the partitioned snapshot ``directory`` (which
    exists, empty); returns the summary. The caller writes the layout file and renames the directory.
    ``budget``: seconds a task walks before handing back what it has not read (``DEFAULT_BUDGET``)."""
    from distributed import as_completed

    budget = DEFAULT_BUDGET if budget is None else budget
    root, directory = Path(os.path.abspath(root)), Path(os.path.abspath(directory))  # workers have other cwds
    started = time.monotonic()
    st = os.stat(root)
    scan_id = uuid.uuid4().hex
    unowned: deque[Task] = deque([Task(b"", st.st_dev, st.st_ino)])
    totals, errors = [0] * 6, ErrorLog()
    slots = 2 * max(1, sum(w.get("nthreads", 1) for w in client.scheduler_info(n_workers=-1)["workers"].values()))
    finished = as_completed(loop=client.loop)
    running, submitted = 0, []
    args = (scan_id, os.fsencode(root), str(directory), buckets, batch_rows, threads, budget)
    try:
        while unowned or running:
            while unowned and running < slots:
                count = max(1, len(unowned) // (slots - running))
                part = [unowned.popleft() for _ in range(min(count, len(unowned)))]
                submitted.append(client.submit(scan_task, *args, part, pure=False))
                finished.add(submitted[-1])
                running += 1
            future = next(finished)
            running -= 1
            result: TaskResult = future.result()
            future.release()
            submitted.remove(future)
            unowned.extend(result.unread)
            totals = [a + b for a, b in zip(totals, result.counters)]
            errors.merge(result.errors)
            if progress is not None:
                progress(ScanProgress(totals[0], totals[1], totals[4], errors.total, time.monotonic() - started))
        written = client.run(close_writers, scan_id)
    except BaseException:
        client.cancel(submitted)  # nothing more starts; then every worker lets go of its writers
        client.run(close_writers, scan_id, True)
        raise
    _keep_only(directory, written, totals)
    files, dirs, symlinks, specials, nbytes, _ = totals
    return ScanSummary(root=root, files=files, dirs=dirs, symlinks=symlinks, specials=specials, bytes=nbytes,
                       errors=dict(errors.counts), error_examples={k: tuple(v) for k, v in errors.examples.items()},
                       seconds=time.monotonic() - started)


def _keep_only(directory: Path, written: dict[str, tuple[int, list[str]]], totals: list[int]) -> None:
    """Check the workers' rows against the tasks' counts; remove any file no live writer owns (a lost
    worker's unfinished file)."""
    rows = sum(n for n, _ in written.values())
    if rows != totals[0] + totals[1] + totals[2]:
        raise ListingError(f"the scan's workers hold {rows:,} rows, their tasks counted "
                           f"{totals[0] + totals[1] + totals[2]:,}: a worker was lost mid-scan; scan again")
    owned = {Path(f) for _, files in written.values() for f in files}
    for file in directory.glob("bucket=*/*.parquet"):
        if file not in owned:
            file.unlink()


# -- on a worker ----------------------------------------------------------------------------------------------------

_writers: dict[tuple[str, int], object] = {}  # (scan id, thread id) -> PartitionedWriter
_writers_lock = threading.Lock()


def _writer(scan_id: str, directory: str, buckets: int):
    from tiering.scan.snapshot import PartitionedWriter

    key = (scan_id, threading.get_ident())
    with _writers_lock:
        if key not in _writers:
            _writers[key] = PartitionedWriter(Path(directory), buckets, part=f"part-{uuid.uuid4().hex}")
        return _writers[key]


def scan_task(scan_id: str, root: bytes, directory: str, buckets: int, batch_rows: int, threads: int,
              budget: float, tasks: list[Task]) -> TaskResult:
    """On a worker: walk ``tasks`` (and below) for about ``budget`` seconds, rows into this thread's writer;
    return the directories left unread."""
    from tiering.scan.batches import to_record_batch

    writer = _writer(scan_id, directory, buckets)
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walker = Walker(root_fd, batch_rows)
        stack = list(reversed(tasks))  # popped from the end: the first given is read first
        unread = _walk(walker, stack, threads, time.monotonic() + budget,
                       lambda raw: writer.write_batch(to_record_batch(raw)))
        final = walker.take()
        if final.rows:
            writer.write_batch(to_record_batch(final))
    finally:
        os.close(root_fd)
    return TaskResult(unread, walker.counters(), walker.errors)


def _walk(walker: Walker, stack: list[Task], threads: int, deadline: float, write: Callable) -> list[Task]:
    if threads:
        from tiering.scan.inflight import InFlight

        unread: list[Task] = []

        def between() -> None:  # past the budget: what is not started yet goes back (in-flight reads finish)
            if time.monotonic() >= deadline:
                unread.extend(stack)
                del stack[:]

        inflight = InFlight(walker, threads)
        try:
            for raw in inflight.drain(stack, between):
                write(raw)
        finally:
            inflight.close()
        return unread
    while stack:
        for raw in walker.scan(stack.pop(), stack):  # at least one directory a task, whatever the budget
            write(raw)
        if time.monotonic() >= deadline:
            break
    return stack


def close_writers(scan_id: str, abort: bool = False) -> tuple[int, list[str]]:
    """On every worker, at the end: close (and fsync) this process's writers of ``scan_id``; their rows and
    files. ``abort``: just close them (the coordinator removes the directory)."""
    with _writers_lock:
        mine = [_writers.pop(key) for key in [k for k in _writers if k[0] == scan_id]]
    rows, files = 0, []
    for writer in mine:
        writer.close()
        if not abort:
            writer.sync()
        rows += writer.rows
        files += [str(f) for f in writer.files]
    return rows, files
