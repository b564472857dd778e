"""How many requests may be in flight to one store endpoint: adaptive (AIMD) or fixed.

Every request to a capacity tier (each attempt of the retry loop, ``stores.retry``)
holds a slot of its endpoint's ``Limiter`` while it is on the wire, and gives it
back with what happened. One limiter per endpoint per process (``limiter_for``),
shared by every task, thread and store of that endpoint: the mover's actions,
``migrate``'s transfers and the parts of a large file all draw from it, so a
process backs off as a whole. Waiting requests are served in order; the retry
loop's backoff sleeps hold no slot.

The rule (``[tiers.NAME] concurrency = "auto"``, the default):

- **Throttle** (``ThrottledError``: 503 SlowDown, 429, OSS ServerBusy ...):
  multiplicative decrease, ``limit = max(floor, min(limit, in flight) x 0.5)``.
  Once per congestion event: a request that started before the last cut tells
  nothing new (TCP's one cut per round trip), so a burst of 503s from one
  overloaded moment halves the limit once, not down to the floor.
- **Window of successes**: after ``limit`` requests have succeeded since the
  last change, the window closes. If the limit was reached during it (requests
  had to wait), additive increase: ``limit + 1``. Other transient failures
  (a reset, a 500) count as neither: they say nothing about load.
- **Latency** (a gradient, as in Netflix's Gradient2, but only as a brake): the
  window's median request time is compared with a long-term baseline (an
  exponential average of past windows' medians, so a lasting change of
  workload, larger objects say, becomes the new normal within ~10 windows).
  Above ``TOLERANCE`` x the baseline the store is queueing our requests:
  ``limit x max(0.5, TOLERANCE x baseline / median)``, and no increase.
- **Floor and ceiling**: never below ``floor`` (1). The ceiling is what the
  callers themselves allow (the mover's ``[concurrency] jobs``, ``migrate
  --jobs``): the limiter starts uncapped, learns the most requests its callers
  ever had in flight or waiting (``peak``), and once growth reaches it is
  uncapped again. So with no throttling a run goes exactly as it did without
  a limiter.

``concurrency = N`` fixes the limit at N requests per endpoint: no adaptation.
``limits()`` is every endpoint's state, for the progress line, the run's
summary (which ``tiering status`` shows) and the daemon's metrics.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass

#: Multiplicative decrease on a throttle.
BACKOFF = 0.5
#: A window's median request time this many times the baseline means the store is queueing.
TOLERANCE = 2.0
#: How far each window's median moves the latency baseline.
BASELINE_WEIGHT = 0.1
FLOOR = 1

#: What a request's end tells the limiter.
OK, THROTTLED, OTHER = "ok", "throttled", "other"

AUTO = "auto"


@dataclass(frozen=True, slots=True)
class LimitState:
    """One endpoint's limiter, as reports show it."""

    endpoint: str
    adaptive: bool
    limit: int  # requests allowed in flight now (auto, uncut: the callers' own peak)
    ceiling: int  # the most it grows back to
    in_flight: int
    waiting: int
    throttles: int  # throttle answers seen
    cuts: int  # decreases made (on a throttle or a latency rise)

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        """``6/16 (auto, 12 throttled, 3 cuts)`` or ``8 (fixed)``."""
        if not self.adaptive:
            return f"{self.limit} (fixed)"
        return f"{self.limit}/{self.ceiling} (auto, {self.throttles} throttled, {self.cuts} cuts)"


class Slot:
    """A request's place in flight: when it started, and under which cut (``generation``)."""

    __slots__ = ("generation", "started")

    def __init__(self, generation: int) -> None:
        self.generation = generation
        self.started = time.monotonic()


