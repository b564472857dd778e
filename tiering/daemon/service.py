"""``tiering daemon``: keep the hot tier under its watermark, with heat from file events.

One process, holding the catalog's writer lock for its whole life (``tiering
status`` reads the lock's holder record to say a daemon is alive). Threads:

- main: the loop below, and every mover action it starts (cycles and
  auto-archive batches run one at a time, on the executor's bounded pool);
- watchdog's observer: file events, enqueued only (``events.EventIntake``);
- the debouncer: batches of accesses into the catalog as heat;
- the metrics endpoint;
- the change listener (``[daemon] changes``, ``changes.Follower``): fanotify events of the
  whole hot tier's filesystem, written as delta partitions beside the latest snapshot.

The loop, every tick: reload on SIGHUP; run a cycle when none ran yet, when
``interval`` has passed, or when used space is above the policy's high
watermark (looked at every ``watermark_check``; retried with backoff while a
cycle cannot get below it); else an incremental rescan when one is due (none
while the change deltas keep the latest snapshot current: a dropped event or a
lost listener makes one due at once); else auto-archive the files that have been
quiet long enough. Each tick also flushes the change deltas every ``debounce``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from watchdog.observers import Observer

from tiering.catalog import Catalog
from tiering.config import Config, check_hot_tier, load_config
from tiering.config.daemon import check_reloadable
from tiering.core.states import STATES
from tiering.ops.cycle import CycleReport, run_cycle
from tiering.access.fanotify import FanotifyUnsupported
from tiering.daemon.autoarchive import archive_quiet
from tiering.daemon.changes import Follower
from tiering.daemon.events import (
    WATCHED,
    Debouncer,
    EventIntake,
    OwnActions,
    PendingWrites,
)
from tiering.daemon.guarded import GuardProcess
from tiering.mover.guardlink import GuardPaths
from tiering.mover.handoff import apply_heat
from tiering.daemon.metrics import Metrics, MetricsServer
from tiering.daemon.rescan import changes
from tiering.daemon.signals import Signals
from tiering.core.errors import TieringError, UserError
from tiering.mover.executor import Task
from tiering.mover.outcome import DONE, FAILED, Outcome
from tiering.plan import Usage
from tiering.policy import Policy
from tiering.ops.workflow import latest_snapshot, policy_for
from tiering.scan import fresh_snapshot, prune_snapshots
from tiering.trace.log import TraceLog

log = logging.getLogger("tiering.daemon")


class Daemon:
    """The long-running service; ``run()`` returns when a signal stopped it."""

    def __init__(self, config: Config, policy: Policy, policy_arg: str | Path | None = None) -> None:
        self.config, self.policy, self.policy_arg = config, policy, policy_arg
        self.metrics = Metrics()
        self.own = OwnActions()
        self.intake = EventIntake()
        self.writes = PendingWrites()
        self.signals = Signals(config.daemon.stop_timeout, reload=True)
        self.catalog: Catalog | None = None
        self.server: MetricsServer | None = None
        self.observer = None
        self.debouncer: Debouncer | None = None
        self.trace: TraceLog | None = None  # the access trace (``tiering.trace``), while running
        self._last_cycle: float | None = None  # monotonic end of the last cycle
        self._next_check = self._backoff_until = 0.0
        self._misses = 0  # watermark cycles in a row that left usage above high
        self._next_rescan = time.monotonic() + config.daemon.rescan
        self._baseline: Path | None = None  # the snapshot rescans compare against
        self.follower: Follower | None = None  # keeps the latest snapshot current from fanotify events
        self._next_flush = 0.0
        self._last_full_scan: float | None = None  # monotonic time of the last full scan the follower rebased on
        self.guard = GuardProcess(config)
        self._guard_paths = GuardPaths.of(config)

    # -- life --------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT; raises ``CatalogBusyError`` when another writer holds the catalog,
        ``UserError`` when the hot tier is not there to serve."""
        check_hot_tier(self.config)
        with self.signals, Catalog.open(self.config.catalog_target, writer=True, purpose="daemon") as catalog:
            self.catalog = catalog
            try:
                self._start()
                self._loop()
            finally:
                self._shutdown()

    def _start(self) -> None:
        d = self.config.daemon
        if d.metrics_port:
            try:
                self.server = MetricsServer(self.metrics, d.metrics_address, d.metrics_port)
            except OSError as exc:
                raise UserError(f"{self.config.path}: [daemon] metrics_port: cannot listen on "
                                f"{d.metrics_address}:{d.metrics_port} ({exc.strerror}); "
                                "expected a free port, or 0 for no metrics") from None
            self.server.start()
        self.guard.start()
        self._live_metrics()
        self.observer = self._watch()
        self.follower = self._follow()
        self.writes.enabled = d.auto_archive > 0
        self.debouncer = Debouncer(str(self.config.hot_path), self.intake, self.own, self._record_heat, self.writes,
                                   d.debounce)
        self.debouncer.trace = self.trace = TraceLog.of(self.config)  # (None: [trace] record = false)
        self.debouncer.start()
        self.metrics.set("tiering_up", 1)
        where = f"; metrics on http://{d.metrics_address}:{self.server.address[1]}/metrics" if self.server else ""
        log.info("daemon started: pid %d, hot tier %s, policy %s%s", os.getpid(), self.config.hot_path,
                 self.policy.path, where)

    def _loop(self) -> None:
        tick = min(1.0, self.config.daemon.watermark_check)
        while not self.signals.stop.is_set():
            if self.signals.reload.is_set():
                self.signals.reload.clear()
                self.reload()
            following = self._following()
            if trigger := self._cycle_due():
                self._cycle(trigger)
            elif time.monotonic() >= self._next_rescan and not following:
                self._rescan()
            elif self.config.daemon.auto_archive:
                self._auto_archive()
            self._check_observer()
            self._guard_heat()
            if self.trace is not None:
                self.trace.tick()
            self.signals.stop.wait(tick)

    def _shutdown(self) -> None:
        if self.signals.stop.is_set():
            log.info("stopping: no new actions; flushing file events")
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
        if self.follower is not None:
            try:
                self.follower.flush()  # the deltas current as of the stop: a plan may trust them until max_age
            except Exception as exc:
                _log_failure("the last inventory delta", exc)
            self.follower.close()
        if self.debouncer is not None:
            self.debouncer.stop()
        if self.trace is not None:
            self.trace.close()
        if self.server is not None:
            self.server.stop()
        self.guard.stop(self.config.daemon.stop_timeout)
        log.info("daemon stopped")

    # -- file events ---------------------------------------------------------------

    def _watch(self):
        observer = Observer()
        try:
            observer.schedule(self.intake, str(self.config.hot_path), recursive=True, event_filter=WATCHED)
            observer.start()
        except OSError as exc:
            log.error("file events unavailable on %s (%s; see fs.inotify.max_user_watches): heat and auto-archive "
                      "rely on the rescan every %gs", self.config.hot_path, exc, self.config.daemon.rescan)
            self.metrics.inc("tiering_errors_total", kind="events")
            if observer.is_alive():
                observer.stop()
                observer.join(timeout=5)
            return None
        return observer

    def _follow(self) -> Follower | None:
        """The inventory's change listener (``[daemon] changes``); None: periodic full scans keep it current."""
        mode = self.config.daemon.changes
        if mode == "rescan":
            return None
        follower = Follower(self.config.hot_path)
        try:
            follower.start()
        except (FanotifyUnsupported, OSError) as exc:
            follower.close()
            reason = getattr(exc, "reason", None) or str(exc)
            if mode == "fanotify":
                raise UserError(f"{self.config.path}: [daemon] changes = \"fanotify\": no filesystem-wide events "
                                f"on {self.config.hot_path} ({reason}); expected \"auto\" or \"rescan\" here") from None
            log.info("change events unavailable on %s (%s): the inventory stays current by a full scan every %gs",
                     self.config.hot_path, reason, self.config.daemon.rescan)
            return None
        log.info("following changes on %s with fanotify: delta partitions beside the latest snapshot",
                 self.config.hot_path)
        return follower

    def _following(self) -> bool:
        """Flush the change deltas every ``debounce``; True while they keep the inventory current (no full
        rescan is due), False once events were dropped or the listener is gone (then a full scan is)."""
        if self.follower is None or self.follower.log is None:
            return False
        if time.monotonic() >= self._next_flush:
            self._next_flush = time.monotonic() + self.config.daemon.debounce
            if self._flush_deltas("a full scan now, then following again") is not None:
                self._next_rescan = 0.0
        if self.follower.broken is None:
            return True
        if not self.follower.alive:
            log.error("change events stopped on %s: the inventory stays current by a full scan every %gs",
                      self.config.hot_path, self.config.daemon.rescan)
            self.follower.close()
            self.follower = None
        return False

    def _flush_deltas(self, then: str) -> str | None:
        """Write the changes seen so far as a delta; the reason the deltas just became incomplete (logged with
        ``then``, what the daemon does about it, and counted), or None while they are current."""
        try:
            reason = self.follower.flush()
        except Exception as exc:  # an unwritable delta: stop trusting them rather than guess
            reason = self.follower.give_up(f"a delta could not be written ({exc})")
        if reason is not None:
            log.warning("inventory deltas incomplete (%s): %s", reason, then)
            self.metrics.inc("tiering_errors_total", kind="changes")
        return reason

    def _check_observer(self) -> None:
        if self.observer is not None and not (self.observer.is_alive()
                                              and all(e.is_alive() for e in self.observer.emitters)):
            log.error("file events stopped on %s: heat and auto-archive rely on the rescan every %gs",
                      self.config.hot_path, self.config.daemon.rescan)
            self.metrics.inc("tiering_errors_total", kind="events")
            self.observer.stop()
            self.observer.join(timeout=5)
            self.observer = None

    def _guard_heat(self) -> None:
        """Count the opens this host's access guard saw (its heat log) as heat."""
        logs = sorted(self._guard_paths.dir.glob("*.heat")) if self._guard_paths.dir.is_dir() else []
        if logs and (n := apply_heat(self.catalog, logs, self.config.heat_half_life)):
            self.metrics.inc("tiering_heat_events_total", n)

    def _record_heat(self, paths: list[bytes]) -> None:
        try:
            self.catalog.add_heat(paths, time.time(), self.config.heat_half_life, _sizes(self.config.hot_path, paths))
        except Exception:
            self.metrics.inc("tiering_errors_total", kind="heat")
            raise
        self.metrics.inc("tiering_heat_events_total", len(paths))

    # -- ActionHooks: every mover action the daemon runs -------------------------------

    def started(self, task: Task) -> None:
        self.own.started(task)

    def finished(self, task: Task, outcome: Outcome | None) -> None:
        self.own.finished(task, outcome)
        status = outcome.status if outcome else FAILED
        self.metrics.inc("tiering_actions_total", action=task.action, status=status)
        if outcome is not None and outcome.status == DONE:
            self.metrics.inc("tiering_moved_bytes_total", outcome.bytes, action=task.action)
        if status == FAILED:
            self.metrics.inc("tiering_errors_total", kind="action")

    # -- work ----------------------------------------------------------------------

    def _cycle_due(self) -> str | None:
        now, d = time.monotonic(), self.config.daemon
        if self._last_cycle is None:
            return "start"
        if now - self._last_cycle >= d.interval:
            return "interval"
        if now < self._next_check:
            return None
        self._next_check = now + d.watermark_check
        wm = self.policy.watermark
        if wm is None or now < self._backoff_until:
            return None
        used = Usage.of(self.config.hot_path).fraction
        if used <= wm.high:
            return None
        log.info("hot tier %.1f%% used, above the high watermark (%.0f%%): cycle now", 100 * used, 100 * wm.high)
        return "watermark"

    def _cycle(self, trigger: str) -> None:
        report = None
        followed = self._followed_inventory()
        if self.follower is not None and followed is None:
            self.follower.begin_scan()
        try:
            report = run_cycle(self.config, self.policy, self.catalog, command=f"daemon:{trigger}",
                               stop=self.signals.stop, hooks=self, inventory=followed)
        except Exception as exc:  # the daemon outlives a failed cycle; the next one tries again
            _log_failure(f"cycle ({trigger})", exc)
            self.metrics.inc("tiering_errors_total", kind="cycle")
        self._last_cycle = time.monotonic()
        self.metrics.inc("tiering_cycles_total", trigger=trigger)
        if report is not None:
            if followed is None:  # a full scan: the follower's new base, and the rescan's new baseline
                self._rebase(report.snapshot)
            self._after_cycle(trigger, report, scanned=followed is None)
        elif self.follower is not None and followed is None:
            self.follower.end_scan()
        self._refresh_counts()

    def _followed_inventory(self) -> Path | None:
        """The latest snapshot, when this cycle may plan on it merged with its change deltas instead of
        scanning the hot tier: the follower has kept every change since the last full scan, which is younger
        than ``[daemon] full_scan``. None: a full scan is due (or nothing follows the changes)."""
        follower, last = self.follower, self._last_full_scan
        if follower is None or follower.log is None or follower.broken is not None or last is None:
            return None
        if time.monotonic() - last >= self.config.daemon.full_scan:
            return None
        if self._flush_deltas("this cycle scans in full") is not None:  # (every change so far in what it reads)
            return None
        latest = latest_snapshot(self.config)
        return latest.resolve() if latest is not None else None

    def _after_cycle(self, trigger: str, report: CycleReport, scanned: bool = True) -> None:
        self.metrics.set("tiering_cycle_duration_seconds", report.seconds)
        self.metrics.set("tiering_last_cycle_timestamp_seconds", time.time())
        if scanned:  # (a followed inventory is the baseline itself plus deltas: nothing new to compare)
            self._absorb(report.snapshot)
        wm = self.policy.watermark
        if trigger == "watermark" and wm is not None and report.usage_after.fraction > wm.high:
            self._misses += 1
            wait = min(self.config.daemon.interval, self.config.daemon.watermark_check * 2 ** self._misses)
            self._backoff_until = time.monotonic() + wait
            log.warning("hot tier still %.1f%% used after a watermark cycle (high %.0f%%): nothing more the policy "
                        "may move; next watermark cycle in %gs at the earliest", 100 * report.usage_after.fraction,
                        100 * wm.high, wait)
        else:
            self._misses = 0

    def _rescan(self) -> None:
        self._next_rescan = time.monotonic() + self.config.daemon.rescan
        if self.follower is not None:
            self.follower.begin_scan()
        try:
            snapshot = fresh_snapshot(self.config)
            prune_snapshots(snapshot, self.config.daemon.keep_snapshots)
            self._rebase(snapshot)
            self._absorb(snapshot)
        except Exception as exc:
            if self.follower is not None:
                self.follower.end_scan()
            _log_failure("rescan", exc)
            self.metrics.inc("tiering_errors_total", kind="rescan")

    def _rebase(self, snapshot: Path) -> None:
        """Follow the changes of ``snapshot``, the full scan just written (``Follower.rebase``)."""
        if self.follower is not None:
            from tiering.scan import Snapshot

            self.follower.rebase(snapshot, Snapshot(snapshot, deltas=False).buckets)
            self._last_full_scan = time.monotonic()

    def _absorb(self, snapshot: Path) -> None:
        """Count what file events missed since the previous snapshot; ``snapshot`` becomes the baseline."""
        seen = self.debouncer.take_seen() if self.debouncer else set()
        baseline, self._baseline = self._baseline, snapshot
        if baseline is None or not baseline.exists():
            return
        found = changes(baseline, snapshot, seen)
        if found.accessed:
            self._record_heat(found.accessed)
        at = time.monotonic()
        for rel in found.written:
            self.writes.note(rel, at, closed=True)
        log.debug("rescan: %d accesses and %d writes the file events missed", len(found.accessed), len(found.written))

    def _auto_archive(self) -> None:
        if archive_quiet(self.config, self.catalog, self.writes, self, self.signals.stop) is not None:
            self._refresh_counts()

    # -- reload and metrics ----------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config and policy (SIGHUP); on any error keep both and log one line."""
        try:
            config = load_config(self.config.path)
            check_reloadable(self.config, config)
            policy = policy_for(config, self.policy_arg)
        except UserError as exc:
            log.error("reload rejected, still running the previous configuration and policy: %s", exc)
            self.metrics.inc("tiering_reloads_total", result="rejected")
            self.metrics.inc("tiering_errors_total", kind="reload")
            return False
        self.config, self.policy = config, policy
        self.signals.stop_timeout = config.daemon.stop_timeout
        self.writes.enabled = config.daemon.auto_archive > 0
        self.metrics.inc("tiering_reloads_total", result="ok")
        log.info("reloaded %s and policy %s", config.path, policy.path)
        return True

    def _refresh_counts(self) -> None:
        counts = self.catalog.counts()
        for state in STATES:
            files, size = counts.get(state, (0, 0))
            self.metrics.set("tiering_files", files, state=state)
            self.metrics.set("tiering_bytes", size, state=state)

    def _live_metrics(self) -> None:
        m, hot = self.metrics, self.config.hot_path
        m.live("tiering_hot_size_bytes", lambda: Usage.of(hot).total)
        m.live("tiering_hot_used_bytes", lambda: Usage.of(hot).used)
        m.live("tiering_hot_used_ratio", lambda: round(Usage.of(hot).fraction, 6))
        m.live("tiering_watermark_ratio", self._watermarks)
        m.live("tiering_event_queue_depth", lambda: len(self.intake.queue))
        m.live("tiering_guard_active", self.guard.state)
        m.live("tiering_events_dropped_total", lambda: self.intake.dropped)
        m.live("tiering_events_watching", lambda: int(self.observer is not None))
        m.live("tiering_auto_archive_pending", lambda: len(self.writes))
        self._refresh_counts()

    def _watermarks(self) -> dict:
        wm = self.policy.watermark
        return {} if wm is None else {(("level", "high"),): wm.high, (("level", "low"),): wm.low}


def _sizes(root: Path, paths: list[bytes]) -> dict[bytes, int]:
    """The files' sizes on the hot tier (a file gone since its event has none), so heat-only records
    count their true bytes."""
    sizes = {}
    for rel in set(paths):
        try:
            sizes[rel] = os.lstat(root / os.fsdecode(rel)).st_size
        except OSError:
            pass
    return sizes


def _log_failure(what: str, exc: Exception) -> None:
    """One line for a failure we have a name for (the traceback at debug level); a bug keeps its traceback."""
    if isinstance(exc, TieringError | OSError):
        log.error("%s failed: %s", what, exc, exc_info=log.isEnabledFor(logging.DEBUG))
    else:
        log.exception("%s failed", what)


__all__ = ["Daemon"]
