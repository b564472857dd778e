"""What happened to one file: the mover's per-item result."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tiering.core.errors import CONFIG, RUN, ClaimedError, TieringError, exit_status, scope_of
from tiering.core.result import DONE, FAILED, NOOP, PENDING, SKIPPED, ItemOutcome

__all__ = ["DONE", "FAILED", "NOOP", "PENDING", "SKIPPED", "Outcome", "failure"]


@dataclass(frozen=True, slots=True)
class Outcome(ItemOutcome):
    """One action on one file. ``status`` is done, noop (nothing to do), skipped, failed or pending."""

    path: bytes
    action: str
    status: str
    reason: str = ""
    bytes: int = 0  # bytes moved to or from the capacity tier
    tier: str | None = None
    #: For failures that say the whole run should stop (hot tier full, tier unreachable, credentials
    #: refused): the exit status the run ends with (``tiering.core.errors.exit_status``); 0 for one item's failure.
    stop: int = 0
    #: Something the user should know about a file that was nevertheless handled (done or no-op).
    warning: str = ""


def failure(rel: bytes, action: str, exc: BaseException, tier: str | None) -> Outcome:
    """A failed action as an Outcome; ``stop`` says whether (and with which exit status) the run should stop.

    Anything that is neither one of ours nor an ``OSError`` is a bug: it fails
    its item, names its type, and stops the run (``scope_of``).
    """
    if isinstance(exc, FileNotFoundError):
        return Outcome(rel, action, FAILED, "no such file on the hot tier", tier=tier)
    if isinstance(exc, ClaimedError):  # another writer of the catalog has (or had) the file: not a failure
        return Outcome(rel, action, SKIPPED, str(exc), tier=tier)
    stop = exit_status(exc) if scope_of(exc) in (RUN, CONFIG) else 0
    if isinstance(exc, OSError):
        reason = f"{os.strerror(exc.errno) if exc.errno else exc}" + (" (hot tier)" if stop else "")
        return Outcome(rel, action, FAILED, reason, tier=tier, stop=stop)
    if not isinstance(exc, TieringError):
        return Outcome(rel, action, FAILED, f"unexpected {type(exc).__name__}: {exc}", tier=tier, stop=stop)
    return Outcome(rel, action, FAILED, str(exc), tier=tier, stop=stop)
