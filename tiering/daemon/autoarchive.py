"""Auto-archive (FSx/CPFS auto-export style): copy written files once they are quiet.

Files closed after writing and then quiet for ``[daemon] auto_archive``
seconds (``events.PendingWrites``) are archived, never released: the hot tier
keeps its bytes, the capacity tier gets a verified copy, and a later release
is instant. The mover still skips a file someone has open for writing; such a
file goes back to wait until it is quiet again.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from tiering.catalog import Catalog
from tiering.config import Config
from tiering.ops.cycle import ActionHooks, HookedMover, until_stopped
from tiering.daemon.events import PendingWrites
from tiering.mover.executor import RunResult, Task, execute
from tiering.mover.handoff import join_guard
from tiering.mover.ops import Mover
from tiering.mover.outcome import DONE

log = logging.getLogger("tiering.daemon")


def archive_quiet(config: Config, catalog: Catalog, writes: PendingWrites, hooks: ActionHooks,
                  stop: threading.Event) -> RunResult | None:
    """Archive the files that are due; None when none is."""
    due = [rel for rel in writes.due(config.daemon.auto_archive)
           if os.path.lexists(config.hot_path / os.fsdecode(rel))]  # deleted or renamed since: nothing to do
    if not due or stop.is_set():
        return None
    mover = Mover(config, catalog)  # a fresh one: it snapshots who has files open for writing
    try:
        join_guard(mover)
        tasks = until_stopped((Task(rel, "archive", config.daemon.auto_archive_tier) for rel in due), stop)
        result = execute(HookedMover(mover, hooks), tasks, jobs=config.jobs)
    finally:
        mover.close()
    for outcome in result.skipped:
        if outcome.reason == "open for writing":
            writes.note(outcome.path, time.monotonic(), closed=True)
    for outcome in result.failures[:50]:
        log.warning("auto-archive failed: %s: %s", os.fsdecode(outcome.path), outcome.reason)
    log.info("auto-archive: %d files quiet for %gs, %d archived (%d bytes), %d failed", len(due),
             config.daemon.auto_archive, result.counts[("archive", DONE)], result.bytes_moved, result.failed)
    return result
