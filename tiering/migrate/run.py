"""The coordinator of a migration: list, join, hand out, count; delete last, and only if clean.

Plan then apply, streamed: the two listings are joined in key order into
small ``Candidate`` values that the executor's workers decide on and copy; the
destination-only files are spooled to a temp file. ``delete`` removes the
spooled files only when both listings reached their natural end with every
folder read (``Listing.complete``: a listing cut short would make files the
source still has look destination-only) and every copy finished without a
failure; otherwise it deletes nothing and says why in ``not_deleted``
(rclone's "not deleting files as there were IO errors"). A listing that
raises stops the run (its exit status: 3 for a tier that cannot be reached).
Every request to a store side holds a slot of its endpoint's concurrency
limiter (``stores.limiter``): under a SlowDown storm fewer are in flight than
``jobs`` allows; the result's summary says where each limit ended.
``cancel`` (set from a SIGINT/SIGTERM handler) starts nothing new and deletes
nothing; the result says ``interrupted``. Library code never prints: results
go to ``on_item`` and ``progress`` callbacks, and come back as a
``MigrateResult``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from tiering.core.aio import run_blocking
from tiering.core.errors import PathError, UserError
from tiering.migrate.endpoints import check_apart
from tiering.migrate.listing import Candidate, Filter, Listing, RemovalSpool, join
from tiering.migrate.result import ItemResult, MigrateResult
from tiering.migrate.transfer import Job, Transfer, close_sides, sides_for
from tiering.mover.executor import Executor, Progress, ThreadExecutor, drive
from tiering.stores.limiter import limits


def migrate(job: Job, *, jobs: int = 16, delete: bool = False, executor: Executor | None = None,
            progress: Callable[[Progress], None] | None = None,
            on_item: Callable[[ItemResult], None] | None = None,
            cancel: threading.Event | None = None) -> MigrateResult:
    """Make ``job.dst`` hold every file of ``job.src`` that passes ``job.filter``, verified.

    With ``delete``, then remove destination files the source does not have
    (filters protect what they leave out), only if both listings completed
    and nothing failed. Bad input raises ``UserError`` before anything is
    written. Once ``cancel`` is set (or on ``KeyboardInterrupt``) no new file
    starts; the result counts what was done and is ``interrupted``.
    """
    check_apart(job.src, job.dst)
    executor = executor or ThreadExecutor()
    job = replace(job, bwlimit=job.bwlimit / executor.processes)
    if not isinstance(executor, ThreadExecutor):  # workers elsewhere: secrets travel as their references only
        job = replace(job, src=job.src.for_workers(), dst=job.dst.for_workers())
    sides = sides_for(job)
    try:
        _check_source(sides.src, job)
        if sides.dst.kind == "local" and not job.dry_run:
            _prepare(sides.dst, job)
        result = _run(job, sides, jobs, delete, executor, progress, on_item, cancel or threading.Event())
        if sides.dst.kind == "local" and not job.dry_run:
            sides.dst.finish()
        return result
    finally:
        close_sides(job)


def _check_source(src, job: Job) -> None:
    if src.kind == "local" and not src.root.is_dir():
        raise UserError(f"source {job.src.name}: no such folder")


def _prepare(dst, job: Job) -> None:
    try:
        dst.prepare()
    except OSError as exc:
        raise UserError(f"destination {job.dst.name}: cannot write there: {exc.strerror or exc}") from None
    except PathError as exc:
        raise UserError(f"destination {job.dst.name}: {exc}") from None


def _run(job: Job, sides, jobs: int, delete: bool, executor: Executor, progress, on_item,
         cancel: threading.Event) -> MigrateResult:
    result = MigrateResult(dry_run=job.dry_run)
    start = time.monotonic()
    spool = RemovalSpool() if delete else None
    totals = _Totals(sides.src, job.filter) if progress else None
    listings = (Listing("source", sides.src.list()), Listing("destination", sides.dst.list()))
    stop = lambda: bool(result.stopped) or cancel.is_set()  # noqa: E731
    try:
        report = _reporter(result, start, totals, progress, on_item)
        items = plan_items(iter(listings[0]), iter(listings[1]), job.filter, spool, result)
        transfer = Transfer(job)
        try:
            if isinstance(executor, ThreadExecutor) and not job.bwlimit and "store" in (sides.src.kind, sides.dst.kind):
                # Here, to or from a store, without a bandwidth limit (its token bucket sleeps): many files in
                # flight on one event loop. Local-to-local copies block anyway, so they stay on plain threads.
                run_blocking(drive(transfer.call_async, items, jobs=jobs, on_result=report, stop=stop))
            else:
                for item in executor.map(transfer, items, jobs=jobs, stop=stop):
                    report(item)
            if spool is not None:
                _delete(result, spool, listings, executor, transfer, jobs, report, stop, cancel)
        except KeyboardInterrupt:  # a second Ctrl-C, or no handler that sets ``cancel``
            cancel.set()
        if cancel.is_set():
            result.interrupted = True
            result.stopped = result.stopped or "interrupted: the files already started finished; no new ones started"
            if spool is not None and not result.not_deleted:
                result.not_deleted = "not deleting any files at the destination: the run was interrupted"
    finally:
        if spool is not None:
            spool.close()
        if totals is not None:
            totals.stop()
    result.seconds = time.monotonic() - start
    result.limits = tuple(s for s in limits() if s.ceiling)  # (this process's: a cluster's workers keep their own)
    return result


def _delete(result: MigrateResult, spool: RemovalSpool, listings: tuple[Listing, Listing], executor, transfer,
            jobs: int, report, stop, cancel: threading.Event) -> None:
    why = _why_not_delete(result, spool, listings, cancel)
    if why:
        # A listing cut short or a run stopped early may have spooled only some of the extras: no count then.
        known = all(listing.complete for listing in listings) and not cancel.is_set()
        result.not_deleted = f"not deleting {f'{spool.count:,}' if known else 'any'} files at the destination: {why}"
    elif spool.count:
        for item in executor.map(transfer, iter(spool), jobs=jobs, stop=stop):
            report(item)


def _why_not_delete(result: MigrateResult, spool: RemovalSpool, listings: tuple[Listing, Listing],
                    cancel: threading.Event) -> str:
    """Why the spooled files must stay ("" : they may go). Listings first: they decide what the spool holds."""
    for listing in listings:
        if not listing.complete:
            return f"the {listing.side} listing did not complete ({listing.problem or 'stopped early'})"
    if cancel.is_set():
        return "the run was interrupted"
    if not spool.count:
        return ""
    if result.failed or result.stopped:
        return "the run had errors"
    if result.copied + result.skipped + result.excluded == 0:
        return "the source has no files (a mistyped SRC?)"
    return ""


def plan_items(src: Iterator, dst: Iterator, filt: Filter, spool: RemovalSpool | None,
               result: MigrateResult) -> Iterator[Candidate | ItemResult]:
    """What the workers get: a ``Candidate`` per source file that passes the filters, listing failures as-is.

    A listing failure that stops the run (``stop``) ends the plan: nothing
    after it is handed out.
    """
    for s, d in join(src, dst):
        if isinstance(s, ItemResult):
            yield s
            if s.fatal:
                return
        elif s is None:
            if spool is not None and filt.by_name_size(d.key, d.size):
                spool.add(d)
        elif not filt.by_name_size(s.key, s.size) or (
                s.mtime_ns is not None and filt.needs_age and not filt.age_ok(s.mtime_ns)):
            result.excluded += 1
        else:
            yield Candidate(s.key, s.size, s.mtime_ns, d.size if d else None, d.mtime_ns if d else None)


def _reporter(result: MigrateResult, start: float, totals, progress, on_item) -> Callable[[ItemResult], None]:
    def report(item: ItemResult) -> None:
        result.add(item)
        if on_item:
            on_item(item)
        if progress:
            files = totals.files() if totals else None
            progress(Progress(result.files, files, result.bytes, None, result.failed, time.monotonic() - start))

    return report


class _Totals:
    """Counts the source's files and bytes on a side thread, so a progress bar can show an ETA."""

    def __init__(self, src, filt: Filter) -> None:
        self._stopping = threading.Event()
        self._files = 0
        self._finished = False
        self._thread = threading.Thread(target=self._count, args=(src, filt), name="migrate-count", daemon=True)
        self._thread.start()

    def _count(self, src, filt: Filter) -> None:
        try:
            for entry in src.list():
                if self._stopping.is_set():
                    return
                if not isinstance(entry, ItemResult) and filt.by_name_size(entry.key, entry.size):
                    self._files += 1
            self._finished = True
        except Exception:  # noqa: BLE001 - only the ETA is lost; the run itself reports listing errors
            return

    def files(self) -> int | None:
        """The source's file count once it is known (bytes are not: skipped files move none)."""
        return self._files if self._finished else None

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
