"""``Scan``: the inventory of a directory tree as a stream of Arrow record batches."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Self

import pyarrow as pa

from tiering.core.errors import UserError
from tiering.core.mounts import HOT_IO_MODES, hot_io
from tiering.scan.batches import to_record_batch
from tiering.scan.inflight import DEFAULT_THREADS, InFlight
from tiering.scan.pool import PROGRESS_EVERY, scan_with_workers
from tiering.scan.results import ProgressCallback, ScanProgress, ScanSummary
from tiering.scan.walker import MAX_BATCH_ROWS, ErrorLog, RawBatch, Task, Walker

#: Rows per record batch unless asked otherwise.
DEFAULT_BATCH_ROWS = 65536


def default_jobs() -> int:
    """Worker processes for a scan: one per available CPU, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0))))


class Scan:
    """Walk ``root`` and yield its inventory as ``pa.RecordBatch``es in
    ``tiering.core.inventory.SCHEMA``, each of at most ``batch_rows`` rows.

    Paths are relative to ``root``, exact bytes. Symlinks are recorded, never
    followed; sockets, fifos and devices are counted and skipped; ``.tiering``
    at the root is left out. Entries that vanish or cannot be read mid-scan are
    counted in the summary, never raised. ``jobs`` > 1 reads directories in that
    many worker processes (default: ``default_jobs()``); batch order is then
    unspecified. ``progress`` is called now and then with a ``ScanProgress``.

    ``io`` is the config's ``[hot] io``: "auto" (the default) decides by the
    filesystem ``root`` is on (``tiering.core.mounts.hot_io``). "inline" reads
    one directory at a time per worker, the fastest on a local disk;
    "threads" keeps ``threads`` directory reads in flight per worker
    (``tiering.scan.inflight``), for a networked filesystem where each call is
    a round trip. The rows are the same either way; ``io`` is what was chosen.

    Iterate it once, then read ``summary``. Use it as a context manager (or
    call ``close``) to stop the workers if you stop iterating early::

        with Scan(root) as scan:
            for batch in scan:
                ...
        print(scan.summary.files)
    """

    def __init__(self, root: str | os.PathLike[str], *, jobs: int | None = None,
                 batch_rows: int = DEFAULT_BATCH_ROWS, progress: ProgressCallback | None = None,
                 io: str = "auto", threads: int = DEFAULT_THREADS) -> None:
        if not 1 <= batch_rows <= MAX_BATCH_ROWS:
            raise ValueError(f"batch_rows must be within 1..{MAX_BATCH_ROWS}, not {batch_rows}")
        if io not in HOT_IO_MODES:
            raise ValueError(f"io must be one of {', '.join(HOT_IO_MODES)}, not {io!r}")
        self.root = Path(os.path.abspath(root))
        self.io = hot_io(io, self.root)  # "inline" or "threads"
        self.threads = max(1, threads) if self.io == "threads" else 0
        self.jobs = default_jobs() if jobs is None else max(1, jobs)
        self.batch_rows = batch_rows
        self._progress = progress
        self._counters: dict[int, tuple[int, ...]] = {}
        self._errors = ErrorLog()
        self._summary: ScanSummary | None = None
        self._started = 0.0
        self._batches: Iterator[pa.RecordBatch] | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if self._batches is not None:
            raise RuntimeError("a Scan can be iterated only once")
        self._batches = self._run()
        return self._batches

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the scan early (ends the worker processes); harmless when done."""
        if self._batches is not None:
            self._batches.close()  # type: ignore[attr-defined]

    @property
    def summary(self) -> ScanSummary:
        """Totals of the finished scan; an error to ask before it finished."""
        if self._summary is None:
            raise RuntimeError("the scan has not finished yet")
        return self._summary

    def _run(self) -> Iterator[pa.RecordBatch]:
        self._started = time.monotonic()
        root_fd = _open_root(self.root)
        try:
            st = os.fstat(root_fd)
            root_task = Task(b"", st.st_dev, st.st_ino)
            if self.jobs == 1:
                raws = self._scan_here(root_fd, root_task)
            else:
                raws = scan_with_workers(os.fsencode(self.root), root_task, self.jobs, self.batch_rows,
                                         self._report, self._errors, self.threads)
            with closing(raws):
                for raw in raws:
                    yield to_record_batch(raw)
        finally:
            os.close(root_fd)
        self._finish()

    def _scan_here(self, root_fd: int, root_task: Task) -> Iterator[RawBatch]:
        walker = Walker(root_fd, self.batch_rows)
        stack, last = [root_task], time.monotonic()

        def between() -> None:
            nonlocal last
            if time.monotonic() - last >= PROGRESS_EVERY:
                self._report(0, walker.counters())
                last = time.monotonic()

        if self.threads:
            inflight = InFlight(walker, self.threads)
            try:
                for raw in inflight.drain(stack, between):
                    self._report(0, walker.counters())
                    yield raw
                    last = time.monotonic()
            finally:
                inflight.close()
        while stack:
            for raw in walker.scan(stack.pop(), stack):
                self._report(0, walker.counters())
                yield raw
                last = time.monotonic()
            between()
        self._errors.merge(walker.errors)
        self._report(0, walker.counters())
        final = walker.take()
        if final.rows:
            yield final

    def _report(self, index: int, counters: tuple[int, ...]) -> None:
        self._counters[index] = counters
        if self._progress is not None:
            files, dirs, _, _, nbytes, errors = self._totals()
            self._progress(ScanProgress(files, dirs, nbytes, errors, time.monotonic() - self._started))

    def _totals(self) -> list[int]:
        return [sum(column) for column in zip(*self._counters.values())] or [0] * 6

    def _finish(self) -> None:
        files, dirs, symlinks, specials, nbytes, _ = self._totals()
        self._summary = ScanSummary(
            root=self.root, files=files, dirs=dirs, symlinks=symlinks, specials=specials, bytes=nbytes,
            errors=dict(self._errors.counts),
            error_examples={k: tuple(v) for k, v in self._errors.examples.items()},
            seconds=time.monotonic() - self._started,
        )


def _open_root(root: Path) -> int:
    try:
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"{root}: no such directory (the tree to scan)") from None
    except NotADirectoryError:
        raise UserError(f"{root}: not a directory (the tree to scan)") from None
    except PermissionError:
        raise UserError(f"{root}: permission denied (the tree to scan)") from None

