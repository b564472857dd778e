"""What happened to one file: the mover's per-item result."""

from __future__ import annotations

from dataclasses import dataclass

DONE, NOOP, SKIPPED, FAILED = "done", "noop", "skipped", "failed"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One action on one file. ``status`` is done, noop (nothing to do), skipped or failed."""

    path: bytes
    action: str
    status: str
    reason: str = ""
    bytes: int = 0  # bytes moved to or from the capacity tier
    tier: str | None = None
    #: For failures that say the whole run should stop (hot tier full, tier unreachable, credentials
    #: refused): the exit status the run ends with (``tiering.errors.exit_status``); 0 for one item's failure.
    stop: int = 0

    @property
    def ok(self) -> bool:
        return self.status in (DONE, NOOP)

    @property
    def fatal(self) -> bool:
        return self.stop != 0
