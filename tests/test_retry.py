"""The one retry loop (``tiering.stores.retry``): ``call`` and ``call_async`` try, wait and give up alike."""

from __future__ import annotations

import asyncio

import pytest

from tiering.core.errors import RefusedError, TierUnavailableError, TransientError
from tiering.stores.retry import RetryPolicy


class Flaky:
    """Fails with ``TransientError`` ``failures`` times, then answers ``"done"``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.tries = 0

    def __call__(self) -> str:
        self.tries += 1
        if self.tries <= self.failures:
            raise TransientError(f"try {self.tries} failed", store="s3://b", key="k")
        return "done"


POLICY = RetryPolicy(attempts=4, base=0.001, cap=0.002, deadline=5.0)


def test_call_retries_transient_failures_then_answers():
    flaky, waits = Flaky(2), []
    assert POLICY.call(flaky, sleep=waits.append) == "done"
    assert flaky.tries == 3 and len(waits) == 2 and all(0 <= w <= 0.002 for w in waits)


def test_call_and_call_async_give_up_alike():
    flaky = Flaky(10)
    with pytest.raises(TierUnavailableError) as blocking:
        POLICY.call(flaky, sleep=lambda _: None)
    assert flaky.tries == 4

    flaky_async = Flaky(10)

    async def attempt() -> str:
        return flaky_async()

    with pytest.raises(TierUnavailableError) as looping:
        asyncio.run(POLICY.call_async(attempt))
    assert flaky_async.tries == 4
    assert str(blocking.value).split(" (gave up")[0] == str(looping.value).split(" (gave up")[0] == "try 4 failed"
    assert "gave up after 4 attempts" in str(blocking.value) and "gave up after 4 attempts" in str(looping.value)
    assert isinstance(blocking.value.__cause__, TransientError)


def test_call_does_not_retry_other_errors():
    tries = []

    def refused() -> None:
        tries.append(1)
        raise RefusedError("no", store="s3://b", key="k")

    with pytest.raises(RefusedError):
        POLICY.call(refused, sleep=lambda _: None)
    assert len(tries) == 1
