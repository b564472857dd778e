"""The one retry loop: capped exponential backoff with full jitter.

Only ``TransientError`` is retried; everything else propagates at once. When
the policy is spent the failure becomes ``TierUnavailableError``: a request
that kept failing for the whole policy says the tier is in trouble, and the
run stops rather than fail every other file the same slow way. SDK
clients are configured with their own retries switched off, so a failing
request is retried here and nowhere else, and a dead server is reported
within ``deadline`` seconds rather than after an SDK's minutes of patience.

A policy may carry its endpoint's concurrency ``Limiter`` (``limited``; the
store's ``open_store`` binds it): each attempt then holds one of its slots
while it runs, not while it waits to try again, and tells it how the attempt
ended (a throttle, a success and its time), so the endpoint's limit follows the
store's pushback (``stores.limiter``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from tiering.core.aio import finish
from tiering.core.errors import ThrottledError, TierUnavailableError, TransientError
from tiering.stores.limiter import OK, OTHER, THROTTLED, Limiter, Slot

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before giving up on a transient failure."""

    attempts: int = 6  # total tries, the first included
    base: float = 0.1  # seconds before the first retry (before jitter)
    cap: float = 5.0  # longest single wait
    deadline: float = 30.0  # no new attempt starts after this many seconds
    #: The endpoint's concurrency limiter each attempt holds a slot of (None: no limit); not part of the
    #: policy's identity, and left behind when the policy travels to another process.
    limiter: Limiter | None = field(default=None, compare=False, repr=False)

    def limited(self, limiter: Limiter | None) -> RetryPolicy:
        """This policy, its attempts holding slots of ``limiter``."""
        return replace(self, limiter=limiter)

    def __reduce__(self):
        return (RetryPolicy, (self.attempts, self.base, self.cap, self.deadline))

    def delay(self, attempt: int) -> float:
        """The wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))

    def call(self, fn: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
        """Run ``fn`` until it succeeds, fails for good, or the policy is spent."""
        async def attempt() -> T:
            return fn()

        async def wait(seconds: float) -> None:
            sleep(seconds)

        async def hold() -> Slot:
            return self.limiter.acquire()

        # The blocking and the event-loop callers share one loop (~0.6 us more per call than a loop of its own).
        return finish(self._tries(attempt, wait, hold if self.limiter else None))

    async def call_async(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``call`` for a coroutine function: the same tries and waits, without blocking the event loop."""
        return await self._tries(fn, asyncio.sleep, self.limiter.acquire_async if self.limiter else None)

    async def _tries(self, fn: Callable[[], Awaitable[T]], sleep: Callable[[float], Awaitable[None]],
                     hold: Callable[[], Awaitable[Slot]] | None = None) -> T:
        """The one retry loop, for ``call`` and ``call_async``; each attempt in a slot of ``hold`` when given."""
        start = time.monotonic()
        attempt = 1
        while True:
            try:
                return await (self._limited(fn, hold) if hold else fn())
            except TransientError as exc:
                await sleep(self._wait_or_give_up(exc, attempt, start))
                attempt += 1

    async def _limited(self, fn: Callable[[], Awaitable[T]], hold: Callable[[], Awaitable[Slot]]) -> T:
        """One attempt in a limiter slot, the slot given back with how the attempt ended."""
        slot = await hold()
        outcome = OTHER
        try:
            result = await fn()
            outcome = OK
            return result
        except ThrottledError:
            outcome = THROTTLED
            raise
        finally:
            self.limiter.release(slot, outcome)

    def _wait_or_give_up(self, exc: TransientError, attempt: int, start: float) -> float:
        """Seconds to wait before the next try; raises (saying how hard we tried) once the policy is spent."""
        wait = self.delay(attempt)
        spent = time.monotonic() - start
        if attempt >= self.attempts or spent + wait > self.deadline:
            raise TierUnavailableError(
                f"{exc} (gave up after {attempt} attempts in {spent:.1f}s)", store=exc.store, key=exc.key
            ) from exc
        return wait


DEFAULT_RETRY = RetryPolicy()


