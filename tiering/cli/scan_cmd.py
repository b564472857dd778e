"""``tiering scan``: inventory the hot tier into a Parquet snapshot."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tiering.cli import EXIT_FAILED
from tiering.cli.config_cmd import FILE_HELP

if TYPE_CHECKING:
    from tiering.scan import ScanProgress, ScanSummary

BUCKETS_HELP = ("Partitions of the snapshot, a power of two (1: one Parquet file; default: sized from the "
                "latest snapshot, about 1 M rows each).")
EXECUTOR_HELP = ("dask://HOST:PORT: scan on that Dask cluster (its workers see the hot tier and the snapshot "
                 "directory at the same paths; each writes its own partitions). Default: the config's "
                 "[scan] executor.")
OUT_HELP = "Snapshot file (default: <catalog dir>/inventory/scan-<UTC time>.parquet, then latest.parquet points at it)."


def scan(
    config: Annotated[Path | None, typer.Option("--config", "-c", help=FILE_HELP)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help=OUT_HELP)] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Worker processes (default: CPUs, at most 8).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False,
    buckets: Annotated[int | None, typer.Option("--buckets", min=1, help=BUCKETS_HELP)] = None,
    executor: Annotated[str | None, typer.Option("--executor", metavar="URL", help=EXECUTOR_HELP)] = None,
) -> None:
    """Walk the hot tier and write its inventory snapshot. Exit 1 if entries could not be read
    (entries deleted while scanning are counted, not failures)."""
    from tiering.config import find_config, load_config
    from tiering.scan import (
        mark_latest,
        new_snapshot_path,
        snapshot_dir,
        write_snapshot,
    )

    cfg = load_config(find_config(config))
    _check_buckets(buckets)
    target = out or new_snapshot_path(snapshot_dir(cfg.catalog_path))
    target.parent.mkdir(parents=True, exist_ok=True)
    from tiering.cli.output import show_progress

    progress = _Progress() if show_progress() else None
    try:
        summary = write_snapshot(cfg.hot_path, target, jobs=jobs, progress=progress, io=cfg.hot_io, buckets=buckets,
                                 executor=executor or cfg.scan_executor)
    finally:
        if progress is not None:
            progress.end()
    if out is None:
        mark_latest(target)
    typer.echo(json.dumps(summary.to_json()) if as_json else _line(summary))
    if set(summary.errors) - {"vanished"}:
        raise typer.Exit(EXIT_FAILED)


def _check_buckets(buckets: int | None) -> None:
    from tiering.core.errors import UserError
    from tiering.core.inventory import MAX_BUCKETS

    # Powers of two: one count then divides another, so snapshots of different counts compare partition by
    # partition (the daemon's rescan); the automatic sizing picks them too.
    if buckets is not None and (buckets & (buckets - 1) or buckets > MAX_BUCKETS):
        raise UserError(f"--buckets {buckets}: expected a power of two from 1 to {MAX_BUCKETS}")


def _line(summary: ScanSummary) -> str:
    from tiering.core.display import show_path
    from tiering.core.units import format_size

    errors = ", ".join(f"{kind} {n} (e.g. {show_path(summary.error_examples[kind][0])})"
                       for kind, n in sorted(summary.errors.items()))
    from tiering.core.units import format_elapsed, plural

    errors = f", {plural(summary.error_count, 'error')}{' [' + errors + ']' if errors else ''}"
    specials = f", {plural(summary.specials, 'special file')} skipped" if summary.specials else ""
    return (f"scanned {plural(summary.files, 'file')}, {plural(summary.dirs, 'dir')}, "
            f"{plural(summary.symlinks, 'symlink')}, {format_size(summary.bytes)}{errors}{specials} "
            f"in {format_elapsed(summary.seconds)} ({summary.files_per_s:,.0f} files/s) -> {summary.snapshot}")


class _Progress:
    """A one-line progress display on stderr, redrawn at most 10 times a second."""

    def __init__(self) -> None:
        self.shown = 0.0

    def __call__(self, p: ScanProgress) -> None:
        now = time.monotonic()
        if now - self.shown < 0.1:
            return
        self.shown = now
        from tiering.core.units import format_size

        rate = p.files / p.elapsed if p.elapsed > 0 else 0
        # "\x1b[2K" clears the line first: a shorter frame leaves nothing of the longer one behind
        sys.stderr.write(f"\r\x1b[2Kscanning: {p.files:,} files, {p.dirs:,} dirs, {format_size(p.bytes)}, "
                         f"{p.errors:,} errors, {rate:,.0f} files/s")
        sys.stderr.flush()

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")
