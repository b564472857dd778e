"""``tiering apply | archive | release | restore | recover``: the commands that move data.

Each one opens the catalog for writing (recovering first), runs its tasks on
one bounded pool, prints per-file problems on stderr, and ends with one
summary line on stdout: for people, or JSON with ``--json``. ``archive``,
``release`` and ``restore`` take files and folders (``tiering.ops.selection``),
the ``migrate`` filters, ``--manifest`` (``-`` for standard input) and
``--dry-run``. Exit statuses are ``tiering.cli``'s (1 when any file failed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from tiering.cli import EXIT_FAILED
from tiering.cli.config_cmd import FILE_HELP
from tiering.cli.interrupt import stop_on_signals
from tiering.cli.filters import Exclude, Include, MaxAge, MaxSize, MinAge, MinSize
from tiering.cli.plan_cmd import POLICY_HELP
from tiering.core.states import FileState

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", metavar="PATH", help=FILE_HELP)]
JobsOpt = Annotated[int | None, typer.Option("--jobs", "-j", min=1, metavar="N",
                                             help="Files in flight (default: the config's jobs).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", "-n", help="Print what would be done; change nothing.")]
TierOpt = Annotated[str | None, typer.Option("--tier", metavar="TIER", help="Capacity tier (default: the config's).")]
Paths = Annotated[list[str] | None, typer.Argument(metavar="PATH", help="Files or folders on the hot tier.")]
ManifestOpt = Annotated[str | None, typer.Option("--manifest", "-m", metavar="PATH",
                                                 help="Also every file a manifest names (text, JSON or Parquet; "
                                                      "'-': text on standard input).")]

def apply(
    config: ConfigOpt = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=POLICY_HELP)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", "-n", help="Print the plan; change nothing.")] = False,
    rescan: Annotated[bool, typer.Option("--rescan/--no-rescan", help="Scan the hot tier first.")] = True,
    jobs: JobsOpt = None,
    executor: Annotated[str | None, typer.Option("--executor", metavar="URL", help="dask://HOST:PORT: transfer on a "
                                                 "Dask cluster (the catalog stays here).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Plan with the policy, then carry the plan out."""
    from tiering.cli.render import plan_table
    from tiering.cli.progress import plan_total
    from tiering.mover.executor import plan_tasks
    from tiering.ops.session import mover_session
    from tiering.ops.workflow import plan_now, policy_for

    cfg = _config(config)
    pol = policy_for(cfg, policy)
    if dry_run:
        plan = plan_now(cfg, pol, rescan=rescan)
        if as_json:
            from tiering.cli.render import plan_json_line

            typer.echo("\n".join(plan_json_line(row) for row in plan.rows()))
        else:
            typer.echo(plan_table(plan, 20))
        return
    with mover_session(cfg, "apply") as (mover, recovered):
        _report_recovery(recovered)
        plan = plan_now(cfg, pol, catalog=mover.catalog, rescan=rescan)
        _run(mover, plan_tasks(plan), jobs or cfg.jobs, plan_total(plan), executor, as_json=as_json)


def archive(paths: Paths = None, manifest: ManifestOpt = None, config: ConfigOpt = None, tier: TierOpt = None,
            include: Include = None, exclude: Exclude = None, min_size: MinSize = None, max_size: MaxSize = None,
            min_age: MinAge = None, max_age: MaxAge = None, dry_run: DryRunOpt = False, jobs: JobsOpt = None,
            as_json: JsonOpt = False) -> None:
    """Copy files (every file under a folder) to a capacity tier and verify them; they stay on the hot tier."""
    _named("archive", dict(locals()))


def release(paths: Paths = None, manifest: ManifestOpt = None, config: ConfigOpt = None, tier: TierOpt = None,
            include: Include = None, exclude: Exclude = None, min_size: MinSize = None, max_size: MaxSize = None,
            min_age: MinAge = None, max_age: MaxAge = None, dry_run: DryRunOpt = False, jobs: JobsOpt = None,
            as_json: JsonOpt = False) -> None:
    """Free files' blocks on the hot tier, leaving stubs (archiving first when needed)."""
    _named("release", dict(locals()))


