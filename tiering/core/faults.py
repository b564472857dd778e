"""Fault injection for the crash-safety tests: ``TIERING_CRASH_AT=step[:n]``.

Every journaled step of the mover calls ``crash_point(step)``. When the
environment names that step, the process SIGKILLs itself on the n-th time it
gets there (default the first): no cleanup, no flush, exactly like the OOM
killer or a node losing power halfway through. ``TIERING_CRASH_AT=any:n``
dies at the n-th step of any kind. ``TIERING_CRASH_SIGNAL=INT`` sends that
signal instead of KILL (an operator's Ctrl-C at an exact step).

``TIERING_CRASH_RAISE=KIND`` raises an exception there instead of dying, to
show that every failure path ends the run with its summary and loses nothing:
``bug`` (a ``RuntimeError``, which nothing classifies), ``enospc`` and ``eio``
(``OSError``s: a full disk stops the run, EIO fails one file), ``catalog`` (a
``CatalogError``), ``integrity`` (an ``IntegrityError``, one item), ``tier``
(a ``TierUnavailableError``). Unset, a crash point costs one comparison.
"""

from __future__ import annotations

import errno
import os
import signal
import threading

_SPEC = os.environ.get("TIERING_CRASH_AT", "")
_HEAD, _, _TAIL = _SPEC.rpartition(":")
_STEP, _TARGET = (_HEAD, int(_TAIL)) if _TAIL.isdigit() else (_SPEC, 1)
_SIGNAL = getattr(signal, "SIG" + os.environ.get("TIERING_CRASH_SIGNAL", "KILL").upper().removeprefix("SIG"))
_RAISE = os.environ.get("TIERING_CRASH_RAISE", "")
_seen = 0
_lock = threading.Lock()


def crash_point(step: str) -> None:
    """Die (or raise) here if the environment asks for it (see module docstring)."""
    global _seen
    if not _SPEC or (_STEP != "any" and _STEP != step):
        return
    with _lock:
        _seen += 1
        hit = _seen == _TARGET
    if hit:
        if _RAISE:
            raise injected(_RAISE, step)
        os.kill(os.getpid(), _SIGNAL)


def injected(kind: str, step: str) -> BaseException:
    """The exception ``TIERING_CRASH_RAISE=kind`` raises at ``step``."""
    from tiering.core.errors import CatalogError, IntegrityError, TierUnavailableError

    what = f"injected fault at {step}"
    made = {
        "bug": lambda: RuntimeError(what),
        "enospc": lambda: OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({what})"),
        "eio": lambda: OSError(errno.EIO, f"{os.strerror(errno.EIO)} ({what})"),
        "catalog": lambda: CatalogError(f"catalog cannot be written ({what})"),
        "integrity": lambda: IntegrityError(what),
        "tier": lambda: TierUnavailableError(f"tier unreachable ({what})"),
    }
    if kind not in made:
        raise ValueError(f"TIERING_CRASH_RAISE={kind!r}: expected one of {', '.join(made)}")
    return made[kind]()


#: The kinds ``TIERING_CRASH_RAISE`` takes.
RAISE_KINDS = ("bug", "enospc", "eio", "catalog", "integrity", "tier")

STEPS = (
    "archive:begin", "archive:copied", "archive:verified", "archive:end",
    "release:begin", "release:stubbed", "release:end",
    "restore:begin", "restore:fetched", "restore:renamed", "restore:end",
    "upload:part",  # inside a store's multipart upload, after a part was handed over
)
