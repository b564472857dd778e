"""Whether a process of this host still exists, by its pid."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """True if a process ``pid`` exists on this host (signal 0: nothing is sent). One we may not signal
    exists too; a zombie, dead but not yet reaped, still does (``tiering.catalog.claims`` tells those apart)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
