"""Which files a hand-run ``archive``, ``release`` or ``restore`` acts on.

A person names files and folders (on the command line or in a manifest);
``expand`` turns them into the files under the hot tier, folder by folder,
keeping those a filter accepts.

The contract:

- Operands are paths relative to the hot tier (``bytes``, as
  ``tiering.core.manifest`` returns them) and come out relative to it too.
- A folder is walked with ``os.scandir`` and ``follow_symlinks=False``: a
  symlink inside it (to a file or to a folder) is neither followed nor
  yielded, so the walk never leaves the hot tier through a link. A folder
  whose real path is outside the hot tier (reached through a symlink in
  the operand itself) is not walked: it is passed on as it is, for the
  mover to refuse with its own per-path message.
- Only regular files come out of a walk (no stubs are special: a released
  stub is a regular file). Entries come out in name order, each folder's
  files before its sub-folders, so a run is repeatable.
- Anything that is not a folder (a file, a missing path, a symlink named by
  the user) is passed through unchanged when it passes the filter (a path
  that cannot be stat'ed always does), so its problems are reported by the
  one place that reports per-path problems.
- An operand named twice, or a file reached through two operands, comes out once.
- Memory is bounded by the depth of the tree and the widest folder, never by
  the number of files.

``accept(rel, stat)`` decides from a path and its ``lstat``; the CLI builds it
from the same include/exclude/size/age options as ``tiering migrate``.
Nothing here prints, moves or opens a file for reading.
"""

from __future__ import annotations

import os
import stat as st
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.core.states import FileState

if TYPE_CHECKING:
    from tiering.catalog import FileRecord

Accept = Callable[[bytes, os.stat_result], bool]


def expand(operands: Iterable[bytes], hot: Path, accept: Accept | None = None) -> Iterator[bytes]:
    """Files (paths relative to ``hot``) named by ``operands``, folders walked; see the module's contract."""
    root = os.fsencode(str(hot))
    real_root = os.path.realpath(root)
    seen: set[bytes] = set()  # operands only: a walk yields each file once already
    for rel in operands:
        full = os.path.join(root, rel)
        try:
            info = os.lstat(full)
        except (OSError, ValueError):
            info = None
        if info is not None and st.S_ISDIR(info.st_mode) and _inside(os.path.realpath(full), real_root):
            for found in _walk(root, rel, accept):
                if found not in seen:
                    seen.add(found)
                    yield found
        elif rel not in seen and (info is None or accept is None or not st.S_ISREG(info.st_mode) or accept(rel, info)):
            seen.add(rel)
            yield rel


def expected(action: str, rel: bytes, hot: Path, record: FileRecord | None) -> tuple[str, int]:
    """(the file's state, the bytes ``action`` would move for it) as the hot tier and ``record`` say now.

    For a dry run's lines and the progress bar's total: an archive or release
    of a resident or dirty file copies its size, one of an archived file
    copies nothing (a release re-checks the copy it has), a restore brings
    back a released file's true size. A path that cannot be stat'ed is ``"missing"`` and moves nothing.
    """
    try:
        info = os.lstat(os.path.join(os.fsencode(str(hot)), rel))
    except (OSError, ValueError):
        return "missing", 0
    state = record.state if record is not None else FileState.RESIDENT
    if action == "restore":
        return state, (record.size or 0) if state == FileState.RELEASED and record is not None else 0
    if state not in (FileState.RESIDENT, FileState.DIRTY):
        return state, 0
    return state, info.st_size if st.S_ISREG(info.st_mode) else 0


def _walk(root: bytes, top: bytes, accept: Accept | None) -> Iterator[bytes]:
    pending = [top]
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(os.path.join(root, rel)) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            yield rel  # unreadable folder: the mover names it and says why
            continue
        folders = []
        for entry in entries:
            child = os.path.join(rel, entry.name)
            if entry.is_dir(follow_symlinks=False):
                folders.append(child)
            elif entry.is_file(follow_symlinks=False):
                if accept is None or accept(child, entry.stat(follow_symlinks=False)):
                    yield child
        pending.extend(reversed(folders))


def _inside(path: bytes, root: bytes) -> bool:
    return path == root or path.startswith(root.rstrip(b"/") + b"/")
