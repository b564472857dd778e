"""From command-line words to a ``Job``: sides resolved, options and filters parsed, all checked.

Every mistake is one ``UserError`` line naming the option and what was expected,
raised before anything is read or written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

from tiering.core.errors import UserError
from tiering.migrate.endpoints import check_apart, resolve
from tiering.migrate.listing import Filter
from tiering.migrate.transfer import Job
from tiering.core.units import parse_duration, parse_size


def make_job(src: str, dst: str, *, config: Path | None = None, src_options: Sequence[str] = (),
             dst_options: Sequence[str] = (), include: Sequence[str] = (), exclude: Sequence[str] = (),
             min_size: str | None = None, max_size: str | None = None, min_age: str | None = None,
             max_age: str | None = None, checksum: bool = False, dry_run: bool = False,
             bwlimit: str | None = None, fsync: bool = False) -> Job:
    """The ``Job`` for ``tiering migrate|sync SRC DST`` and their options (sizes like 64MiB, ages like 7d)."""
    cfg = _config(config)
    job = Job(
        src=resolve(src, _pairs(src_options, "--src-option"), cfg, side="source"),
        dst=resolve(dst, _pairs(dst_options, "--dst-option"), cfg, side="destination"),
        filter=Filter(tuple(include), tuple(exclude), _size(min_size, "--min-size"), _size(max_size, "--max-size"),
                      _age(min_age, "--min-age"), _age(max_age, "--max-age"), time.time_ns()),
        checksum=checksum, dry_run=dry_run, bwlimit=float(_size(bwlimit, "--bwlimit") or 0), fsync=fsync,
    )
    check_apart(job.src, job.dst)
    return job


def _config(path: Path | None):
    """The configuration, when one is named (``--config`` or ``$TIERING_CONFIG``): it names tiers."""
    from tiering.config import CONFIG_ENV, load_config

    given = path or os.environ.get(CONFIG_ENV)
    return load_config(given) if given else None


def _pairs(words: Sequence[str], option: str) -> dict[str, str]:
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UserError(f"{option} {word!r}: expected KEY=VALUE (e.g. endpoint=http://127.0.0.1:8333)")
        pairs[key.strip()] = value
    return pairs


def _parsed(value: str | None, option: str, parse):
    """``parse(value)``, None for None; a bad value is one line naming the option."""
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise UserError(f"{option} {value!r}: {exc}") from None


def _size(value: str | None, option: str) -> int | None:
    return _parsed(value, option, parse_size)


def _age(value: str | None, option: str) -> float | None:
    return _parsed(value, option, parse_duration)
