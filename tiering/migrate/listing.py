"""Listings as streams: filters, the merge join of source and destination, the removal spool.

Both sides list in key order (the Store contract; ``LocalTree`` walks in the
same order), so one pass over the two streams pairs every source file with its
destination twin without holding either listing: memory stays bounded on
trees of millions of files.
"""

from __future__ import annotations

import fnmatch
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from tiering.core.errors import FatalError, TieringError, exit_status
from tiering.migrate.result import FAILED, ItemResult


@dataclass(frozen=True, slots=True)
class Entry:
    """One file as a listing or ``head`` sees it; ``mtime_ns`` None where the listing does not say."""

    key: str
    size: int
    mtime_ns: int | None = None
    checksum: str = ""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A source file to copy unless the destination already has it (``dst_*`` None: it does not)."""

    key: str
    size: int
    mtime_ns: int | None = None
    dst_size: int | None = None
    dst_mtime_ns: int | None = None


@dataclass(frozen=True, slots=True)
class Removal:
    """A destination file the source does not have (``sync --delete``)."""

    key: str
    size: int
    mtime_ns: int | None = None


@dataclass(frozen=True)
class Filter:
    """Which files take part: globs, size bounds (bytes), age bounds (seconds before ``now_ns``).

    A glob without ``/`` matches the file name at any depth (``*.jpg``); one
    with ``/`` matches the whole relative path (``train/*``; ``*`` crosses
    folders); a trailing ``/`` means everything under that folder. With any
    ``include``, a file must match one; it must match no ``exclude``.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_size: int | None = None
    max_size: int | None = None
    min_age: float | None = None
    max_age: float | None = None
    now_ns: int = 0

    @property
    def needs_age(self) -> bool:
        return self.min_age is not None or self.max_age is not None

    @cached_property
    def _patterns(self) -> tuple[re.Pattern | None, re.Pattern | None]:
        return _compile(self.include), _compile(self.exclude)

    def by_name_size(self, key: str, size: int) -> bool:
        """Whether a file passes the glob and size filters."""
        if (self.min_size is not None and size < self.min_size) or (self.max_size is not None and size > self.max_size):
            return False
        include, exclude = self._patterns
        target = key + "\0" + key.rsplit("/", 1)[-1]
        if include is not None and not include.match(target):
            return False
        return exclude is None or not exclude.match(target)

    def age_ok(self, mtime_ns: int) -> bool:
        """Whether a file modified at ``mtime_ns`` passes the age filters."""
        age = (self.now_ns - mtime_ns) / 1e9
        too_young = self.min_age is not None and age < self.min_age
        return not (too_young or (self.max_age is not None and age > self.max_age))


def _compile(globs: tuple[str, ...]) -> re.Pattern | None:
    # Matched against "path\0name": a glob with "/" must match the path, one without it the name.
    if not globs:
        return None
    parts = []
    for glob in globs:
        glob = glob.lstrip("/") + ("*" if glob.endswith("/") else "")
        body = fnmatch.translate(glob)[4:-3]  # strip "(?s:" and ")\Z"
        parts.append(f"{body}\0.*" if "/" in glob else f"[^\0]*\0{body}")
    return re.compile(r"(?s:" + "|".join(f"(?:{p})" for p in parts) + r")\Z")


def join(src: Iterator, dst: Iterator) -> Iterator[tuple]:
    """Pairs ``(source entry, destination entry)`` by key; None where a side lacks the key.

    Failures in a listing (``ItemResult``) pass through as ``(failure, None)``.
    Raises ``FatalError`` if a listing is out of key order (a join would be wrong).
    """
    s, d = next(src, None), next(dst, None)
    last_s = last_d = ""
    while s is not None or d is not None:
        if isinstance(s, ItemResult):
            yield s, None
            s = next(src, None)
        elif isinstance(d, ItemResult):
            yield d, None
            d = next(dst, None)
        elif d is None or (s is not None and s.key < d.key):
            last_s = _in_order(last_s, s.key, "source")
            yield s, None
            s = next(src, None)
        elif s is None or d.key < s.key:
            last_d = _in_order(last_d, d.key, "destination")
            yield None, d
            d = next(dst, None)
        else:
            last_s, last_d = _in_order(last_s, s.key, "source"), _in_order(last_d, d.key, "destination")
            yield s, d
            s, d = next(src, None), next(dst, None)


def _in_order(last: str, key: str, side: str) -> str:
    if last and key <= last:
        raise FatalError(f"the {side} listed {key!r} after {last!r}: listings must be in key order")
    return key


class Listing:
    """One side's listing, watched: did it reach its natural end with every folder read?

    Iterating yields the side's entries and its per-folder failures as they
    come. A listing that raises (the tier unreachable, a page that cannot be
    read, a malformed answer) ends the stream with one run-stopping
    ``ItemResult`` instead of an exception, so the run reports it and stops.
    ``complete`` is true only after the last entry came with no failure on
    the way: ``sync --delete`` deletes nothing unless both sides' are.
    """

    def __init__(self, side: str, entries: Iterator) -> None:
        self.side = side
        self._entries = entries
        self.complete = False
        self.problem = ""  # the first reason it is not complete

    def __iter__(self) -> Iterator[Entry | ItemResult]:
        try:
            for entry in self._entries:
                if isinstance(entry, ItemResult):
                    self._note(f"{entry.key}: {entry.reason}")
                yield entry
        except (TieringError, OSError) as exc:
            reason = f"the {self.side} listing failed: {_one_line(exc)}"
            self._note(_one_line(exc))
            yield ItemResult(".", "list", FAILED, reason=reason, stop=exit_status(exc))
            return
        self.complete = not self.problem

    def _note(self, problem: str) -> None:
        self.problem = self.problem or problem


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    else:
        text = str(exc)
    return text.splitlines()[0] if text.strip() else type(exc).__name__


class RemovalSpool:
    """Destination-only files, spooled to a temp file until the copies are done and clean."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="tiering-removals-")
        self.count = 0

    def add(self, entry: Entry) -> None:
        # Keys never hold tabs or newlines (encode_key escapes them).
        self._file.write(f"{entry.size}\t{'' if entry.mtime_ns is None else entry.mtime_ns}\t{entry.key}\n")
        self.count += 1

    def __iter__(self) -> Iterator[Removal]:
        self._file.flush()
        self._file.seek(0)
        for line in self._file:
            size, mtime, key = line.rstrip("\n").split("\t", 2)
            yield Removal(key, int(size), int(mtime) if mtime else None)

    def close(self) -> None:
        self._file.close()


__all__ = ["Candidate", "Entry", "Filter", "Listing", "Removal", "RemovalSpool", "join"]
