"""``tiering demo`` (what ``make run`` runs): one full policy cycle on the embedded default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiering.cli.config_cmd import FILE_HELP


def demo(config: Annotated[Path | None, typer.Option("--config", "-c", metavar="PATH", help=FILE_HELP)] = None) -> None:
    """Generate a demo workspace if the hot tier is empty, then scan, plan, apply and report."""
    from tiering.cli.move_cmd import _run
    from tiering.cli.render import plan_table, summary_lines
    from tiering.config import find_config, load_config
    from tiering.ops.demo import is_empty, make_dataset
    from tiering.cli.progress import plan_total
    from tiering.mover.executor import plan_tasks
    from tiering.ops.session import mover_session
    from tiering.ops.status import tier_summary
    from tiering.core.units import format_size
    from tiering.ops.workflow import plan_now, policy_for

    cfg = load_config(find_config(config))
    tiers = ", ".join(f"{name} ({tier.url})" for name, tier in cfg.tiers.items())
    typer.echo(f"== {cfg.path}: hot tier {cfg.hot_path}; capacity tier {tiers}  (all of it: tiering config check)")
    for path in (cfg.hot_path, *(Path(t.url) for t in cfg.tiers.values() if t.scheme == "file")):
        path.mkdir(parents=True, exist_ok=True)
    if is_empty(cfg.hot_path):
        made = make_dataset(cfg.hot_path)
        typer.echo(f"== generated a demo workspace: {made.files} files, {format_size(made.bytes)} in {cfg.hot_path}")
    policy = policy_for(cfg)
    typer.echo(f"\n== plan ({policy.path})")
    with mover_session(cfg, "demo") as (mover, _):
        plan = plan_now(cfg, policy, catalog=mover.catalog, rescan=True)
        typer.echo(plan_table(plan, top=4))
        typer.echo("\n== apply")
        try:
            _run(mover, plan_tasks(plan), cfg.jobs, plan_total(plan))
        except typer.Exit as done:
            if done.exit_code:
                raise
    typer.echo("\n== status")
    typer.echo("\n".join(summary_lines(tier_summary(cfg), cfg)))
    typer.echo("\nNext: the tour in README.md, after: source .venv/bin/activate; "
               f"export TIERING_CONFIG={_shown(cfg.path)}")
    typer.echo(json.dumps({"demo": "ok", "hot_tier": str(cfg.hot_path)}))


def _shown(path: Path) -> str:
    # relative to the working directory when under it (configs/local.toml from the repository), else absolute
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
