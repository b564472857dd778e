"""``tiering plan``: what apply would do, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiering.cli.config_cmd import FILE_HELP

POLICY_HELP = "Policy file (default: the config's `policy`)."


def plan(
    config: Annotated[Path | None, typer.Option("--config", "-c", help=FILE_HELP)] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=POLICY_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per action.")] = False,
    explain: Annotated[str | None, typer.Option("--explain", help="Say rule by rule why PATH is or is not selected.")] = None,
    inventory: Annotated[Path | None, typer.Option(help="Inventory snapshot (default: the latest scan).")] = None,
    rescan: Annotated[bool, typer.Option("--rescan", help="Scan the hot tier first.")] = False,
    top: Annotated[int, typer.Option(help="Entries to list in the table view.")] = 10,
) -> None:
    """Decide which files are cold and what to do with them. Changes nothing."""
    import time

    from tiering.cli.render import plan_json_line, plan_table
    from tiering.config import find_config, load_config
    from tiering.core.manifest import from_command_line
    from tiering.plan.explain import explain_path, find_row
    from tiering.ops.workflow import catalog_state, latest_snapshot, plan_now, policy_for
    from tiering.plan import read_inventory
    from tiering.ops.workflow import pick_inventory

    cfg = load_config(find_config(config))
    pol = policy_for(cfg, policy)
    if explain is not None:
        rel = from_command_line(explain, cfg.hot_path)
        now = time.time_ns()
        snap = inventory or latest_snapshot(cfg) or None
        catalog = catalog_state(cfg)
        row = find_row(read_inventory(snap), catalog, rel) if snap else None
        notes: list[str] = []
        if snap and pol.datasets:  # the rules see the file with its dataset's heat and last access
            from tiering.plan.datasets import explain_dataset

            row, notes = explain_dataset(read_inventory(snap), catalog, rel, row, pol, now)
        typer.echo("\n".join(explain_path(row, rel, pol, now) + notes))
        from tiering.ops.cost import explain_money  # the decided move in money (``tiering cost``'s model)

        if money := explain_money(cfg, row, pol, now):  # none when no rule moves it
            typer.echo("\n".join(money))
        return
    picked = pick_inventory(cfg, inventory, rescan=rescan)  # the header says how old it is
    result = plan_now(cfg, pol, snapshot=picked.path)
    if as_json:
        if picked.stale:
            typer.echo(f"tiering: {picked.describe()}", err=True)
        for row in result.rows():
            typer.echo(plan_json_line(row))
    else:
        typer.echo(picked.describe())
        typer.echo(plan_table(result, top))
