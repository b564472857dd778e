"""Which version of a file we are looking at, and who is writing to it.

A file's *identity* is (size, mtime_ns, ctime_ns, inode). The mover snapshots
it before a copy and compares after: any write, truncate, chmod or rename
over the file changes at least one of them (ctime moves on every change the
kernel makes to the inode), so "unchanged identity" means "the bytes we copied
are still the bytes on disk".
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tiering.catalog import FileRecord
from tiering.core.display import show_path
from tiering.core.errors import SourceChangedError
from tiering.mover.beneath import Entry
from tiering.stores.checksum import CHUNK, Hasher


@dataclass(frozen=True, slots=True)
class Identity:
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)

    @classmethod
    def of_record(cls, rec: FileRecord) -> Identity | None:
        if rec.size is None or rec.mtime_ns is None or rec.ctime_ns is None or rec.ino is None:
            return None
        return cls(rec.size, rec.mtime_ns, rec.ctime_ns, rec.ino)

    def as_dict(self) -> dict[str, int]:
        return {"size": self.size, "mtime_ns": self.mtime_ns, "ctime_ns": self.ctime_ns, "ino": self.ino}

    def changes(self, later: Identity) -> str:
        """What differs in ``later``, e.g. ``"size 10 -> 0, mtime"``, for an error message."""
        said = []
        for name in ("size", "mtime_ns", "ctime_ns", "ino"):
            was, now = getattr(self, name), getattr(later, name)
            if was != now:
                said.append(f"size {was} -> {now}" if name == "size" else name.removesuffix("_ns"))
        return ", ".join(said)


def copied_version(where: Entry, ident: Identity, after: Identity, checksum: str) -> Identity:
    """The version of ``where`` whose bytes are the copy with ``checksum``: ``after`` (its status once
    copied) when that is ``ident`` (its status before), or differs from it by ctime alone and its bytes,
    read again, are the copy's. Otherwise ``SourceChangedError``.

    Only the ctime moved means only metadata changed (a write moves mtime, and resetting mtime moves
    ctime, which the re-read then judges). On a networked filesystem the client may also learn the
    server's ctime for a change it made itself (an xattr, a flush) only after the caches refresh, while
    the copy ran: re-reading there costs one read of a file that would otherwise be archived again later.
    """
    if after == ident:
        return after
    if (after.size, after.mtime_ns, after.ino) != (ident.size, ident.mtime_ns, ident.ino):
        raise SourceChangedError(f"{show_path(where.rel)}: changed while it was copied ({ident.changes(after)})")
    fd = where.open(os.O_RDONLY | os.O_NONBLOCK)
    try:
        hasher = Hasher(threaded=True)
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := os.readv(fd, [buf]):
            hasher.update(view[:n])
        read_from = Identity.of(os.fstat(fd))
    finally:
        os.close(fd)
    now = Identity.of(where.lstat())
    if read_from != after or now != after or hasher.value != checksum:
        raise SourceChangedError(f"{show_path(where.rel)}: changed while it was copied ({ident.changes(now)})")
    return after


def open_for_writing() -> frozenset[tuple[int, int]]:
    """(device, inode) of every file some process has open for writing, from /proc.

    Read once per run: a file opened for writing later is still caught by the
    identity check after the copy. Processes we may not inspect are skipped.
    """
    found: set[tuple[int, int]] = set()
    for pid in filter(str.isdigit, _listdir("/proc")):
        for fd in _listdir(f"/proc/{pid}/fdinfo"):
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    flags = next((int(line.split()[1], 8) for line in f if line.startswith("flags:")), 0)
                if flags & (os.O_WRONLY | os.O_RDWR):
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                    found.add((st.st_dev, st.st_ino))
            except (OSError, ValueError):
                continue  # the process or fd went away, or is not a file
    return frozenset(found)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