def restore(paths: Paths = None, manifest: ManifestOpt = None,
            ignore_missing: Annotated[bool, typer.Option("--ignore-missing", help="Leave out manifest entries "
                                                         "that do not exist (default: each is a failure).")] = False,
            config: ConfigOpt = None, include: Include = None, exclude: Exclude = None, min_age: MinAge = None,
            max_age: MaxAge = None, dry_run: DryRunOpt = False, jobs: JobsOpt = None, as_json: JsonOpt = False,
            dataset: Annotated[bool, typer.Option("--dataset", help="Each PATH stands for the whole dataset(s) it "
                                                  "belongs to (the policy's [datasets]): every released file of "
                                                  "them, in one run.")] = False,
            restore_tier: Annotated[str | None, typer.Option(
                "--restore-tier", metavar="Expedited|Standard|Bulk",
                help="For objects in archive classes: how fast their store restores them (default: the tier's "
                     "restore_tier, else Standard). Such a file is requested and counted pending (exit 75); "
                     "run restore again once it is ready.")] = None) -> None:
    """Bring released files back, verified: by name or folder, or a whole dataset from a manifest."""
    _named("restore", dict(locals(), tier=None, min_size=None, max_size=None))


def recover(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Finish or roll back whatever an interrupted run left open."""
    from tiering.cli.render import recovered_line
    from tiering.ops.session import mover_session

    with mover_session(_config(config), "recover") as (_, recovered):
        _report_recovery(recovered)
        summary = {"recovered": len(recovered), "failed": sum(not o.ok for o in recovered)}
        typer.echo(json.dumps(summary) if as_json else recovered_line(recovered))
        if any(not o.ok for o in recovered):
            raise typer.Exit(EXIT_FAILED)


def _config(config: Path | None):
    from tiering.config import find_config, load_config

    return load_config(find_config(config))


def _named(action: str, opts: dict) -> None:
    from itertools import chain

    from tiering.cli.filters import accept
    from tiering.core.errors import UserError
    from tiering.core.manifest import Refused, read_manifest, resolve_operands
    from tiering.mover.outcome import FAILED, Outcome
    from tiering.ops.selection import expand
    from tiering.ops.session import mover_session

    cfg = _config(opts["config"])
    restore_tier = _restore_tier(opts.get("restore_tier"))
    if opts["tier"] is not None:
        cfg.tier(opts["tier"])  # unknown tier: one clear line before anything starts
    select = accept(opts["include"], opts["exclude"], opts["min_size"], opts["max_size"], opts["min_age"],
                    opts["max_age"], sized=action != "restore")
    named = resolve_operands(opts["paths"] or (), cfg.hot_path)
    if opts["manifest"] is not None:
        named = chain(named, read_manifest(Path(opts["manifest"]), cfg.hot_path,
                                           ignore_missing=opts.get("ignore_missing", False)))
    rels, refused = [], []  # a refused path fails alone: the others still run, and the command exits 1
    for item in named:
        if isinstance(item, Refused):
            refused.append(Outcome(item.path, action, FAILED, item.reason))
        else:
            rels.append(item.rel)
    if not rels and not refused:
        raise UserError(f"{action}: the manifest {opts['manifest']} names no file" if opts["manifest"] is not None
                        else f"{action}: name at least one file or folder, or --manifest")
    if opts.get("dataset"):
        files, rels = _dataset_files(cfg, rels, select, refused)
    else:
        files = list(expand(rels, cfg.hot_path, select))
    if opts["dry_run"]:
        _dry_run(action, files, cfg, opts["as_json"], refused, set(rels))
        return
    with mover_session(cfg, action) as (mover, recovered):
        mover.restore_tier = restore_tier
        _report_recovery(recovered)
        files = _unknown_named(action, set(rels), files, mover.catalog, refused)
        tasks = _tasks(action, files, opts["tier"], cfg.hot_path, mover.catalog)
        _run(mover, tasks, opts["jobs"] or cfg.jobs, (len(tasks), sum(t.size for t in tasks)), as_json=opts["as_json"],
             refused=refused)


def _dataset_files(cfg, rels: list[bytes], select, refused: list) -> tuple[list[bytes], list[bytes]]:
    """``restore --dataset``: (the released files of the named paths' datasets, no named paths: each file
    is one of a dataset, not one a person named); a path in no dataset fails alone, named."""
    from tiering.core.errors import UserError
    from tiering.mover.outcome import FAILED, Outcome
    from tiering.ops.selection import dataset_files, released
    from tiering.ops.workflow import policy_for

    policy = policy_for(cfg)
    if not policy.datasets:
        raise UserError(f"restore --dataset: the policy {policy.path} declares no datasets; "
                        "expected a [datasets] table with dirs = [globs] or markers = [file names]")
    hot = cfg.hot_path
    files, orphans = dataset_files(rels, hot, policy.datasets,
                                   lambda rel, info: (select is None or select(rel, info)) and released(rel, info, hot))
    for rel in orphans:
        refused.append(Outcome(rel, "restore", FAILED, f"in no dataset of the policy's [datasets] ({policy.path})"))
    return files, []


def _restore_tier(name: str | None) -> str | None:
    """``--restore-tier`` as its store spells it (any case given); a name it is not: one clear line."""
    from tiering.core.errors import UserError
    from tiering.mover.thaw import RESTORE_TIERS

    if name is None:
        return None
    for tier in RESTORE_TIERS:
        if tier.lower() == name.lower():
            return tier
    raise UserError(f"--restore-tier: {name!r} is not a restore tier; expected one of {', '.join(RESTORE_TIERS)}")


def _unknown_named(action: str, named: set[bytes], files: list[bytes], catalog, refused: list) -> list[bytes]:
    """``files`` without those a restore was named for (not found by walking a folder) that the catalog has
    never heard of: each of those fails, named (work not done is not success); a folder's files it does
    not know are left alone quietly."""
    if action != "restore":
        return files
    from tiering.mover.outcome import FAILED, Outcome

    kept = []
    for rel in files:
        if rel in named and (catalog is None or catalog.get(rel) is None):
            refused.append(Outcome(rel, action, FAILED, "not archived by tiering (no catalog entry): nothing to restore"))
        else:
            kept.append(rel)
    return kept


def _tasks(action: str, files: list[bytes], tier: str | None, hot: Path, catalog) -> list:
    from tiering.mover.executor import Task
    from tiering.ops.selection import expected

    return [Task(rel, action, tier, size=expected(action, rel, hot, catalog.get(rel))[1]) for rel in files]


#: The states in which an action has nothing left to do.
_ALREADY = {"archive": (FileState.ARCHIVED, FileState.RELEASED), "release": (FileState.RELEASED,),
            "restore": (FileState.RESIDENT, FileState.ARCHIVED, FileState.DIRTY)}


def _dry_run(action: str, files: list[bytes], cfg, as_json: bool, refused: list, named: set[bytes]) -> None:
    """What ``action`` would do to each file, from the hot tier and the catalog (read, never locked)."""
    from tiering.catalog import Catalog
    from tiering.cli.output import note, problem
    from tiering.cli.render import NOTHING_TO_DO, would_line
    from tiering.core.display import show_path
    from tiering.ops.selection import expected
    from tiering.core.units import format_size

    catalog = Catalog.open(cfg.catalog_path) if cfg.catalog_path.exists() else None
    files = _unknown_named(action, named, files, catalog, refused)
    todo = nbytes = already = 0
    missing = len(refused)
    for outcome in refused:  # named paths refused (missing, outside the hot tier, a symlink): a real run fails them
        problem(f"failed: {action} {show_path(outcome.path)}: {outcome.reason}")
    try:
        for rel in files:
            state, size = expected(action, rel, cfg.hot_path, catalog.get(rel) if catalog else None)
            if state == "missing":
                missing += 1
                problem(f"failed: {action} {show_path(rel)}: no such file on the hot tier")
                continue
            done = state in _ALREADY[action]
            already += done
            todo += not done
            nbytes += size
            if as_json:
                typer.echo(json.dumps({"would": "nothing" if done else action, "path": os.fsdecode(rel),
                                       "state": state, "bytes": size}))
            elif not done:
                typer.echo(f"would {action} {show_path(rel)} ({state}{', ' + format_size(size) if size else ''})")
            else:
                note(f"{NOTHING_TO_DO[action]}: {show_path(rel)}")
    finally:
        if catalog is not None:
            catalog.close()
    summary = {"dry_run": True, "action": action, "files": todo, "bytes": nbytes, "already": already,
               "failed": missing}
    typer.echo(json.dumps(summary) if as_json else would_line(action, todo, nbytes, already, missing))
    if missing:
        raise typer.Exit(EXIT_FAILED)


def _run(mover, tasks, jobs: int, totals: tuple[int, int], executor: str | None = None, refused=(), *,
         as_json: bool = False) -> None:
    from tiering.cli.output import limit, note, problem, show_progress, state
    from tiering.cli.told import Telling, line as told_line
    from tiering.cli.render import moved_line
    from tiering.core.display import show_path
    from tiering.mover.distributed import open_executor
    from tiering.mover.executor import execute

    bar = None
    if show_progress():  # rich only for a terminal: a cron job or a script does not pay for it
        from tiering.cli.progress import ProgressBar

        bar = ProgressBar()
    if state.verbose:  # a line per file as it ends (the bar, if any, keeps the bottom line)
        mover = Telling(mover, lambda outcome: (bar.print if bar else note)(told_line(outcome)))
    ex = open_executor(executor)
    try:
        with stop_on_signals() as interrupt:
            result = execute(mover, tasks, jobs=jobs, total=totals, progress=bar, executor=ex, interrupt=interrupt)
    finally:
        ex.close()
        if bar:
            bar.end()
    for outcome in refused:  # named paths refused before the run (missing, outside the hot tier, a symlink)
        result.add(outcome)
    for outcome in result.warnings[:limit(50)]:  # done, but worth knowing (an object that lost its metadata)
        problem(f"warning: {outcome.action} {show_path(outcome.path)}: {outcome.warning}")
    for outcome in result.waiting[:limit(200)]:  # archived objects being restored by their store
        note(f"{outcome.status}: {outcome.action} {show_path(outcome.path)}: {outcome.reason}")
    for outcome in result.skipped[:limit(50)]:
        note(f"{outcome.status}: {outcome.action} {show_path(outcome.path)}: {outcome.reason}")
    # A failure that stopped the run (a tier unreachable, the hot tier full) is said once, by the stop line;
    # others in flight that failed the same way are counted in it.
    stoppers = [outcome for outcome in result.failures if outcome.fatal]
    for outcome in [outcome for outcome in result.failures if not outcome.fatal][:limit(200)]:
        problem(f"{outcome.status}: {outcome.action} {show_path(outcome.path)}: {outcome.reason}")
    if result.stopped:
        more = f" ({len(stoppers) - 1:,} more in flight failed too)" if len(stoppers) > 1 else ""
        problem(f"tiering: {result.stopped}{more}")
    typer.echo(json.dumps(result.summary()) if as_json else moved_line(result))
    if result.exit_status:
        raise typer.Exit(result.exit_status)


def _report_recovery(recovered) -> None:
    from tiering.cli.output import note
    from tiering.core.display import show_path

    for outcome in recovered:
        note(f"recovered: {outcome.action} {show_path(outcome.path)}: {outcome.reason}")
