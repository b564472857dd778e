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

import os
from pathlib import Path

from tiering.core.aio import LoopBatcher, Outcomes
from tiering.stores.localfile import fsync_path


class SyncBatcher:
    """Coalesces fsync requests from one event loop (not thread-safe: one per loop)."""

    def __init__(self) -> None:
        self._batches: LoopBatcher[int | Path | _DirFd] = LoopBatcher(_sync_all)

    async def sync_file(self, fd: int) -> None:
        """Return once the open file ``fd`` has been fsynced (after this call)."""
        await self._batches.submit(fd)

    async def sync_dir(self, directory: Path | int) -> None:
        """Return once an fsync of ``directory`` (a path, or an open descriptor of it) that started
        after this call has finished."""
        await self._batches.submit(_DirFd(directory) if isinstance(directory, int) else directory)


class _DirFd(int):
    """An open directory's descriptor: fsynced once per batch however many descriptors name it."""

    __slots__ = ()


def _sync_all(targets: list[int | Path | _DirFd]) -> Outcomes:
    """fsync each target (an fd, or a directory once however often it is named); an outcome each."""
    done: dict[object, OSError | None] = {}
    outcomes: Outcomes = []
    for target in targets:
        key: object = target
        try:
            if isinstance(target, _DirFd):
                st = os.fstat(target)
                key = (st.st_dev, st.st_ino)
            if isinstance(target, int) and not isinstance(target, _DirFd):
                os.fsync(target)
            elif key in done:
                if done[key] is not None:
                    raise done[key]
            else:
                done[key] = None
                if isinstance(target, _DirFd):
                    os.fsync(target)
                else:
                    fsync_path(target)
        except OSError as exc:
            if not isinstance(target, int) or isinstance(target, _DirFd):
                done[key] = exc
            outcomes.append((None, exc))
        else:
            outcomes.append((None, None))
    return outcomes
