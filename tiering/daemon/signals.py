"""Signals for unattended runs: a bounded, safe stop, and (for the daemon) reload.

SIGTERM or SIGINT sets ``stop``: no new action starts, the ones in flight
finish. If they have not finished ``stop_timeout`` seconds later (a large
file still uploading), the process exits 0 there and then, abandoning them:
every step is journaled, so the next start (or ``tiering recover``) rolls
each one forward or back, exactly as after a crash. A second SIGTERM/SIGINT
abandons at once. SIGHUP sets ``reload`` when asked for.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Self

log = logging.getLogger("tiering.daemon")


class Signals:
    """Installs the handlers for the length of a ``with`` block (main thread only)."""

    def __init__(self, stop_timeout: float, *, reload: bool = False) -> None:
        self.stop_timeout = stop_timeout
        self.stop = threading.Event()
        self.reload = threading.Event()
        self._handles_reload = reload
        self._saved: dict[int, object] = {}
        self._deadline: threading.Timer | None = None

    def __enter__(self) -> Self:
        wanted = [signal.SIGTERM, signal.SIGINT] + ([signal.SIGHUP] if self._handles_reload else [])
        for signum in wanted:
            self._saved[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        if self._deadline is not None:
            self._deadline.cancel()

    def _on_signal(self, signum: int, frame) -> None:
        if signum == signal.SIGHUP:
            self.reload.set()
            return
        if self.stop.is_set():
            _abandon(f"second {signal.Signals(signum).name}")
        self.stop.set()
        self._deadline = threading.Timer(self.stop_timeout, _abandon, (f"stop_timeout ({self.stop_timeout:g}s)",))
        self._deadline.daemon = True
        self._deadline.start()


def _abandon(why: str) -> None:
    log.warning("%s: abandoning in-flight actions; their journal entries are settled by the next start "
                "or `tiering recover`", why)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(0)
