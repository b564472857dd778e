"""``tiering migrate SRC DST`` and ``tiering sync SRC DST [--delete]``: verified bulk copies.

Per-file failures go to stderr, a dry run's plan to stdout, then one summary
(a line for people, or JSON with ``--json``). Exit 1 when any file failed;
2 for bad input, before anything was written; 3 when a tier could not be
reached; 130 after SIGINT/SIGTERM, once the files in flight finished and the
summary of what was done is printed (a second signal stops at once).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiering.cli.config_cmd import FILE_HELP
from tiering.cli.interrupt import stop_on_signals
from tiering.core.display import show_key

Src = Annotated[str, typer.Argument(help="A local folder, s3://BUCKET/PREFIX, oss://BUCKET/PREFIX or a tier name.")]
Dst = Annotated[str, typer.Argument(help="Where to copy to (same kinds as SRC).")]
Include = Annotated[list[str] | None, typer.Option("--include", help="Only files matching this glob (repeatable).")]
Exclude = Annotated[list[str] | None, typer.Option("--exclude", help="Leave out files matching a glob (repeatable).")]
MinSize = Annotated[str | None, typer.Option("--min-size", help="Only files at least this big (e.g. 1MiB).")]
MaxSize = Annotated[str | None, typer.Option("--max-size", help="Only files at most this big.")]
MinAge = Annotated[str | None, typer.Option("--min-age", help="Only files modified at least this long ago (e.g. 7d).")]
MaxAge = Annotated[str | None, typer.Option("--max-age", help="Only files modified at most this long ago.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print what would be copied or deleted; change nothing.")]
Checksum = Annotated[bool, typer.Option("--checksum", help="Compare by checksum, not size and modification time.")]
Jobs = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Files in flight (per worker with --executor).")]
BwLimit = Annotated[str | None, typer.Option("--bwlimit", help="Bytes per second over all workers (e.g. 100MiB).")]
ExecutorOpt = Annotated[str | None, typer.Option("--executor", help="dask://HOST:PORT: run on a Dask cluster.")]
Json = Annotated[bool, typer.Option("--json", help="Print the summary (and a dry run's plan) as JSON.")]
Config = Annotated[Path | None, typer.Option("--config", "-c", help=FILE_HELP + " Names tiers usable as SRC/DST.")]
SrcOpt = Annotated[list[str] | None, typer.Option("--src-option", help="KEY=VALUE for an s3/oss SRC (endpoint, ...).")]
DstOpt = Annotated[list[str] | None, typer.Option("--dst-option", help="KEY=VALUE for an s3/oss DST.")]
Fsync = Annotated[bool, typer.Option("--fsync", help="fsync every file written to a local DST.")]
Delete = Annotated[bool, typer.Option("--delete", help="Also delete DST files that SRC lacks (never after errors).")]


def migrate(src: Src, dst: Dst, include: Include = None, exclude: Exclude = None, min_size: MinSize = None,
            max_size: MaxSize = None, min_age: MinAge = None, max_age: MaxAge = None, dry_run: DryRun = False,
            checksum: Checksum = False, jobs: Jobs = 16, bwlimit: BwLimit = None, executor: ExecutorOpt = None,
            json_out: Json = False, config: Config = None, src_option: SrcOpt = None, dst_option: DstOpt = None,
            fsync: Fsync = False) -> None:
    """Copy a tree, verified; a re-run copies only what is missing or different."""
    _run(dict(locals()), delete=False)


def sync(src: Src, dst: Dst, delete: Delete = False,
         include: Include = None, exclude: Exclude = None, min_size: MinSize = None, max_size: MaxSize = None,
         min_age: MinAge = None, max_age: MaxAge = None, dry_run: DryRun = False, checksum: Checksum = False,
         jobs: Jobs = 16, bwlimit: BwLimit = None, executor: ExecutorOpt = None, json_out: Json = False,
         config: Config = None, src_option: SrcOpt = None, dst_option: DstOpt = None, fsync: Fsync = False) -> None:
    """Make DST match SRC: copy what differs, and with --delete remove what SRC lacks."""
    args = dict(locals())
    _run(args, delete=args.pop("delete"))


def _run(args: dict, *, delete: bool) -> None:
    from tiering.cli.progress import ProgressBar
    from tiering.migrate import migrate as run
    from tiering.migrate.request import make_job
    from tiering.mover.distributed import open_executor

    jobs, address, json_out = args.pop("jobs"), args.pop("executor"), args.pop("json_out")
    args.update(include=args["include"] or (), exclude=args["exclude"] or (),
                src_options=args.pop("src_option") or (), dst_options=args.pop("dst_option") or ())
    job = make_job(**args)
    from tiering.cli.output import show_progress

    bar = ProgressBar() if show_progress() else None
    executor = open_executor(address)
    try:
        with stop_on_signals() as cancel:
            result = run(job, jobs=jobs, delete=delete, executor=executor, progress=bar, cancel=cancel,
                         on_item=lambda item: _show(item, job.dry_run, json_out))
    finally:
        executor.close()
        if bar:
            bar.end()
    _summary(result, json_out)


def _show(item, dry_run: bool, json_out: bool) -> None:
    if item.status == "failed" and item.fatal:
        return  # it stops the run: the stop line at the end names it, once
    if item.status == "failed":
        typer.echo(f"failed: {item.action} {show_key(item.key)}: {item.reason}", err=True)  # one line each
    elif dry_run and item.status == "done":
        typer.echo(json.dumps({"would": item.action, "key": item.key, "bytes": item.bytes, "reason": item.reason})
                   if json_out else f"would {item.action} {item.key} ({item.reason})")


def _summary(result, json_out: bool) -> None:
    notes = [note for note in (result.stopped, result.not_deleted) if note]
    if result.stopped and result.not_deleted:  # one line: the destination was left alone for the stop's reason
        notes = [f"{result.stopped}; {result.not_deleted.split(': ', 1)[0]}"]
    for note in notes:
        typer.echo(f"tiering: {note}", err=True)
    s = result.summary()
    if json_out:
        typer.echo(json.dumps(s))
    else:
        typer.echo(_line(s, result.dry_run))
    if result.exit_status:
        raise typer.Exit(result.exit_status)


def _line(s: dict, dry_run: bool) -> str:
    """The summary for people; a dry run moved nothing, so it has no time or rate."""
    from tiering.core.units import format_elapsed, format_rate, format_size, plural

    copied, deleted = ("would copy", "would delete") if dry_run else ("copied", "deleted")
    line = (f"{copied} {plural(s['copied'], 'file')} ({format_size(s['bytes'])}), skipped {s['skipped']:,}, "
            f"excluded {s['excluded']:,}, failed {s['failed']:,}, {deleted} {s['deleted']:,}")
    if dry_run:
        return line + "; dry run, nothing changed"
    secs = s["seconds"]
    rate = f" ({s['files_per_s']:,.0f} files/s, {format_rate(s['bytes'] / secs)})" if secs and s["copied"] else ""
    return f"{line} in {format_elapsed(secs)}{rate}"
