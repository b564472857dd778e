"""One policy cycle, unattended: recover, scan, plan, apply, report.

``tiering run`` (cron) calls ``run_once``; the daemon calls ``run_cycle`` on
the catalog it keeps open. Each cycle is one row in the catalog's ``runs``
table (its JSON summary included), which is what ``tiering status`` shows as
the last cycle. On a server catalog the run's row also carries its heartbeat, so
``recover`` on any node can tell whether the cycle is alive. Library code: it logs, it never prints.

The whole pass reads top to bottom in ``_cycle``; every step it takes is a call into
a lower layer (the mover's ``recover`` and ``execute``, the scanner's snapshots, the
planner), never a detour through the other use-case modules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Coroutine, Iterable, Iterator
from itertools import chain
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tiering.catalog import Catalog
from tiering.config import Config
from tiering.core.display import show_path
from tiering.core.errors import EXIT_FAILED, EXIT_OK
from tiering.mover.executor import RunResult, Task, execute, plan_tasks
from tiering.mover.handoff import join_guard
from tiering.mover.ops import Mover
from tiering.mover.outcome import Outcome
from tiering.mover.recover import recover
from tiering.mover.thaw import pending_paths
from tiering.plan import Usage, make_plan, read_inventory
from tiering.policy import Policy
from tiering.scan import fresh_snapshot, prune_snapshots

log = logging.getLogger("tiering.ops.cycle")
#: Per-file problems logged per cycle (the rest are counted in the summary).
MAX_LOGGED = 200


class ActionHooks(Protocol):
    """Told about every mover action as it runs (the daemon: metrics, and not counting its own I/O as heat)."""

    def started(self, task: Task) -> None: ...

    def finished(self, task: Task, outcome: Outcome | None) -> None: ...


@dataclass(frozen=True)
class CycleReport:
    """What one cycle did; ``summary()`` is the JSON line ``tiering run`` prints."""

    command: str
    run_id: str
    recovered: list[Outcome]
    planned: tuple[int, int]  # (files, bytes) the plan asked for
    result: RunResult
    usage_before: Usage
    usage_after: Usage
    seconds: float
    snapshot: Path  # the inventory this cycle planned on
    stopped_by_signal: bool = False

    @property
    def failed(self) -> int:
        return self.result.failed + sum(not o.ok for o in self.recovered)

    @property
    def exit_status(self) -> int:
        """``tiering run``'s exit status: what stopped the run (3: a tier unreachable, ...), else 1 if
        anything failed (recovery included), else 0."""
        return self.result.exit_status or (EXIT_FAILED if self.failed else EXIT_OK)

    def summary(self) -> dict:
        return {"command": self.command, "run_id": self.run_id, "recovered": len(self.recovered),
                "planned": {"files": self.planned[0], "bytes": self.planned[1]}, **self.result.summary(),
                "failed": self.failed, "cycle_seconds": round(self.seconds, 3),
                "hot_used": {"before": self.usage_before.used, "after": self.usage_after.used,
                             "total": self.usage_after.total},
                "stopped": ("stopped by signal" if self.stopped_by_signal else self.result.stopped) or None}


def run_once(config: Config, policy: Policy, *, stop: threading.Event | None = None,
             jobs: int | None = None) -> CycleReport:
    """One cycle for cron: takes the catalog's cycle lock (``CatalogBusyError`` names the holder): on SQLite
    the writer lock file, on a server an advisory lock (other writers go on beside it, file by file under
    their claims)."""
    with Catalog.open(config.catalog_target, writer=True, purpose="run") as catalog:
        return run_cycle(config, policy, catalog, command="run", stop=stop, jobs=jobs)


def run_cycle(config: Config, policy: Policy, catalog: Catalog, *, command: str = "run",
              stop: threading.Event | None = None, jobs: int | None = None,
              hooks: ActionHooks | None = None, inventory: Path | None = None) -> CycleReport:
    """Recover, scan, plan and apply on an open writer ``catalog``; recorded as one run.

    ``stop``, once set, stops new actions from starting; those in flight finish.
    ``inventory``: plan on this snapshot (merged with its change deltas, ``tiering.scan.delta``) instead of
    a fresh scan; the daemon passes the latest one while its deltas follow every change.
    An exception is recorded in the run's summary and raised.
    """
    start = time.monotonic()
    run_id = catalog.start_run(command)
    mover = Mover(config, catalog)  # a fresh one per cycle: it snapshots who has files open for writing
    try:
        report = _cycle(config, policy, mover, command, run_id, stop, jobs or config.jobs, hooks, start, inventory)
    except BaseException as exc:
        catalog.finish_run({"command": command, "error": f"{type(exc).__name__}: {exc}"[:500]})
        raise
    finally:
        mover.close()
    catalog.finish_run(report.summary())
    _log_report(report)
    return report


def _cycle(config: Config, policy: Policy, mover: Mover, command: str, run_id: str, stop: threading.Event | None,
           jobs: int, hooks: ActionHooks | None, start: float, inventory: Path | None) -> CycleReport:
    # 1. recover: settle whatever a crash left open before anything else moves
    recovered = recover(mover) + join_guard(mover)  # join_guard: restores the access guard did meanwhile
    for outcome in recovered:
        log.info("recovered: %s %s: %s", outcome.action, show_path(outcome.path), outcome.reason)

    # 2. scan: a fresh inventory of the hot tier (older snapshots beyond [daemon] keep_snapshots go),
    #    unless the caller's inventory is kept current by change deltas
    if inventory is None:
        snapshot = fresh_snapshot(config)
        prune_snapshots(snapshot, config.daemon.keep_snapshots)
    else:
        snapshot = inventory
        log.info("%s: planning on %s and its change deltas (no full scan)", command, snapshot.name)

    # 3. plan: the policy over that inventory and the catalog this cycle holds, as it is now
    before = Usage.of(config.hot_path)
    catalog_now = mover.catalog.state_batches(time.time(), config.heat_half_life)  # a stream: never all in memory
    plan = make_plan(read_inventory(snapshot), catalog_now, policy, time.time_ns(),
                     usage=Usage.of(config.hot_path), default_tier=config.default_tier)
    totals = plan.totals()
    log.info("%s: plan has %d actions (%d bytes); hot tier %.1f%% used", command, totals[0], totals[1],
             100 * before.fraction)

    # 4. apply: first the restores whose archived objects were requested earlier (``thaw``), then the
    #    plan's actions in order, until done or ``stop`` is set
    thawing = [Task(rel, "restore") for rel in pending_paths(mover.catalog)]
    actor = mover if hooks is None else HookedMover(mover, hooks)
    result = execute(actor, until_stopped(chain(thawing, plan_tasks(plan)), stop), jobs=jobs,
                     total=(totals[0] + len(thawing), totals[1]))

    # 5. report (recorded and logged by run_cycle)
    return CycleReport(command, run_id, recovered, totals, result, before, Usage.of(config.hot_path),
                       time.monotonic() - start, snapshot, bool(stop and stop.is_set()))


def until_stopped(tasks: Iterable[Task], stop: threading.Event | None) -> Iterator[Task]:
    """``tasks`` until ``stop`` is set: the executor pulls lazily, so intake stops at once."""
    for task in tasks:
        if stop is not None and stop.is_set():
            return
        yield task


class HookedMover:
    """A mover that tells ``hooks`` when each action starts and how it ended (None: it raised)."""

    def __init__(self, mover: Mover, hooks: ActionHooks) -> None:
        self.mover = mover
        self.hooks = hooks

    @property
    def transfer_jobs(self) -> int:
        return self.mover.transfer_jobs

    @transfer_jobs.setter
    def transfer_jobs(self, jobs: int) -> None:
        self.mover.transfer_jobs = jobs

    async def archive_async(self, rel: bytes, tier: str | None = None, storage_class: str | None = None) -> Outcome:
        return await self._run(Task(rel, "archive", tier, storage_class), self.mover.archive_async(rel, tier, storage_class))

    async def release_async(self, rel: bytes, tier: str | None = None, storage_class: str | None = None) -> Outcome:
        return await self._run(Task(rel, "release", tier, storage_class),
                               self.mover.release_async(rel, tier, storage_class))

    async def restore_async(self, rel: bytes) -> Outcome:
        return await self._run(Task(rel, "restore"), self.mover.restore_async(rel))

    async def pin_async(self, rel: bytes) -> Outcome:
        return await self._run(Task(rel, "pin"), self.mover.pin_async(rel))

    async def transition_async(self, rel: bytes, storage_class: str) -> Outcome:
        return await self._run(Task(rel, "transition", None, storage_class),
                               self.mover.transition_async(rel, storage_class))

    async def _run(self, task: Task, action: Coroutine[object, object, Outcome]) -> Outcome:
        self.hooks.started(task)
        outcome = None
        try:
            outcome = await action
            return outcome
        finally:
            self.hooks.finished(task, outcome)


def _log_report(report: CycleReport) -> None:
    result = report.result
    for outcome in (result.skipped + result.failures)[:MAX_LOGGED]:
        if result.stopped and outcome.stop:
            continue  # the failure that stopped the run: said once, as the error below
        level = logging.WARNING if outcome.status == "failed" else logging.INFO
        log.log(level, "%s: %s %s: %s", outcome.status, outcome.action, show_path(outcome.path), outcome.reason)
    if result.stopped:
        log.error("%s: %s", report.command, result.stopped)
    log.info("%s: done in %.1fs: %d actions, %d failed, %d bytes moved; hot tier %.1f%% used", report.command,
             report.seconds, result.total, report.failed, result.bytes_moved, 100 * report.usage_after.fraction)
