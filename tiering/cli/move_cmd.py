"""``tiering apply | archive | release | restore | recover``: the commands that move data.

Each one opens the catalog for writing (recovering first), runs its tasks on
one bounded pool, prints per-file problems, and always ends with one JSON
summary line on stdout. Exit status 1 when any file failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from tiering.cli import EXIT_FAILED
from tiering.cli.config_cmd import FILE_HELP
from tiering.cli.plan_cmd import POLICY_HELP

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help=FILE_HELP)]
JobsOpt = Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Files in flight (default: the config's jobs).")]


def apply(
    config: ConfigOpt = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=POLICY_HELP)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    rescan: Annotated[bool, typer.Option("--rescan/--no-rescan", help="Scan the hot tier first.")] = True,
    jobs: JobsOpt = None,
    executor: Annotated[str | None, typer.Option("--executor", help="dask://HOST:PORT: transfer on a Dask "
                                                                    "cluster (the catalog stays here).")] = None,
) -> None:
    """Plan with the policy, then carry the plan out."""
    from tiering.cli.render import plan_table
    from tiering.session import mover_session, plan_tasks, plan_totals
    from tiering.workflow import plan_now, policy_for

    cfg = _config(config)
    pol = policy_for(cfg, policy)
    if dry_run:
        typer.echo(plan_table(plan_now(cfg, pol, rescan=rescan), 20))
        return
    with mover_session(cfg, "apply") as (mover, recovered):
        _report_recovery(recovered)
        plan = plan_now(cfg, pol, catalog=mover.catalog, rescan=rescan)
        _run(mover, plan_tasks(plan), jobs or cfg.jobs, plan_totals(plan), executor)


def archive(paths: Annotated[list[str], typer.Argument(help="Files on the hot tier.")],
            config: ConfigOpt = None, tier: Annotated[str | None, typer.Option(help="Capacity tier.")] = None,
            jobs: JobsOpt = None) -> None:
    """Copy files to a capacity tier and verify them; they stay on the hot tier."""
    _named("archive", paths, config, tier, jobs)


def release(paths: Annotated[list[str], typer.Argument(help="Files on the hot tier.")],
            config: ConfigOpt = None, tier: Annotated[str | None, typer.Option(help="Capacity tier.")] = None,
            jobs: JobsOpt = None) -> None:
    """Free files' blocks on the hot tier, leaving stubs (archiving first when needed)."""
    _named("release", paths, config, tier, jobs)


def restore(paths: Annotated[list[str] | None, typer.Argument(help="Released files.")] = None,
            manifest: Annotated[Path | None, typer.Option(help="Stage in every file a manifest names "
                                                                 "(text, JSON or Parquet; - for stdin).")] = None,
            ignore_missing: Annotated[bool, typer.Option("--ignore-missing", help="Leave out manifest entries "
                                                         "that do not exist (default: each is a failure).")] = False,
            config: ConfigOpt = None, jobs: JobsOpt = None) -> None:
    """Bring released files back, verified: by name, or a whole dataset from a manifest."""
    _named("restore", paths or [], config, None, jobs, manifest, ignore_missing)


def recover(config: ConfigOpt = None) -> None:
    """Finish or roll back whatever an interrupted run left open."""
    from tiering.session import mover_session

    with mover_session(_config(config), "recover") as (_, recovered):
        _report_recovery(recovered)
        typer.echo(json.dumps({"recovered": len(recovered), "failed": sum(not o.ok for o in recovered)}))
        if any(not o.ok for o in recovered):
            raise typer.Exit(EXIT_FAILED)


def _config(config: Path | None):
    from tiering.config import find_config, load_config

    return load_config(find_config(config))


def _named(action: str, paths: list[str], config: Path | None, tier: str | None, jobs: int | None,
           manifest: Path | None = None, ignore_missing: bool = False) -> None:
    from itertools import chain

    from tiering.errors import UserError
    from tiering.manifest import Refused, read_manifest, resolve_operands
    from tiering.mover.executor import Task
    from tiering.mover.outcome import FAILED, Outcome
    from tiering.session import mover_session

    cfg = _config(config)
    if tier is not None:
        cfg.tier(tier)  # unknown tier: one clear line before anything starts
    named = resolve_operands(paths, cfg.hot_path)
    if manifest is not None:
        named = chain(named, read_manifest(manifest, cfg.hot_path, ignore_missing=ignore_missing))
    rels, refused = [], []  # a refused path fails alone: the others still run, and the command exits 1
    for item in named:
        if isinstance(item, Refused):
            refused.append(Outcome(item.path, action, FAILED, item.reason))
        else:
            rels.append(item.rel)
    if not rels and not refused:
        raise UserError(f"{action}: name at least one file" + (" or --manifest" if action == "restore" else ""))
    with mover_session(cfg, action) as (mover, recovered):
        _report_recovery(recovered)
        _run(mover, (Task(rel, action, tier) for rel in rels), jobs or cfg.jobs, (len(rels), 0), refused=refused)


def _run(mover, tasks, jobs: int, totals: tuple[int, int], executor: str | None = None, refused=()) -> None:
    from tiering.cli.progress import ProgressBar
    from tiering.display import show_path
    from tiering.mover.distributed import open_executor
    from tiering.mover.executor import execute

    bar = ProgressBar() if sys.stderr.isatty() else None
    ex = open_executor(executor)
    try:
        result = execute(mover, tasks, jobs=jobs, total=totals, progress=bar, executor=ex)
    finally:
        ex.close()
        if bar:
            bar.end()
    for outcome in refused:  # named paths refused before the run (missing, outside the hot tier, a symlink)
        result.add(outcome)
    for outcome in result.skipped[:50] + result.failures[:200]:
        typer.echo(f"{outcome.status}: {outcome.action} {show_path(outcome.path)}: {outcome.reason}", err=True)
    if result.stopped:
        typer.echo(f"tiering: {result.stopped}", err=True)
    typer.echo(json.dumps(result.summary()))
    if result.exit_status:
        raise typer.Exit(result.exit_status)


def _report_recovery(recovered) -> None:
    from tiering.display import show_path

    for outcome in recovered:
        typer.echo(f"recovered: {outcome.action} {show_path(outcome.path)}: {outcome.reason}", err=True)
