"""A progress bar on stderr for terminals, drawn by rich: bytes (or files), rate, ETA.

The bar measures bytes when the run knows how many it will move, files when
it does not (``migrate`` while it is still counting, ``restore`` without
sizes). A file that moved fewer bytes than expected (already archived, a
no-op, skipped or failed) still counts as done: the last frame of a run that
went through every file reads 100 %. Sizes and rates use the binary units
of every other line (``tiering.core.units``); the ETA comes from the average rate
so far and reads ``--`` until there is one, never ``0s`` while work remains.
While requests go to a store, the line ends with its endpoint's concurrency
limit (``limit 3/16``: cut to 3 of 16 by the store's pushback; ``limit 8``:
fixed), read from ``stores.limiter`` as the line is drawn.
"""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TextColumn
from rich.text import Text

from tiering.core.states import FileState
from tiering.mover.executor import Progress as RunProgress
from tiering.core.units import format_elapsed, format_rate, format_size
from tiering.stores.limiter import LimitState, limits


class _Counts(ProgressColumn):
    """``12/20 files  1.2GiB/2GiB  179MiB/s  ETA 5.0s`` (with ``, 1 failed`` when one did)."""

    def render(self, task: Task) -> Text:
        p: RunProgress | None = task.fields.get("run")
        if p is None:
            return Text("")
        files = f"{p.files_done:,}/{p.files_total:,} files" if p.files_total is not None else f"{p.files_done:,} files"
        sizes = format_size(p.bytes_done) + (f"/{format_size(p.bytes_total)}" if p.bytes_total else "")
        elapsed = max(time.monotonic() - task.fields["started"], 1e-6)
        rate = p.bytes_done / elapsed
        failed = f", {p.failed:,} failed" if p.failed else ""
        limit = limits_text(limits())
        return Text(f"{files}  {sizes}  {format_rate(rate)}  ETA {_eta(task, elapsed)}{failed}"
                    + (f"  {limit}" if limit else ""))


def limits_text(states: list[LimitState]) -> str:
    """``limit 3/16`` for the endpoints requests went to (each, comma-separated, when there are several)."""
    shown = [f"{s.limit}/{s.ceiling}" if s.adaptive else f"{s.limit}" for s in states if s.ceiling]
    return f"limit {', '.join(shown)}" if shown else ""


def _eta(task: Task, elapsed: float) -> str:
    if task.total is None or task.completed <= 0:
        return "--"
    remaining = task.total - task.completed
    if remaining <= 0:
        return "0s"
    return format_elapsed(max(1.0, elapsed * remaining / task.completed))


class ProgressBar:
    """The ``progress`` callback of ``execute`` and ``migrate``; ``end()`` leaves the last frame on its own line."""

    def __init__(self, label: str = "") -> None:
        self._lock = threading.Lock()
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=28),
                                  TextColumn("{task.percentage:>3.0f}%"), _Counts(),
                                  console=Console(stderr=True), refresh_per_second=5, transient=False)
        self._done, self._by_bytes = 0, None
        self._task = self._progress.add_task(label, total=None, run=None, started=time.monotonic())
        self.shown = 0.0  # when it last drew; 0: never (a run with nothing to do draws no bar)

    def __call__(self, p: RunProgress) -> None:
        by_bytes = bool(p.bytes_total)
        total = p.bytes_total if by_bytes else p.files_total
        done = p.bytes_done if by_bytes else p.files_done
        if total is not None:
            all_done = p.files_total is not None and p.files_done >= p.files_total
            done = total if all_done else min(done, max(total - 1, 0))  # 100 % only when every file is done
        with self._lock:
            # Never backwards: a large file's streamed bytes hand over to its result a moment after it ends.
            done = self._done = max(done, self._done) if by_bytes == self._by_bytes else done
            self._by_bytes = by_bytes
            if not self.shown:
                self._progress.start()
            self._progress.update(self._task, total=total, completed=done, run=p)
            self.shown = time.monotonic()

    def print(self, text: str) -> None:
        """A line above the bar (the bar redraws below it)."""
        with self._lock:
            if self.shown:
                self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                self._progress.console.file.write(text + "\n")

    def end(self) -> None:
        """Draw the last frame and let the next line start clean."""
        with self._lock:
            if self.shown:
                self._progress.refresh()
                self._progress.stop()


def plan_total(plan) -> tuple[int, int]:
    """(actions, bytes they will copy) for a plan's progress bar.

    A pin, or a release of a file already archived, copies nothing: counting
    their sizes would leave the bar short of 100 % until the very end.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = plan.actions
    if not table.num_rows:
        return 0, 0
    state = pc.fill_null(table["state"], FileState.RESIDENT)
    copies = pc.or_(
        pc.and_(pc.is_in(table["action"], value_set=pa.array(["archive", "release"])),
                pc.is_in(state, value_set=pa.array([FileState.RESIDENT, FileState.DIRTY]))),
        pc.and_(pc.equal(table["action"], "restore"), pc.equal(state, FileState.RELEASED)))
    return table.num_rows, int(pc.sum(pc.if_else(copies, table["size"], 0)).as_py() or 0)
