"""A progress bar on stderr for terminals: files, bytes, rate, ETA."""

from __future__ import annotations

import sys
import time

from tiering.mover.executor import Progress
from tiering.units import format_size


class ProgressBar:
    """Redraws one line at most ten times a second."""

    def __init__(self, width: int = 28) -> None:
        self.width = width
        self.shown = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self.shown < 0.1 and p.files_done != p.files_total:
            return
        self.shown = now
        frac = p.files_done / p.files_total if p.files_total else 0.0
        if p.bytes_total:
            frac = p.bytes_done / p.bytes_total
        filled = int(frac * self.width)
        rate = p.bytes_done / p.elapsed if p.elapsed > 0 else 0.0
        eta = (p.elapsed / frac - p.elapsed) if 0 < frac < 1 else 0.0
        total = f"/{p.files_total:,}" if p.files_total else ""
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {p.files_done:,}{total} files "
                         f"{format_size(p.bytes_done)} {format_size(int(rate))}/s ETA {eta:,.0f}s"
                         f"{f' ({p.failed} failed)' if p.failed else ''} ")
        sys.stderr.flush()

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
