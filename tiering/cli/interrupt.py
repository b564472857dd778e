"""Ctrl-C and SIGTERM for the verbs that move files by hand (``archive``/``release``/``restore``, ``migrate``).

The first signal sets an event: nothing new starts, what is in flight
finishes, the summary of what was done is printed and the command exits 130.
A second one raises ``KeyboardInterrupt`` at once: the work in flight is
abandoned, and the journal (the mover) or the temp-file rule (migrate) leaves
it for the next start to settle.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["stop_on_signals"]


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event SIGINT and SIGTERM set while the block runs; the previous handlers come back after it."""
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    saved = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
