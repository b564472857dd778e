"""What a migration did: one small frozen value per file, and the run's totals."""

from __future__ import annotations

from dataclasses import dataclass, field

from tiering.core.display import show_key
from tiering.core.result import DONE, FAILED, NOOP, SKIPPED, ItemOutcome, RunStatus
from tiering.mover.executor import concurrency_summary
from tiering.stores.limiter import LimitState

__all__ = ["DONE", "FAILED", "NOOP", "SKIPPED", "ItemResult", "MigrateResult"]

#: Failures kept for the report; the rest are only counted (bounded memory on huge runs).
KEEP_FAILURES = 1000


@dataclass(frozen=True, slots=True)
class ItemResult(ItemOutcome):
    """One file (or one unlistable folder).

    ``action`` is copy, delete or list; ``status`` is done (copied / deleted, or
    would be on a dry run), noop (already there, verified), skipped (left out
    by a filter only a worker could check) or failed.
    """

    key: str
    action: str
    status: str
    bytes: int = 0
    reason: str = ""
    #: For failures that say the whole run should stop (disk full, a tier unreachable, credentials
    #: refused): the exit status the run ends with (``tiering.core.errors.exit_status``); 0 for one file's failure.
    stop: int = 0


@dataclass
class MigrateResult(RunStatus):
    """Counts, bytes and the first failures of one ``migrate`` / ``sync`` run."""

    dry_run: bool = False
    copied: int = 0
    skipped: int = 0  # already at the destination and the same
    excluded: int = 0  # left out by --include/--exclude/size/age filters
    failed: int = 0
    deleted: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: list[ItemResult] = field(default_factory=list)
    stopped: str = ""  # why the run stopped starting new work, if it did
    not_deleted: str = ""  # why --delete deleted nothing, if it did not
    stop_status: int = 0  # the exit status of the failure that stopped the run, if one did
    interrupted: bool = False  # by SIGINT/SIGTERM
    limits: tuple[LimitState, ...] = ()  # each store endpoint's concurrency limiter as the run ended

    @property
    def files(self) -> int:
        return self.copied + self.skipped + self.failed + self.deleted

    def add(self, item: ItemResult) -> None:
        if item.status == FAILED:
            self.failed += 1
            if len(self.failures) < KEEP_FAILURES:
                self.failures.append(item)
            if item.fatal and not self.stopped:
                where = f"{item.action} {show_key(item.key)}: " if item.key and item.key not in item.reason else ""
                self.stopped = f"stopped after a fatal error: {where}{item.reason}"
                self.stop_status = item.stop
        elif item.status == SKIPPED:
            self.excluded += 1
        elif item.status == NOOP:
            self.skipped += 1
        elif item.action == "delete":
            self.deleted += 1
        else:
            self.copied += 1
            self.bytes += item.bytes

    def summary(self) -> dict:
        """The JSON summary: counts, bytes, seconds, rates, why it stopped or did not delete."""
        secs = self.seconds or 0.0
        return {"dry_run": self.dry_run, "copied": self.copied, "skipped": self.skipped, "excluded": self.excluded,
                "failed": self.failed, "deleted": self.deleted, "bytes": self.bytes, "seconds": round(secs, 3),
                "files_per_s": round(self.copied / secs, 1) if secs else 0.0,
                "mb_per_s": round(self.bytes / secs / 1e6, 2) if secs else 0.0,
                "stopped": self.stopped or None, "not_deleted": self.not_deleted or None,
                "interrupted": self.interrupted,
                **({"concurrency": concurrency_summary(self.limits)} if self.limits else {})}
