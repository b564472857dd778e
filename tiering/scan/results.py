"""The scanner's frozen values: progress while it runs, a summary when it is done."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiering.core.display import show_path


@dataclass(frozen=True)
class ScanProgress:
    """Totals so far, handed to a progress callback; ``errors`` counts every kind."""

    files: int
    dirs: int
    bytes: int
    errors: int
    elapsed: float  # seconds since the scan started


#: A progress callback: called from the scanning thread, so it should be quick.
ProgressCallback = Callable[[ScanProgress], None]


@dataclass(frozen=True)
class ScanSummary:
    """What one scan found.

    ``files``/``dirs``/``symlinks`` are the recorded entries; ``specials``
    (sockets, fifos, devices) were counted and skipped. ``bytes`` is the sum of
    regular files' sizes. ``errors`` counts entries that could not be read by
    kind (``vanished``: deleted mid-scan; ``permission``; ``changed``: a
    directory replaced while being read; else the errno name, e.g. ``EIO``);
    ``error_examples`` keeps a few relative paths per kind. ``snapshot`` is the
    Parquet file written, when one was.
    """

    root: Path
    files: int
    dirs: int
    symlinks: int
    specials: int
    bytes: int
    errors: dict[str, int] = field(hash=False)
    error_examples: dict[str, tuple[bytes, ...]] = field(hash=False)
    seconds: float
    snapshot: Path | None = None

    @property
    def entries(self) -> int:
        """Rows in the inventory."""
        return self.files + self.dirs + self.symlinks

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; example paths as ``show_path`` shows them (escaped unless printable)."""
        return {
            "root": str(self.root),
            "snapshot": None if self.snapshot is None else str(self.snapshot),
            "files": self.files,
            "dirs": self.dirs,
            "symlinks": self.symlinks,
            "specials": self.specials,
            "bytes": self.bytes,
            "errors": dict(self.errors),
            "error_examples": {k: [show_path(p) for p in v] for k, v in self.error_examples.items()},
            "seconds": round(self.seconds, 3),
            "files_per_s": round(self.files_per_s, 1),
        }
