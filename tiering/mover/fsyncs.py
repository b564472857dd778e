"""Batched fsyncs for an event loop: many files' syncs, one trip to a thread.

A restore must fsync the restored file before it renames it over the stub,
and the stub's directory after, so the journal never records a restore the
disk has not got. An fsync blocks, so it cannot run in the event loop, and a
thread hand-off per fsync costs about as much CPU as a small file's whole
transfer. So requests made while a batch is running wait for the next one,
which runs all of them on one worker thread: files in the order asked, and
each directory once (an fsync of a directory makes every entry change made
before it started durable, so one covers all the renames waiting on it).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tiering.stores.localfile import fsync_path


class SyncBatcher:
    """Coalesces fsync requests from one event loop (not thread-safe: one per loop)."""

    def __init__(self) -> None:
        self._waiting: list[tuple[int | Path, asyncio.Future]] = []
        self._running = False

    async def sync_file(self, fd: int) -> None:
        """Return once the open file ``fd`` has been fsynced (after this call)."""
        await self._request(fd)

    async def sync_dir(self, directory: Path) -> None:
        """Return once an fsync of ``directory`` that started after this call has finished."""
        await self._request(directory)

    async def _request(self, target: int | Path) -> None:
        loop = asyncio.get_running_loop()
        request = loop.create_future()
        self._waiting.append((target, request))
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        await request

    async def _drain(self) -> None:
        batch: list[tuple[int | Path, asyncio.Future]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                errors = await asyncio.to_thread(_sync_all, [target for target, _ in batch])
                for (target, request), error in zip(batch, errors):
                    _settle(request, error)
        except BaseException as exc:  # cancelled, or worse: nobody may wait forever
            failure = exc if isinstance(exc, Exception) else RuntimeError("fsync was interrupted")
            for _, request in batch + self._waiting:
                _settle(request, failure)
            self._waiting = []
            raise
        finally:
            self._running = False


def _sync_all(targets: list[int | Path]) -> list[OSError | None]:
    """fsync each target (an fd, or a directory once however often it is named); one error slot each."""
    done: dict[Path, OSError | None] = {}
    errors: list[OSError | None] = []
    for target in targets:
        try:
            if isinstance(target, int):
                os.fsync(target)
            elif target in done:
                if done[target] is not None:
                    raise done[target]
            else:
                done[target] = None
                fsync_path(target)
        except OSError as exc:
            if isinstance(target, Path):
                done[target] = exc
            errors.append(exc)
        else:
            errors.append(None)
    return errors


def _settle(request: asyncio.Future, error: BaseException | None) -> None:
    if request.done():
        return
    if error is None:
        request.set_result(None)
    else:
        request.set_exception(error)
