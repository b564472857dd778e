"""How paths are shown to people (kept free of heavy imports: every command uses it)."""

from __future__ import annotations

import os


def show_path(path: bytes) -> str:
    """A path for humans: exact where printable, escapes where not."""
    text = os.fsdecode(path)
    return text if text.isprintable() else repr(text)[1:-1]
