"""What one action did to one item: the idea the mover's ``Outcome`` and migrate's ``ItemResult`` share.

Both are frozen dataclasses with their own fields (a file's ``path`` and ``tier`` for the
mover, an object ``key`` for migrate, in the order their callers and JSON already use);
``ItemOutcome`` is their common base: the four statuses, and what a status and a ``stop``
mean, written once.
"""

from __future__ import annotations

from tiering.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PENDING

#: done: the action happened (or would, on a dry run); noop: nothing to do (already so);
#: skipped: left out (a filter, a safety rule, a file in use); failed: see ``reason`` and ``stop``;
#: pending: asked for and under way elsewhere, not done yet (an archived object its store is restoring):
#: the same command run again later finishes it.
DONE, NOOP, SKIPPED, FAILED, PENDING = "done", "noop", "skipped", "failed", "pending"


class ItemOutcome:
    """One action on one item. Subclasses are frozen dataclasses that declare these fields."""

    __slots__ = ()  # the dataclasses below keep their own slots

    action: str
    status: str  # DONE, NOOP, SKIPPED, FAILED or PENDING
    reason: str  # why, in a few words ("" when there is nothing to say)
    bytes: int  # bytes moved or copied
    #: For a failure that says the whole run should stop (disk full, a tier unreachable, credentials
    #: refused): the exit status the run ends with (``tiering.core.errors.exit_status``); 0 for one item's failure.
    stop: int

    @property
    def ok(self) -> bool:
        """Done, or nothing to do."""
        return self.status in (DONE, NOOP)

    @property
    def fatal(self) -> bool:
        """A failure that stops the run."""
        return self.stop != 0


class RunStatus:
    """A whole run's exit status from what it recorded, the one rule of ``tiering.core.errors``:
    interrupted (130), else the status of the failure that stopped it, else 1 if any item failed, else 75
    if any is pending, else 0.
    The mover's ``RunResult`` and migrate's ``MigrateResult`` carry ``interrupted``, ``stop_status``
    and ``failed``."""

    __slots__ = ()

    interrupted: bool
    stop_status: int
    failed: int
    #: Items left under way elsewhere (``PENDING``); a result that has none keeps this 0.
    pending = 0

    @property
    def exit_status(self) -> int:
        """The command's exit status (``tiering.core.errors``): interrupted, stopped, some failed, some
        pending (75), or done."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        return self.stop_status or (EXIT_FAILED if self.failed else EXIT_PENDING if self.pending else EXIT_OK)
