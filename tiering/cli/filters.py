"""The file filters ``archive``/``release``/``restore`` share with ``migrate``: globs, sizes, ages.

The options read and mean the same as ``tiering migrate``'s (``tiering.migrate.listing.Filter``
decides); here they become the ``accept`` predicate of ``tiering.ops.selection.expand``.
"""

from __future__ import annotations

import os
import stat as st
import time
from typing import Annotated

import typer

Include = Annotated[list[str] | None, typer.Option("--include", metavar="GLOB",
                                                   help="Only files matching this glob (repeatable; '*.pt', "
                                                        "'train/*', 'logs/').")]
Exclude = Annotated[list[str] | None, typer.Option("--exclude", metavar="GLOB",
                                                   help="Leave out files matching this glob (repeatable).")]
MinSize = Annotated[str | None, typer.Option("--min-size", metavar="SIZE", help="Only files at least this big (1MiB).")]
MaxSize = Annotated[str | None, typer.Option("--max-size", metavar="SIZE", help="Only files at most this big.")]
MinAge = Annotated[str | None, typer.Option("--min-age", metavar="DURATION",
                                            help="Only files modified at least this long ago (7d).")]
MaxAge = Annotated[str | None, typer.Option("--max-age", metavar="DURATION",
                                            help="Only files modified at most this long ago.")]


def accept(include: list[str] | None, exclude: list[str] | None, min_size: str | None, max_size: str | None,
           min_age: str | None, max_age: str | None, *, sized: bool = True):
    """The predicate ``(rel, lstat) -> bool`` for these options, or None when none is given.

    ``sized`` False (restore: the hot tier holds zero-length stubs) refuses the size options.
    """
    if not any((include, exclude, min_size, max_size, min_age, max_age)):
        return None
    from tiering.core.errors import UserError
    from tiering.core.units import parse_duration, parse_size
    from tiering.migrate.listing import Filter  # (here: a run without filters does not load tiering.migrate)

    if not sized and (min_size or max_size):
        raise UserError("--min-size/--max-size: released files are stubs on the hot tier; filter restores by "
                        "name or age")

    def parsed(parse, text: str | None, flag: str):
        try:
            return None if text is None else parse(text)
        except ValueError as exc:
            raise UserError(f"{flag}: {exc}") from None

    flt = Filter(tuple(include or ()), tuple(exclude or ()), parsed(parse_size, min_size, "--min-size"),
                 parsed(parse_size, max_size, "--max-size"), parsed(parse_duration, min_age, "--min-age"),
                 parsed(parse_duration, max_age, "--max-age"), time.time_ns())

    def test(rel: bytes, info: os.stat_result) -> bool:
        size = info.st_size if st.S_ISREG(info.st_mode) else 0
        return flt.by_name_size(os.fsdecode(rel), size) and (not flt.needs_age or flt.age_ok(info.st_mtime_ns))

    return test
