"""Run many mover actions on one bounded pool.

``execute`` runs mover actions as coroutines on one event loop: one ``jobs``
knob sets how many byte transfers run at once, and ``4 x jobs`` actions are in
flight (an action spends much of its time waiting on a commit or an fsync, not
the network). Tasks are pulled lazily, so a plan of millions of files never
becomes millions of futures. Small files go many at a time through the
store's async client; blocking work (a large file, whose parts run in
parallel inside the store; a store without an async client; batched commits
and fsyncs) goes to the loop's ``jobs + 4`` worker threads. Tasks start in
the order given (a plan puts restores first, so a waiting job gets its data
before archives run).

The store calls of all those actions share each endpoint's concurrency
limiter (``stores.limiter``): when a tier pushes back (503 SlowDown, a rising
latency) the requests in flight to it are cut, whatever ``jobs`` says, and grow
back as it recovers. The run's summary carries each endpoint's
current limit (a progress bar reads ``stores.limiter.limits()`` as it draws).

Per-file failures are recorded, not raised. The run stops *starting* new work
when a failure says the whole run is doomed (hot tier full, a tier refusing
our credentials) or when the error rate passes ``max_error_rate`` after at
least ``min_sample`` results; work already started finishes.

``bounded_map`` is the same bounded intake over threads, for any blocking
callable (``tiering.migrate`` uses it); an ``Executor`` decides where byte
transfers run: here (``ThreadExecutor``), or a Dask cluster
(``tiering.mover.distributed``).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # the mover (and pyarrow under it) load only for mover runs, not for migrate
    from tiering.mover.ops import Mover
    from tiering.plan import Plan
from tiering.core.aio import run_blocking
from tiering.core.errors import exit_status
from tiering.core.result import RunStatus
from tiering.mover.outcome import DONE, FAILED, NOOP, PENDING, SKIPPED, Outcome, failure
from tiering.stores.limiter import LimitState, limits


@dataclass(frozen=True, slots=True)
class Task:
    """One action to run: what ``apply`` takes from a plan row, or a CLI argument."""

    path: bytes
    action: str  # archive | release | restore | pin | transition
    tier: str | None = None
    storage_class: str | None = None
    size: int = 0  # expected bytes, for progress


def plan_tasks(plan: Plan) -> Iterator[Task]:
    """The plan's actions as mover tasks, in plan order, a batch of rows at a time."""
    table = plan.actions.select(["path", "action", "target_tier", "storage_class", "size"])
    for batch in table.to_batches(max_chunksize=4096):
        cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
        # (A transition moves no bytes through here: the store copies the object in place.)
        yield from (Task(path, action, tier, cls, 0 if action == "transition" else size or 0)
                    for path, action, tier, cls, size in zip(*cols))


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a run is; handed to the progress callback after each result."""

    files_done: int
    files_total: int | None
    bytes_done: int
    bytes_total: int | None
    failed: int
    elapsed: float


def concurrency_summary(states: Iterable[LimitState]) -> dict[str, dict]:
    """Each endpoint's limiter for a run's JSON summary: endpoint -> its ``LimitState`` fields."""
    return {s.endpoint: {k: v for k, v in s.as_dict().items() if k not in ("endpoint", "in_flight", "waiting")}
            for s in states}


@dataclass
class RunResult(RunStatus):
    """What a run did: counts per action and status, bytes moved, the failures."""

    counts: Counter = field(default_factory=Counter)  # (action, status) -> files
    bytes_moved: int = 0
    failures: list[Outcome] = field(default_factory=list)
    skipped: list[Outcome] = field(default_factory=list)
    warnings: list[Outcome] = field(default_factory=list)  # the first few done files that carry a warning
    waiting: list[Outcome] = field(default_factory=list)  # the first few pending (an object being restored)
    stopped: str = ""  # why the run stopped starting new work, if it did
    interrupted: bool = False  # by Ctrl-C (SIGINT)
    seconds: float = 0.0
    stop_status: int = 0  # the exit status of the failure that stopped the run, if one did
    limits: tuple[LimitState, ...] = ()  # each endpoint's concurrency limiter as the run ended

    @property
    def failed(self) -> int:
        return sum(n for (_, status), n in self.counts.items() if status == FAILED)

    @property
    def pending(self) -> int:
        return sum(n for (_, status), n in self.counts.items() if status == PENDING)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, outcome: Outcome) -> None:
        self.counts[(outcome.action, outcome.status)] += 1
        if outcome.warning and len(self.warnings) < 1000:
            self.warnings.append(outcome)
        if outcome.status == DONE:
            self.bytes_moved += outcome.bytes
        elif outcome.status == FAILED:
            self.failures.append(outcome)
        elif outcome.status == SKIPPED:
            self.skipped.append(outcome)
        elif outcome.status == PENDING and len(self.waiting) < 1000:
            self.waiting.append(outcome)

    def summary(self) -> dict:
        """The JSON summary line: counts by action and status, bytes, rate, failures."""
        by_action: dict[str, dict[str, int]] = {}
        for (action, status), n in sorted(self.counts.items()):
            by_action.setdefault(action, {})[status] = n
        return {"actions": by_action, "files": self.total, "failed": self.failed,
                **({"pending": self.pending} if self.pending else {}), "bytes_moved": self.bytes_moved,
                "seconds": round(self.seconds, 3),
                "mb_per_s": round(self.bytes_moved / self.seconds / 1e6, 2) if self.seconds else 0.0,
                "stopped": self.stopped or None,
                **({"concurrency": concurrency_summary(self.limits)} if self.limits else {})}


async def run_action(mover: Mover, task: Task) -> Outcome:
    """One task on ``mover`` (anything with the mover's ``*_async`` actions); never raises an ``Exception``.

    Whatever an action lets escape (a bug, an error nobody classified) fails
    that task, and, being of run scope, stops the run: it is a result, so the
    run still ends with its summary (``errors.scope_of``). That includes a
    ``CancelledError`` an action raises while nobody cancelled its task (a
    timeout or a library's cancellation that leaked): it is not an
    ``Exception``, and left to escape it would end the run with no summary.
    """
    try:
        if task.action == "archive":
            return await mover.archive_async(task.path, task.tier, task.storage_class)
        if task.action == "release":
            return await mover.release_async(task.path, task.tier, task.storage_class)
        if task.action == "restore":
            return await mover.restore_async(task.path)
        if task.action == "pin":
            return await mover.pin_async(task.path)
        if task.action == "transition":
            return await mover.transition_async(task.path, task.storage_class)
    except Exception as exc:
        return failure(task.path, task.action, exc, task.tier)
    except asyncio.CancelledError as exc:
        current = asyncio.current_task()
        if current is None or current.cancelling():
            raise  # this action's task really is being cancelled: let it end
        return failure(task.path, task.action, exc, task.tier)
    return Outcome(task.path, task.action, FAILED, f"unknown action {task.action!r}")


T = TypeVar("T")
R = TypeVar("R")
_END = object()


def bounded_map(fn: Callable[[T], R], items: Iterable[T], *, jobs: int, stop: Callable[[], bool] | None = None,
                in_flight: int | None = None) -> Iterator[R]:
    """``fn`` over ``items`` on ``jobs`` threads; results in completion order.

    The one bounded pool: ``items`` is consumed lazily and at most ``in_flight``
    (default ``4 x jobs``) are submitted at a time. Once ``stop()`` is true no
    new item starts; started ones finish and are yielded. ``fn`` should record
    per-item failures in its result: an exception it raises ends the map.
    """
    limit = in_flight or 4 * max(1, jobs)
    finished: queue.SimpleQueue[Future] = queue.SimpleQueue()  # O(1) per result, unlike wait() over all pending
    running = 0
    it = iter(items)
    with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="mover") as pool:
        while True:
            while running < limit and not (stop and stop()) and (item := next(it, _END)) is not _END:
                pool.submit(fn, item).add_done_callback(finished.put)
                running += 1
            if not running:
                return
            future = finished.get()
            running -= 1
            yield future.result()


class Executor(Protocol):
    """Where a run's work happens: this process's threads, or a cluster (``mover.distributed``)."""

    #: Worker processes the work is spread over (1 for threads): shared limits are divided by it.
    processes: int

    def map(self, fn: Callable[[T], R], items: Iterable[T], *, jobs: int,
            stop: Callable[[], bool] | None = None) -> Iterator[R]:
        """Like ``bounded_map``; ``fn`` and items must pickle for a cluster. Results in completion order."""

    def offloading(self, mover: Mover) -> AbstractContextManager:
        """While entered, the mover's byte transfers run where this executor runs work."""

    def close(self) -> None: ...


class ThreadExecutor:
    """The default executor: one bounded pool of threads in this process."""

    processes = 1

    def map(self, fn, items, *, jobs, stop=None):
        return bounded_map(fn, items, jobs=jobs, stop=stop)

    def offloading(self, mover: Mover) -> AbstractContextManager:
        return nullcontext()

    def close(self) -> None:
        pass


#: Seconds between redraws while large files move (results redraw as they come).
PROGRESS_EVERY = 0.2


def execute(mover: Mover, tasks: Iterable[Task], *, jobs: int, max_error_rate: float = 0.5, min_sample: int = 20,
            total: tuple[int, int] | None = None, progress: Callable[[Progress], None] | None = None,
            executor: Executor | None = None, interrupt: threading.Event | None = None) -> RunResult:
    """Run ``tasks`` with ``jobs`` in flight; returns what happened. ``total`` = (files, bytes), for progress.

    Actions journal to the catalog, which only this process writes, so they
    always run here; a distributed ``executor`` takes their byte transfers.
    Once ``interrupt`` is set (by a signal handler, say) nothing new starts,
    the actions in flight finish, and the result says it was interrupted.
    Whatever fails, this returns: a run always ends with its summary.
    """
    result = RunResult()
    start = time.monotonic()
    moving = [0, 0.0]  # bytes of large transfers still under way, when the bar was last drawn for them
    lock = threading.Lock()

    def tick() -> None:
        if progress:
            progress(Progress(result.total, total[0] if total else None, result.bytes_moved + max(moving[0], 0),
                              total[1] if total else None, result.failed, time.monotonic() - start))

    def streamed(nbytes: int) -> None:  # from the stores' threads, as a large file moves
        with lock:
            moving[0] += nbytes
            due = nbytes > 0 and time.monotonic() - moving[1] >= PROGRESS_EVERY
            if due:
                moving[1] = time.monotonic()
        if due:
            tick()

    mover.transfer_jobs = jobs
    if progress and hasattr(mover, "on_bytes"):
        mover.on_bytes = streamed
    with (executor or ThreadExecutor()).offloading(mover):
        try:
            try:
                run_blocking(_run_all(mover, tasks, jobs, result, max_error_rate, min_sample, tick, interrupt))
            finally:
                if hasattr(mover, "flush_heat"):
                    mover.flush_heat()  # the files restored count as used before the next plan reads heat
            if interrupt is not None and interrupt.is_set():
                raise KeyboardInterrupt
        except KeyboardInterrupt:  # Ctrl-C: drive() let the actions in flight finish first
            result.stopped = "interrupted: the actions already started finished; no new ones were started"
            result.interrupted = True
        except Exception as exc:  # outside any action (the task source, a progress callback): stop, with a summary
            result.stopped = f"stopped after an unexpected error: {type(exc).__name__}: {exc}"
            result.stop_status = exit_status(exc)
    result.seconds = time.monotonic() - start
    result.limits = tuple(s for s in limits() if s.ceiling)  # the endpoints this process has sent requests to
    return result


async def _run_all(mover: Mover, tasks: Iterable[Task], jobs: int, result: RunResult, max_error_rate: float,
                   min_sample: int, tick: Callable[[], None], interrupt: threading.Event | None) -> None:
    def landed(outcome: Outcome) -> None:
        result.add(outcome)
        if not result.stopped:
            result.stopped = _should_stop(outcome, result, max_error_rate, min_sample)
            result.stop_status = outcome.stop if result.stopped else 0
        tick()

    def stop() -> bool:
        return bool(result.stopped) or (interrupt is not None and interrupt.is_set())

    await drive(partial(run_action, mover), tasks, jobs=jobs, on_result=landed, stop=stop)


async def drive(fn: Callable[[T], Awaitable[R]], items: Iterable[T], *, jobs: int, on_result: Callable[[R], None],
                stop: Callable[[], bool]) -> None:
    """Await ``fn`` over ``items`` with ``4 x jobs`` in flight, handing each result to ``on_result``.

    The event-loop twin of ``bounded_map``: ``items`` is pulled lazily and
    nothing new starts once ``stop()`` is true. The loop's worker threads
    (for blocking steps) number ``jobs`` plus headroom, so a commit or fsync
    batch never waits behind a long transfer for a thread. If ``fn`` raises,
    the items already started finish before the error propagates.
    """
    jobs = max(1, jobs)
    in_flight = 4 * jobs
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(jobs + 4, thread_name_prefix="mover"))
    finished: deque[asyncio.Future] = deque()
    landed = asyncio.Event()

    def on_done(future: asyncio.Future) -> None:
        finished.append(future)
        landed.set()

    async def next_finished() -> asyncio.Future:
        while not finished:
            landed.clear()
            await landed.wait()
        return finished.popleft()

    running = 0
    it = iter(items)
    try:
        while True:
            while running < in_flight and not stop() and (item := next(it, _END)) is not _END:
                asyncio.ensure_future(fn(item)).add_done_callback(on_done)
                running += 1
            if not running:
                return
            future = await next_finished()
            running -= 1  # before .result(), which may raise: the finally below must not wait for this one
            on_result(future.result())
    finally:
        while running:  # interrupted, or something raised: let the others finish (journal entries, temp files)
            future = await next_finished()
            running -= 1
            if not future.cancelled() and future.exception() is None:  # (retrieved: asyncio logs nothing)
                on_result(future.result())  # finished work is counted, whatever stopped the run


def _should_stop(outcome: Outcome, result: RunResult, max_error_rate: float, min_sample: int) -> str:
    if outcome.fatal:
        return f"stopped after a fatal error: {outcome.reason}"
    if result.total >= min_sample and result.failed / result.total > max_error_rate:
        return f"stopped: {result.failed} of {result.total} actions failed (more than {max_error_rate:.0%})"
    return ""


__all__ = ["DONE", "FAILED", "NOOP", "SKIPPED", "Executor", "Progress", "RunResult", "Task", "ThreadExecutor",
           "bounded_map", "concurrency_summary", "drive", "execute", "run_action"]
