"""Batched fsyncs: every request is answered, each with its own error, in as few thread trips as possible."""

from __future__ import annotations

import asyncio
import errno
import os

from tiering.mover.fsyncs import SyncBatcher, _sync_all


def test_many_concurrent_requests_all_complete_and_failures_stay_their_own(tmp_path):
    fds = []
    for i in range(40):
        fds.append(os.open(tmp_path / f"f{i}", os.O_RDWR | os.O_CREAT))
        os.write(fds[-1], b"x" * 100)
    closed = 1_000_000  # far above any fd this process has open

    async def main():
        syncer = SyncBatcher()
        return await asyncio.gather(
            *(syncer.sync_file(fd) for fd in fds),
            *(syncer.sync_dir(tmp_path) for _ in range(10)),
            syncer.sync_file(closed),
            syncer.sync_dir(tmp_path / "missing"),
            return_exceptions=True)

    try:
        results = asyncio.run(main())
    finally:
        for fd in fds:
            os.close(fd)
    assert results[:50] == [None] * 50
    assert isinstance(results[50], OSError) and results[50].errno == errno.EBADF
    assert isinstance(results[51], FileNotFoundError)


def test_a_directory_named_twice_in_a_batch_is_synced_once_and_shares_its_error(tmp_path):
    missing = tmp_path / "gone"
    errors = [error for _, error in _sync_all([tmp_path, missing, tmp_path, missing])]
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], FileNotFoundError) and errors[3] is errors[1]


def test_requests_made_while_a_batch_runs_wait_for_the_next_batch(tmp_path):
    """A request arriving mid-batch must not be answered by the fsync already under way."""
    async def main():
        syncer = SyncBatcher()
        batches = syncer._batches
        first = asyncio.ensure_future(syncer.sync_dir(tmp_path))
        for _ in range(3):  # the first batch is taken and now runs on its thread
            await asyncio.sleep(0)
        assert batches.running and not batches.waiting
        second = asyncio.ensure_future(syncer.sync_dir(tmp_path))
        await asyncio.sleep(0)
        assert batches.waiting == 1 and not first.done()  # queued for the next batch
        await asyncio.gather(first, second)
        assert not batches.running and not batches.waiting

    asyncio.run(main())
