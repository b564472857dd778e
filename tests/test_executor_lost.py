"""The executor never loses an action's exception: even a ``CancelledError`` (not an ``Exception``) that an
action raises while nobody cancelled it ends the run with its summary, not with an escaped exception."""

from __future__ import annotations

import asyncio

from tiering.mover.executor import Task, execute, run_action
from tiering.mover.outcome import DONE, Outcome


class LeakyMover:
    """A mover whose archive of ``b"3"`` lets a cancellation it did not ask for escape (a leaked timeout)."""

    async def archive_async(self, path: bytes, tier, storage_class) -> Outcome:
        await asyncio.sleep(0.001)
        if path == b"3":
            raise asyncio.CancelledError()
        return Outcome(path, "archive", DONE, "")


def test_a_cancelled_error_an_action_raises_fails_its_item_and_the_run_ends_with_its_summary():
    result = execute(LeakyMover(), [Task(str(i).encode(), "archive") for i in range(10)], jobs=1)
    assert [f.path for f in result.failures] == [b"3"]
    assert "CancelledError" in result.failures[0].reason
    assert result.stopped and result.stop_status != 0  # a bug stops the run, with an exit status
    assert result.counts[("archive", DONE)] >= 3  # the others it had started were counted


def test_an_action_whose_task_is_really_cancelled_is_cancelled_not_failed():
    class SlowMover:
        async def archive_async(self, path, tier, storage_class):
            await asyncio.sleep(30)

    async def run() -> asyncio.Task:
        task = asyncio.ensure_future(run_action(SlowMover(), Task(b"1", "archive")))
        await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.wait([task], timeout=5)
        return task

    assert asyncio.run(run()).cancelled()
