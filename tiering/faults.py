"""Crash injection for the crash-safety tests: ``TIERING_CRASH_AT=step[:n]``.

Every journaled step of the mover calls ``crash_point(step)``. When the
environment names that step, the process SIGKILLs itself on the n-th time it
gets there (default the first): no cleanup, no flush, exactly like the OOM
killer or a node losing power halfway through. ``TIERING_CRASH_AT=any:n``
dies at the n-th step of any kind. ``TIERING_CRASH_SIGNAL=INT`` sends that
signal instead of KILL (an operator's Ctrl-C at an exact step). Unset, it
costs one comparison.
"""

from __future__ import annotations

import os
import signal
import threading

_SPEC = os.environ.get("TIERING_CRASH_AT", "")
_HEAD, _, _TAIL = _SPEC.rpartition(":")
_STEP, _TARGET = (_HEAD, int(_TAIL)) if _TAIL.isdigit() else (_SPEC, 1)
_SIGNAL = getattr(signal, "SIG" + os.environ.get("TIERING_CRASH_SIGNAL", "KILL").upper().removeprefix("SIG"))
_seen = 0
_lock = threading.Lock()


def crash_point(step: str) -> None:
    """Die here if the environment asks for it (see module docstring)."""
    global _seen
    if not _SPEC or (_STEP != "any" and _STEP != step):
        return
    with _lock:
        _seen += 1
        if _seen == _TARGET:
            os.kill(os.getpid(), _SIGNAL)


STEPS = (
    "archive:begin", "archive:copied", "archive:verified", "archive:end",
    "release:begin", "release:stubbed", "release:end",
    "restore:begin", "restore:fetched", "restore:renamed", "restore:end",
    "upload:part",  # inside a store's multipart upload, after a part was handed over
)
