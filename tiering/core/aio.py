"""Event-loop helpers: running a coroutine from plain code, and batching blocking work.

``run_blocking`` runs a coroutine to completion from code without a loop.

``LoopBatcher``: blocking work asked for on an event loop, done a batch at a
time on a worker thread.

``PerLoop``: one object per event loop (a batcher, a semaphore), made on first
use on that loop and dropped with it: asyncio objects belong to the loop that
made them, and each ``asyncio.run`` is a new loop.

The mover keeps many actions in flight on one loop. Some of their steps block
(a catalog commit waits for an fsync; so does a restore), and a thread trip
per request costs about as much CPU as a small file's whole transfer. A
``LoopBatcher`` queues requests; whenever none of its batches is running, the
next batch (everything queued so far) goes to a worker thread in one trip,
and requests made meanwhile wait for the batch after. Throughput grows with
the number of requests in flight; latency stays about one batch.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: A batch runner gets the requests in order and returns one (result, error) per request.
Outcomes = list[tuple[object, BaseException | None]]


def run_blocking(coro: Coroutine[object, object, R]) -> R:
    """Run ``coro`` to completion from plain code: on a fresh event loop, or on a
    helper thread when this thread already runs one (a loop cannot be re-entered)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1, thread_name_prefix="run-blocking") as pool:
        return pool.submit(asyncio.run, coro).result()


class PerLoop(Generic[T]):
    """``get()`` returns the running loop's own instance from ``make()``; safe from any thread."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        with self._lock:
            value = self._by_loop.get(loop)
            if value is None:
                value = self._by_loop[loop] = self._make()
            return value


class LoopBatcher(Generic[T]):
    """Runs ``run_batch`` over queued requests of one event loop, one batch at a time."""

    def __init__(self, run_batch: Callable[[list[T]], Outcomes]) -> None:
        self._run_batch = run_batch
        self._waiting: list[tuple[T, asyncio.Future]] = []
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def submit(self, request: T):
        """Queue ``request``; return its result (or raise its error) once its batch has run."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._waiting.append((request, future))
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future]] = []
        try:
            await asyncio.sleep(0)  # let the actions that are ready now queue their requests too
            while self._waiting:
                batch, self._waiting = self._waiting, []
                outcomes = await asyncio.to_thread(self._run_batch, [request for request, _ in batch])
                for (_, future), (value, error) in zip(batch, outcomes, strict=True):
                    settle(future, value, error)
                batch = []
        except BaseException as exc:  # cancelled, or a bug: nobody may wait forever
            failure = exc if isinstance(exc, Exception) else RuntimeError("the batch was interrupted")
            for _, future in batch + self._waiting:
                settle(future, None, failure)
            self._waiting = []
            raise
        finally:
            self._running = False


def settle(future, value: object, error: BaseException | None) -> None:
    """Hand a result to whoever waits on ``future`` (a thread's or a loop's), unless they stopped waiting."""
    if future.done():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)


def finish(coroutine: Coroutine[object, None, T]) -> T:
    """Run ``coroutine`` to its end on this thread, without an event loop: for a coroutine whose awaits are
    all on coroutines that never suspend (plain calls wrapped in ``async def``), so that one coroutine is the
    code path of a blocking function and of its ``*_async`` twin."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError(f"{coroutine!r} waited for an event loop")
