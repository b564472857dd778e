"""How the mover issues its calls on the hot tier: inline on the event loop, or on a bounded thread pool.

The mover keeps many files in flight on one event loop. What it does to each
file on the hot tier (open the directory beneath the root, ``lstat``, open,
``fstat``, take the restore lock, copy xattrs, ``fchown``/``utime``, rename,
close) is a handful of small blocking calls:

- on a local disk each takes microseconds, less than a hand-off to a thread
  and back, so they run **inline** and the loop never waits long;
- on a networked filesystem (a FUSE client, Lustre, GPFS, NFS...) each is a
  round trip to a server, 0.1 to several milliseconds: inline they would run
  one at a time, and a restore of small files spends most of its time waiting
  on them (measured on a SeaweedFS FUSE mount: ~20 calls a file, 0.3-0.7 ms
  each, ~3x slower than a plain download). On **threads** the round trips of
  different files overlap, up to ``jobs`` at a time.

``[hot] io`` chooses (``tiering.core.mounts.hot_io``: "auto" by the mount's
type). The figures that set the default are in the README's performance
section (``python -m bench.mover_vs_peers --io inline,threads``).
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

R = TypeVar("R")


class HotIO:
    """Runs blocking hot-tier calls for coroutines: ``await io(fn, *args)``.

    ``mode`` is "inline" (call ``fn`` at once, on the loop's thread) or
    "threads" (on a pool of up to ``workers`` threads shared by every loop of
    the mover; made on first use, shut down by ``close``).
    """

    def __init__(self, mode: str, workers: int) -> None:
        if mode not in ("inline", "threads"):
            raise ValueError(f"hot-tier io mode must be inline or threads, not {mode!r}")
        self.mode = mode
        self.workers = max(1, workers)
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    @property
    def threaded(self) -> bool:
        return self.mode == "threads"

    async def __call__(self, fn: Callable[..., R], /, *args, **kwargs) -> R:
        if self.mode == "inline":
            return fn(*args, **kwargs)
        call = functools.partial(fn, *args, **kwargs) if kwargs else (lambda: fn(*args))
        return await asyncio.get_running_loop().run_in_executor(self._executor(), call)

    async def off_loop(self, fn: Callable[..., R], /, *args, **kwargs) -> R:
        """``await self(fn, ...)``, but on the pool in both modes: for a call that may wait on the
        device even on a local disk. A truncate that frees blocks waits for them to be discarded on a
        filesystem mounted with ``discard`` (0.1-1 ms on a virtual disk, and behind the journal's
        commit); inline, every other file's transfer on the loop would wait with it."""
        call = functools.partial(fn, *args, **kwargs) if kwargs else (lambda: fn(*args))
        return await asyncio.get_running_loop().run_in_executor(self._executor(), call)

    async def acquire(self, fn: Callable[..., R], undo: Callable[[R], object], /, *args, **kwargs) -> R:
        """``await self(fn, ...)`` for a call that acquires something (a descriptor, a lock).

        If the caller is cancelled while ``fn`` runs on a thread, the thread
        still finishes it: ``undo`` is then called on what it acquired, so
        nothing is left open behind a cancelled action.
        """
        if self.mode == "inline":
            return fn(*args, **kwargs)
        future = asyncio.ensure_future(self(fn, *args, **kwargs))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda f: f.cancelled() or f.exception() is not None or undo(f.result()))
            raise

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="tiering-hot-io")
            return self._pool

    def close(self) -> None:
        """Let the pool's threads go once their calls are done (a later call makes a new pool)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)
