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

``dataset_files`` stages datasets in as units (``restore --dataset``, the
access guard): each operand stands for the whole dataset(s) it belongs to, as
a policy's ``[datasets]`` groups them (``tiering.policy.datasets``).
"""

from __future__ import annotations

import os
import stat as st
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from tiering.core.states import FileState

if TYPE_CHECKING:
    import pyarrow as pa

    from tiering.catalog import FileRecord
    from tiering.policy.datasets import Datasets

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


def dataset_files(operands: Iterable[bytes], hot: Path, datasets: Datasets,
                  accept: Accept | None = None) -> tuple[list[bytes], list[bytes]]:
    """(every file of the datasets ``operands`` belong to, the operands that belong to none).

    A file operand belongs to its own dataset; a folder to the dataset it is in
    or is, else to every dataset under it. Files come out dataset by dataset in
    ``expand``'s order, each once; a file of a dataset nested in another one is
    that inner dataset's only. Only the marker files on the operands' and the
    datasets' own folders are looked at (a marker elsewhere cannot claim them),
    so nothing but the datasets named is walked.
    """
    root = os.fsencode(str(hot))
    units: dict[bytes, None] = {}  # dataset folders, in the order named
    orphans = []
    for rel in operands:
        rel = rel.rstrip(b"/")
        found = _units_of(root, rel, datasets)
        if not found:
            orphans.append(rel)
        units.update(dict.fromkeys(found))
    files: dict[bytes, None] = {}
    for unit in units:
        members = list(expand([unit], hot))
        roots = _roots(root, members, datasets, unit).to_pylist()[:len(members)]
        files.update(dict.fromkeys(m for m, r in zip(members, roots, strict=True) if r == unit and m not in files))
    if accept is not None:
        kept = {}
        for rel in files:
            try:
                info = os.lstat(os.path.join(root, rel))
            except OSError:
                continue  # gone since the walk: nothing of it to stage in
            if st.S_ISREG(info.st_mode) and accept(rel, info):
                kept[rel] = None
        files = kept
    return list(files), orphans


def dataset_of(rel: bytes, hot: Path, datasets: Datasets) -> bytes | None:
    """The folder of the dataset the file ``rel`` belongs to (None: none)."""
    found = _units_of(os.fsencode(str(hot)), rel, datasets)
    return found[0] if found else None


def _units_of(root: bytes, rel: bytes, datasets: Datasets) -> list[bytes]:
    """The dataset folders ``rel`` (a file or folder) belongs to: its own, else (a folder) those under it."""
    full = os.path.join(root, rel) if rel else root
    try:
        folder = st.S_ISDIR(os.lstat(full).st_mode)
    except (OSError, ValueError):
        return []
    if not folder:
        own = _roots(root, [rel], datasets, rel)[0].as_py()
        return [] if own is None else [own]
    probe = os.path.join(rel, next(n for n in (b"-", b"--") if n.decode() not in datasets.markers))
    own = _roots(root, [probe], datasets, probe)[0].as_py()
    if own is not None:
        return [own]
    inside = list(expand([rel], Path(os.fsdecode(root))))
    roots = _roots(root, inside, datasets, rel).to_pylist()[:len(inside)]
    return list(dict.fromkeys(r for r in roots if r is not None))


def _roots(root: bytes, paths: list[bytes], datasets: Datasets, where: bytes) -> pa.Array:
    """``datasets.roots`` of ``paths`` (first in the answer), with the marker files of ``where``'s
    enclosing folders, the only markers outside ``paths`` that can decide them, given too."""
    markers = []
    if datasets.markers:
        folder = where
        while folder:
            folder = folder.rpartition(b"/")[0]
            for name in datasets.markers:
                marker = os.path.join(folder, os.fsencode(name)) if folder else os.fsencode(name)
                if marker not in paths and os.path.lexists(os.path.join(root, marker)):
                    markers.append(marker)
    import pyarrow as pa  # (only --dataset needs Arrow: a plain restore starts without it)

    return datasets.roots(pa.array(paths + markers, pa.binary()))


def released(rel: bytes, info: os.stat_result, hot: Path) -> bool:
    """Whether ``rel`` is a stub tiering released (empty, with our mark)."""
    from tiering.mover.stub import is_stub

    return info.st_size == 0 and is_stub(os.path.join(os.fsencode(str(hot)), rel), follow_symlinks=False)


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