class _Waiter:
    __slots__ = ("slot", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.slot: Slot | None = None  # set, under the lock, when a slot is handed over


class Limiter:
    """The slots of one endpoint, for threads (``acquire``) and coroutines (``acquire_async``) alike."""

    def __init__(self, endpoint: str, *, fixed: int | None = None, floor: int = FLOOR) -> None:
        self.endpoint = endpoint
        self.adaptive = fixed is None
        self.floor = max(1, floor)
        self._limit = float(fixed) if fixed else math.inf
        self._lock = threading.Lock()
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()
        self._peak = 0
        self._generation = 0
        self._window: list[float] = []
        self._saturated = False
        self._baseline: float | None = None
        self.throttles = self.cuts = 0

    # -- taking and giving back slots ----------------------------------------------------------

    def acquire(self) -> Slot:
        """A slot, waiting (blocking this thread) until one is free.

        Called on an event loop's own thread (a blocking call the loop makes, like a
        listing page pulled by the loop's task source), it takes a slot at once,
        over the limit if need be: waiting there would stall the very tasks that
        free slots.
        """
        with self._lock:
            slot = self._admit() or (self._overdraw() if _on_a_loop() else None)
            if slot is not None:
                return slot
            event = threading.Event()
            waiter = self._wait(event.set)
        event.wait()
        return waiter.slot

    async def acquire_async(self) -> Slot:
        """A slot, waiting (without blocking the loop) until one is free."""
        with self._lock:
            slot = self._admit()
            if slot is not None:
                return slot
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            waiter = self._wait(lambda: loop.call_soon_threadsafe(_resolve, future))
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                granted = waiter.slot is not None
                if not granted:
                    self._waiters.remove(waiter)
            if granted:  # handed over while we were being cancelled: give it to the next
                self.release(waiter.slot, OTHER)
            raise
        return waiter.slot

    def release(self, slot: Slot, outcome: str) -> None:
        """Give ``slot`` back; ``outcome`` (``OK``, ``THROTTLED``, ``OTHER``) is what the request met."""
        elapsed = time.monotonic() - slot.started
        with self._lock:
            self._in_flight -= 1
            self.throttles += outcome == THROTTLED
            if self.adaptive:
                if outcome == THROTTLED:
                    self._throttled(slot)
                elif outcome == OK:
                    self._succeeded(elapsed)
            woken = self._hand_over()
        self._wake(woken)

    def _wake(self, woken: list[_Waiter]) -> None:
        for waiter in woken:
            try:
                waiter.wake()
            except RuntimeError:  # its event loop is closed: nobody will use the slot, pass it on
                self.release(waiter.slot, OTHER)

    def _admit(self) -> Slot | None:
        """(Under the lock.) A slot now, if one is free and nobody waits before us."""
        if self._waiters or self._in_flight >= self._allowed():
            return None
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        if self._in_flight >= self._allowed():
            self._saturated = True
        return Slot(self._generation)

    def _overdraw(self) -> Slot:
        """(Under the lock.) A slot now, whatever the limit says."""
        self._in_flight += 1
        return Slot(self._generation)

    def _wait(self, wake: Callable[[], None]) -> _Waiter:
        """(Under the lock.) Queue a waiter."""
        waiter = _Waiter(wake)
        self._waiters.append(waiter)
        self._saturated = True
        self._peak = max(self._peak, self._in_flight + len(self._waiters))
        return waiter

    def _hand_over(self) -> list[_Waiter]:
        """(Under the lock.) Give free slots to the first waiters; returns them, to be woken."""
        woken = []
        while self._waiters and self._in_flight < self._allowed():
            waiter = self._waiters.popleft()
            self._in_flight += 1
            waiter.slot = Slot(self._generation)
            woken.append(waiter)
        return woken

    def _allowed(self) -> int:
        return max(self.floor, math.floor(self._limit)) if self._limit != math.inf else 1 << 30

    # -- the rule ------------------------------------------------------------------------------

    def _throttled(self, slot: Slot) -> None:
        if slot.generation == self._generation:  # the first word of this congestion: cut once
            self._cut(min(self._limit, self._in_flight + 1) * BACKOFF)

    def _succeeded(self, elapsed: float) -> None:
        self._window.append(elapsed)
        if len(self._window) < max(1, min(self._limit, self._peak)):
            return
        median = statistics.median(self._window)
        baseline = self._baseline if self._baseline is not None else median
        self._baseline = baseline + BASELINE_WEIGHT * (median - baseline)
        if median > TOLERANCE * baseline:
            self._cut(min(self._limit, self._peak) * max(BACKOFF, TOLERANCE * baseline / median))
            return
        if self._saturated and self._limit != math.inf:
            self._limit += 1
            if self._limit >= self._peak:
                self._limit = math.inf  # grown back to what the callers allow: uncapped again
        self._new_window()

    def _cut(self, limit: float) -> None:
        self._limit = max(float(self.floor), limit)
        self._generation += 1
        self.cuts += 1
        self._new_window()

    def _new_window(self) -> None:
        self._window = []
        self._saturated = False

    # -- reports -------------------------------------------------------------------------------

    def state(self) -> LimitState:
        with self._lock:
            ceiling = self._peak if self.adaptive else int(self._limit)
            limit = ceiling if self._limit == math.inf else min(self._allowed(), max(ceiling, self.floor))
            return LimitState(self.endpoint, self.adaptive, limit, ceiling, self._in_flight, len(self._waiters),
                              self.throttles, self.cuts)


def _on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


_limiters: dict[str, Limiter] = {}
_registry_lock = threading.Lock()


def limiter_for(endpoint: str, concurrency: int | str | None = AUTO) -> Limiter:
    """The process's limiter of ``endpoint``; ``concurrency`` is ``"auto"`` (or None) or a fixed number.

    The first store opened on an endpoint sets its mode; a later store asking for
    another mode gets a new limiter (a new configuration, a daemon's reload), and
    stores opened before keep the old one until they are closed.
    """
    fixed = None if concurrency in (None, AUTO) else int(concurrency)
    with _registry_lock:
        limiter = _limiters.get(endpoint)
        if limiter is None or (None if limiter.adaptive else int(limiter._limit)) != fixed:
            limiter = _limiters[endpoint] = Limiter(endpoint, fixed=fixed)
        return limiter


def limits() -> list[LimitState]:
    """Every endpoint's limiter in this process, for reports."""
    with _registry_lock:
        found = list(_limiters.values())
    return [limiter.state() for limiter in found]


def reset_limits() -> None:
    """Forget every endpoint's limiter (a new run in a long-lived process starts from the ceiling again)."""
    with _registry_lock:
        _limiters.clear()


def parse_concurrency(value: object) -> int | str:
    """``"auto"`` or a whole number >= 1 (as the config gives it); ValueError otherwise."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, bool):
        raise ValueError(value)
    number = int(value) if isinstance(value, (int, str)) else None
    if number is None or number < 1:
        raise ValueError(value)
    return number
