"""One writer at a time: an advisory lock file beside the catalog.

SQLite serialises writes itself, but the catalog's *meaning* needs more: a
mover and a second mover interleaving journal steps for the same file would
defeat recovery. The lock is ``flock`` on ``<catalog>.lock``, which the kernel
drops when the holder dies (even by SIGKILL), so a crash never leaves a stale
lock. The file records who holds it, for the error a second writer gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from tiering.core.errors import CatalogBusyError, CatalogError

__all__ = ["CatalogBusyError", "WriterLock", "describe_holder", "read_holder"]


class WriterLock:
    """An exclusive, non-blocking lock; ``acquire`` raises ``CatalogBusyError`` if held."""

    def __init__(self, path: Path, purpose: str = "") -> None:
        self.path = path
        self.purpose = purpose
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and record who holds it; ``CatalogError`` naming the file when it cannot be
        written (a read-only or full filesystem, no permission): nothing could be journaled there."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise CatalogBusyError(f"{self.path.with_suffix('')} is in use by {describe_holder(holder)}", holder) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "purpose": self.purpose}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError as exc:
            os.close(fd)  # drops the flock
            raise self._unwritable(exc) from exc
        self._fd = fd

    def _unwritable(self, exc: OSError) -> CatalogError:
        return CatalogError(f"catalog {self.path.with_suffix('')}: cannot write its lock file {self.path} "
                            f"({exc.strerror or exc}); expected a writable folder with free space")

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def read_holder(path: Path) -> dict | None:
    """Who holds the lock at ``path`` now, or None if nobody does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def describe_holder(holder: dict) -> str:
    if not holder:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    what = f" ({holder['purpose']})" if holder.get("purpose") else ""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}{what}, started {started}"
