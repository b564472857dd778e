"""File events on the hot tier: heat for the catalog, written files for auto-archive.

The shape (STYLE.md, "Concurrency"): watchdog's observer thread calls
``EventIntake.dispatch``, which only appends ``(kind, path, time)`` to a
bounded deque, with no I/O and no decisions. ``Debouncer`` drains it every few
seconds on its own thread, turns paths into the catalog's relative bytes,
drops what the daemon's own mover caused (``OwnActions``), and writes the
batch of accesses with one ``Catalog.add_heat`` call.

What counts:

- an access is an ``open()`` (inotify ``IN_OPEN``, watchdog's
  ``FileOpenedEvent``), reads and writes alike, so heat works on noatime mounts
  and a file held open for a whole epoch counts from its first read; each open
  has exactly one close, so counting closes too would count it twice;
- a *write* is ``FileModifiedEvent`` (content changed, still open) or
  ``FileClosedEvent`` (closed after writing). ``created`` is never acted on:
  the writer may not be done. A rename (``FileMovedEvent``) counts as a write
  closed at its new name: writing to a temp name and renaming into place is
  how careful writers finish a file. Only a file closed after writing and then
  quiet for the configured time is offered to auto-archive (``PendingWrites``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable

from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)

from tiering.mover.executor import Task
from tiering.mover.ops import RESTORE_TMP_PREFIX
from tiering.mover.outcome import Outcome
from tiering.trace.schema import HOT
from tiering.trace.schema import OPEN as TRACE_OPEN
from tiering.trace.schema import WRITE as TRACE_WRITE

log = logging.getLogger("tiering.daemon")

#: The watchdog event types the observer asks inotify for. Closes without writing are not used, but
#: must be asked for: the kernel merges identical *consecutive* events, so without them a file read
#: ten times in a row would queue one IN_OPEN instead of ten.
WATCHED = [FileOpenedEvent, FileClosedNoWriteEvent, FileModifiedEvent, FileClosedEvent, FileMovedEvent]
OPENED, MODIFIED, CLOSED, MOVED = "opened", "modified", "closed", "moved"
#: At most this many accesses per file per batch reach the catalog (bounds write amplification).
MAX_COUNT_PER_BATCH = 64


class EventIntake(FileSystemEventHandler):
    """watchdog's handler: enqueue ``(kind, path, monotonic time)``; nothing else happens on its thread."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.queue: deque[tuple[str, str, float]] = deque()
        self.capacity = capacity
        self.dropped = 0  # events lost to a full queue; the periodic rescan covers them

    def dispatch(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in (OPENED, MODIFIED, CLOSED, MOVED):
            return
        if len(self.queue) >= self.capacity:
            self.dropped += 1
            return
        # A rename lands a finished file (write to a temp name, rename into place): its new name counts.
        path = event.dest_path if event.event_type == MOVED else event.src_path
        self.queue.append((event.event_type, os.fsdecode(path), time.monotonic()))


class OwnActions:
    """Paths the daemon's own mover is working on; their file events are not accesses.

    An event is the mover's when its path had an action running, or one that
    ended less than ``grace`` seconds before the event was queued (delivery lags a little).
    """

    def __init__(self, grace: float = 5.0) -> None:
        self.grace = grace
        self._busy: Counter[bytes] = Counter()
        self._ended: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def started(self, task: Task) -> None:
        with self._lock:
            self._busy[task.path] += 1

    def finished(self, task: Task, outcome: Outcome | None) -> None:
        with self._lock:
            self._busy[task.path] -= 1
            if self._busy[task.path] <= 0:
                del self._busy[task.path]
            self._ended[task.path] = time.monotonic()

    def caused(self, rel: bytes, at: float) -> bool:
        with self._lock:
            return rel in self._busy or self._ended.get(rel, float("-inf")) >= at - self.grace

    def prune(self) -> None:
        cutoff = time.monotonic() - 2 * self.grace
        with self._lock:
            self._ended = {p: t for p, t in self._ended.items() if t >= cutoff}


class PendingWrites:
    """Files written since they were last archived: (last write event time, closed since?)."""

    def __init__(self, limit: int = 1_000_000) -> None:
        self._files: dict[bytes, tuple[float, bool]] = {}
        self._lock = threading.Lock()
        self.limit = limit
        self.enabled = False  # set while auto-archive is on; off, nothing is noted

    def note(self, rel: bytes, at: float, closed: bool) -> None:
        if not self.enabled:
            return
        with self._lock:
            if rel in self._files or len(self._files) < self.limit:
                self._files[rel] = (at, closed)

    def due(self, quiet: float, now: float | None = None) -> list[bytes]:
        """Take the files closed after writing and quiet for ``quiet`` seconds."""
        now = time.monotonic() if now is None else now
        with self._lock:
            ready = [p for p, (at, closed) in self._files.items() if closed and now - at >= quiet]
            for rel in ready:
                del self._files[rel]
        return ready

    def __len__(self) -> int:
        return len(self._files)


class Debouncer:
    """Drains an ``EventIntake`` every ``period`` seconds on its own thread; see the module docstring."""

    def __init__(self, root: str, intake: EventIntake, own: OwnActions, record_heat: Callable[[list[bytes]], None],
                 writes: PendingWrites, period: float) -> None:
        self.root = root.rstrip("/") + "/"
        self.intake, self.own, self.record_heat, self.writes, self.period = intake, own, record_heat, writes, period
        self._seen: set[bytes] = set()  # paths with accesses since the last rescan (it skips those)
        self._seen_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tiering-debouncer", daemon=True)
        #: Where the accesses and writes counted also go, if anywhere (a ``tiering.trace.log.TraceLog``).
        self.trace = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after one last flush."""
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(self.period):
            self._safe_flush()
        self._safe_flush()

    def _safe_flush(self) -> None:
        try:
            self.flush()
        except Exception:  # a failing catalog write must not kill event intake; the error is logged
            log.exception("heat: could not record a batch of file events")

    def flush(self) -> int:
        """Move what is queued now into the catalog and the pending writes; returns accesses recorded."""
        counts: Counter[bytes] = Counter()
        traced: list[tuple[str, bytes, float]] = []
        for _ in range(len(self.intake.queue)):
            kind, path, at = self.intake.queue.popleft()
            rel = self.relative(path)
            if rel is None or self.own.caused(rel, at):
                continue
            if kind == OPENED:
                counts[rel] += 1
            else:
                self.writes.note(rel, at, closed=kind != MODIFIED)
            if self.trace is not None and kind != MODIFIED:  # a write is traced once: when closed (or renamed)
                traced.append((TRACE_OPEN if kind == OPENED else TRACE_WRITE, rel, at))
        self.own.prune()
        if traced:
            self._trace(traced)
        if counts:
            self.record_heat([p for p, n in counts.items() for _ in range(min(n, MAX_COUNT_PER_BATCH))])
            with self._seen_lock:
                if len(self._seen) < 1_000_000:
                    self._seen.update(counts)
        return sum(counts.values())

    def _trace(self, traced: list[tuple[str, bytes, float]]) -> None:
        """Record accesses (kind, path, monotonic time) in the trace, with each file's size and wall-clock time."""
        offset = time.time_ns() - int(time.monotonic() * 1e9)
        sizes: dict[bytes, int] = {}
        for _, rel, _ in traced:
            if rel not in sizes:
                try:
                    sizes[rel] = os.lstat(os.fsencode(self.root) + rel).st_size
                except OSError:  # gone since: the access still happened
                    sizes[rel] = 0
        for kind in (TRACE_OPEN, TRACE_WRITE):
            rows = [(rel, at) for k, rel, at in traced if k == kind]
            if rows:
                self.trace.record(kind, [r for r, _ in rows], [sizes[r] for r, _ in rows], HOT,
                                  [offset + int(at * 1e9) for _, at in rows])

    def take_seen(self) -> set[bytes]:
        """Paths with accesses counted since the last call (for the rescan), and start afresh."""
        with self._seen_lock:
            seen, self._seen = self._seen, set()
        return seen

    def relative(self, path: str) -> bytes | None:
        """The catalog's path for an event's path; None for what the daemon ignores."""
        if not path.startswith(self.root):
            return None
        rel = os.fsencode(path[len(self.root):])
        if rel == b".tiering" or rel.startswith(b".tiering/") or os.path.basename(rel).startswith(
                RESTORE_TMP_PREFIX.encode()):
            return None
        return rel
