"""How paths are shown to people (kept free of heavy imports: every command uses it).

The one rule, for every message, log line and listing that names a path:

- a path whose characters are all printable is shown exactly as it decodes
  (``os.fsdecode``: UTF-8, the file system's encoding), spaces, quotes and backslashes included;
- any other path is shown as the body of a Python string literal (``repr`` without the
  quotes), so it stays on one line and every byte can be read back: a control character
  becomes ``\\n``, ``\\t`` or ``\\xNN``, other unprintable characters ``\\uNNNN``, a byte
  that is not UTF-8 ``\\udcNN`` (how ``os.fsdecode`` carries byte ``NN``) and a backslash ``\\\\``.

Object keys (``str``, as ``migrate`` lists them) follow ``show_key``: exactly when printable,
else ``repr`` with its quotes, so an odd key stands out in a message.

Machine-readable output (``--json``, the catalog, manifests) carries the exact bytes
instead; this is for people only.
"""

from __future__ import annotations

import os


def show_path(path: bytes) -> str:
    """A path for humans: exact where printable, escaped where not (see the module's rule)."""
    text = os.fsdecode(path)
    return text if text.isprintable() else repr(text)[1:-1]


def show_key(key: str) -> str:
    """An object key on one line, whatever its characters (see the module's rule)."""
    return key if key.isprintable() else repr(key)
