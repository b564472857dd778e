"""The concurrency limiter's arithmetic (``tiering.stores.limiter``), driven by real asyncio tasks and threads.

Each test runs requests as tasks that take a slot, hold it a moment (a real
sleep) and give it back saying how the request ended; the limits asserted are
what AIMD with one cut per congestion event must give.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tiering.core.errors import ThrottledError, TransientError
from tiering.stores.limiter import OK, OTHER, THROTTLED, Limiter, limiter_for, limits, parse_concurrency
from tiering.stores.retry import RetryPolicy


async def hold_all(limiter: Limiter, n: int) -> list:
    """``n`` tasks that each take a slot; returns their slots once all have one."""
    return await asyncio.gather(*(limiter.acquire_async() for _ in range(n)))


async def requests(limiter: Limiter, n: int, *, seconds: float = 0.01, tasks: int = 12,
                   seen: list[int] | None = None) -> None:
    """``n`` successful requests from ``tasks`` workers, each holding its slot ``seconds``."""
    left = [n]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            slot = await limiter.acquire_async()
            if seen is not None:
                seen.append(limiter.state().in_flight)
            await asyncio.sleep(seconds)
            limiter.release(slot, OK)

    await asyncio.gather(*(worker() for _ in range(tasks)))


def test_a_burst_of_throttles_from_one_moment_halves_the_limit_once():
    async def main() -> tuple[int, int]:
        limiter = Limiter("e")
        slots = await hold_all(limiter, 16)
        for slot in slots:  # all 16 were in flight when the store said SlowDown
            limiter.release(slot, THROTTLED)
        return limiter.state().limit, limiter.cuts

    assert asyncio.run(main()) == (8, 1)  # not 16 -> 8 -> 4 -> 2 -> 1


def test_each_new_congestion_halves_again_down_to_the_floor_and_never_below():
    async def main() -> list[int]:
        limiter = Limiter("e")
        limits = []
        for in_flight in (16, 8, 4, 2, 1, 1):  # each time as many requests as the limit allows
            slots = await hold_all(limiter, in_flight)
            limiter.release(slots[0], THROTTLED)  # started after the last cut: news
            for slot in slots[1:]:
                limiter.release(slot, THROTTLED)  # the same moment: no further cut
            limits.append(limiter.state().limit)
        return limits

    assert asyncio.run(main()) == [8, 4, 2, 1, 1, 1]


def test_cuts_follow_in_flight_requests_then_grow_by_one_per_window_back_to_the_ceiling():
    async def main() -> tuple[list[int], int]:
        limiter = Limiter("e")
        slots = await hold_all(limiter, 12)  # the callers' peak: 12
        for slot in slots[:8]:
            limiter.release(slot, OK)
        limiter.release(slots[8], THROTTLED)  # 4 in flight then: min(inf, 4) * 0.5 = 2
        for slot in slots[9:]:
            limiter.release(slot, THROTTLED)  # started before the cut: no second cut
        after_cut = limiter.state().limit
        limits = [after_cut]
        for _ in range(12):  # each window: `limit` successes with requests waiting -> +1
            await requests(limiter, limits[-1], seconds=0.05, tasks=12)  # (long enough for a loaded machine's jitter)
            limits.append(limiter.state().limit)
        return limits, limiter.cuts

    limits, cuts = asyncio.run(main())
    assert cuts == 1
    assert limits[:11] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]  # 12: back at the ceiling, uncapped again
    assert limits[11:] == [12, 12]


def test_in_flight_never_exceeds_the_limit_and_waiters_are_served_when_it_grows():
    async def main() -> tuple[int, int]:
        limiter = Limiter("e")
        slots = await hold_all(limiter, 10)
        limiter.release(slots[0], THROTTLED)  # 10 in flight: limit 5
        for slot in slots[1:]:
            limiter.release(slot, OTHER)  # a reset or a 500: says nothing about load
        seen: list[int] = []
        await requests(limiter, 5, tasks=10, seen=seen)  # one window: 5 -> 6
        return max(seen), limiter.state().limit

    most, limit = asyncio.run(main())
    assert most == 5 and limit == 6


def test_a_latency_rise_cuts_by_the_gradient_and_a_steady_one_grows_nothing():
    async def main() -> tuple[int, int, int]:
        limiter = Limiter("e")
        slots = await hold_all(limiter, 8)
        limiter.release(slots[0], THROTTLED)  # limit 4, ceiling 8
        for slot in slots[1:]:
            limiter.release(slot, OTHER)
        await requests(limiter, 4, seconds=0.05, tasks=4)  # baseline 50 ms; the limit was reached: +1
        steady = limiter.state().limit
        await requests(limiter, steady, seconds=0.5, tasks=steady)  # 10x slower: the store is queueing
        return steady, limiter.state().limit, limiter.cuts

    steady, slowed, cuts = asyncio.run(main())
    assert steady == 5
    assert cuts == 2 and slowed == 2  # 5 * max(0.5, 2 * baseline / median) = 5 * 0.5 -> 2 (2.5, whole requests)


def test_a_fixed_limit_never_moves():
    async def main() -> tuple[int, int, int]:
        limiter = Limiter("e", fixed=3)
        seen: list[int] = []
        slots = await asyncio.gather(*(limiter.acquire_async() for _ in range(3)))
        for slot in slots:
            limiter.release(slot, THROTTLED)
        await requests(limiter, 20, seconds=0.005, tasks=8, seen=seen)
        return limiter.state().limit, max(seen), limiter.cuts

    assert asyncio.run(main()) == (3, 3, 0)


def test_a_cancelled_waiter_leaves_no_slot_behind():
    async def main() -> tuple[int, int]:
        limiter = Limiter("e", fixed=1)
        held = await limiter.acquire_async()
        waiting = asyncio.ensure_future(limiter.acquire_async())
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        limiter.release(held, OK)
        again = await asyncio.wait_for(limiter.acquire_async(), 1)  # the slot came back
        limiter.release(again, OK)
        state = limiter.state()
        return state.in_flight, state.waiting

    assert asyncio.run(main()) == (0, 0)


def test_threads_and_coroutines_share_one_endpoint_limit():
    limiter = Limiter("e", fixed=2)
    most = [0]
    lock = threading.Lock()

    def request() -> None:
        slot = limiter.acquire()
        with lock:
            most[0] = max(most[0], limiter.state().in_flight)
        time.sleep(0.01)
        limiter.release(slot, OK)

    async def main() -> None:
        threads = [threading.Thread(target=request) for _ in range(6)]
        for t in threads:
            t.start()
        await requests(limiter, 6, seconds=0.01, tasks=4, seen=None)
        for t in threads:
            t.join()

    asyncio.run(main())
    assert most[0] <= 2 and limiter.state().in_flight == 0


def test_the_retry_loop_holds_a_slot_per_attempt_and_reports_throttles():
    limiter = Limiter("e")
    policy = RetryPolicy(attempts=4, base=0.001, cap=0.001).limited(limiter)
    answers = [ThrottledError("503 SlowDown"), TransientError("reset"), "ok"]
    inside: list[int] = []

    async def attempt() -> str:
        inside.append(limiter.state().in_flight)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert asyncio.run(policy.call_async(attempt)) == "ok"
    assert inside == [1, 1, 1] and limiter.throttles == 1 and limiter.cuts == 1 and limiter.state().in_flight == 0
    assert policy == RetryPolicy(attempts=4, base=0.001, cap=0.001)  # the limiter is not part of the policy


def test_one_limiter_per_endpoint_and_the_concurrency_setting():
    assert limiter_for("http://one:1") is limiter_for("http://one:1", "auto")
    assert limiter_for("http://one:1") is not limiter_for("http://two:1")
    assert not limiter_for("http://one:1", 4).adaptive and limiter_for("http://one:1", 4).state().limit == 4
    assert parse_concurrency("auto") == "auto" and parse_concurrency(8) == 8
    for bad in (0, -1, "fast", True, 1.5):
        with pytest.raises(ValueError):
            parse_concurrency(bad)


def test_a_blocking_request_on_the_loops_own_thread_never_waits_for_the_tasks_it_would_stall():
    """Before: a listing page pulled by the loop's task source waited for a slot only the loop's tasks could
    free, and ``migrate`` from a store hung once the limit was cut."""
    async def main() -> int:
        limiter = Limiter("e", fixed=1)
        held = await limiter.acquire_async()
        policy = RetryPolicy().limited(limiter)
        listed = policy.call(lambda: "page")  # on the loop's thread, the only slot taken
        limiter.release(held, OK)
        return listed, limiter.state().in_flight

    assert asyncio.run(asyncio.wait_for(main(), 5)) == ("page", 0)


def test_the_progress_line_and_the_metrics_show_each_endpoints_limit():
    from tiering.cli.progress import limits_text
    from tiering.daemon.metrics import Metrics

    async def main() -> None:
        limiter = limiter_for("http://shown:9000")
        slots = await hold_all(limiter, 6)
        limiter.release(slots[0], THROTTLED)  # 6 in flight: cut to 3 of 6
        for slot in slots[1:]:
            limiter.release(slot, OTHER)

    asyncio.run(main())
    state = next(s for s in limits() if s.endpoint == "http://shown:9000")
    assert (state.limit, state.ceiling, state.throttles, state.cuts) == (3, 6, 1, 1)
    assert limits_text([state]) == "limit 3/6"
    assert limits_text([limiter_for("http://fixed:9000", 8).state()]) == "limit 8"
    text = Metrics().render()
    assert 'tiering_store_concurrency_limit{endpoint="http://shown:9000",mode="auto"} 3\n' in text
    assert 'tiering_store_concurrency_ceiling{endpoint="http://shown:9000"} 6\n' in text
    assert 'tiering_store_throttles_total{endpoint="http://shown:9000"} 1\n' in text
    assert 'tiering_store_concurrency_limit{endpoint="http://fixed:9000",mode="fixed"} 8\n' in text
