"""``tiering cost [--policy FILE] [--no-plan] [--json] [--parquet FILE]``: the tiers as money."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiering.cli.config_cmd import FILE_HELP
from tiering.cli.plan_cmd import POLICY_HELP


def cost(
    config: Annotated[Path | None, typer.Option("--config", "-c", help=FILE_HELP)] = None,
    policy: Annotated[Path | None, typer.Option("--policy", "-p", help=POLICY_HELP)] = None,
    no_plan: Annotated[bool, typer.Option("--no-plan", help="The cost now only; plan nothing.")] = False,
    inventory: Annotated[Path | None, typer.Option(help="Inventory snapshot to plan on (default: the latest scan).")]
    = None,
    rescan: Annotated[bool, typer.Option("--rescan", help="Scan the hot tier first.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: totals and every tier/class.")] = False,
    parquet: Annotated[Path | None, typer.Option("--parquet", metavar="FILE",
                                                 help="Also write one row per tier/class to this Parquet file.")]
    = None,
) -> None:
    """What the hot tier and each capacity tier/class cost per month, and what the plan would change."""
    from tiering.catalog import Catalog
    from tiering.cli.output import note
    from tiering.config import find_config, load_config
    from tiering.config.locations import check_hot_tier
    from tiering.ops.cost import current_cost, price_plan

    cfg = load_config(find_config(config))
    check_hot_tier(cfg)
    has_catalog = cfg.catalog_url is not None or cfg.catalog_path.exists()
    catalog = Catalog.open(cfg.catalog_target) if has_catalog else None
    try:
        report = current_cost(cfg, catalog)
        if not no_plan and (policy or cfg.policy_path):
            from tiering.ops.workflow import pick_inventory, plan_now, policy_for

            picked = pick_inventory(cfg, inventory, rescan=rescan)
            note(picked.describe())
            price_plan(cfg, report, plan_now(cfg, policy_for(cfg, policy), snapshot=picked.path), catalog)
        elif not no_plan:
            note("no policy (pass --policy FILE or set `policy` in the config): the cost now only")
    finally:
        if catalog is not None:
            catalog.close()
    if parquet is not None:
        _write_parquet(report, parquet)
    note(f"note: {report.note}")
    typer.echo(json.dumps(report.summary()) if as_json else cost_table(report))


def cost_table(report) -> str:
    """The report for people: one line per tier/class, then the totals."""
    from tiering.core.units import format_duration, format_size
    from tiering.ops.cost import show_money as _m

    cur = report.currency
    head = f"{'tier':<10} {'class':<16} {'files':>9} {'bytes':>10} {cur + '/month':>12}"
    if report.with_plan:
        head += f" {'plan bytes':>11} {'change/mo':>10} {'one-time':>9} {'min. bill':>9} {'at risk':>9}"
    lines = [head]
    for r in report.rows:
        files = "-" if r.files is None else f"{r.files:,}"
        line = f"{r.tier:<10} {r.storage_class or '-':<16} {files:>9} {format_size(r.bytes):>10} {_m(r.per_month):>12}"
        if report.with_plan:
            sign = "-" if r.plan_bytes < 0 else "+" if r.plan_bytes else ""
            risk = f"{r.at_risk_files:,}" if r.at_risk_files else "-"
            line += (f" {sign + format_size(abs(r.plan_bytes)):>11} {_m(r.plan_per_month, '+'):>10} "
                     f"{_m(r.one_time):>9} {_m(r.min_commitment):>9} {risk:>9}")
        if not r.priced:
            line += "  (no price: counted as free)"
        elif r.min_duration and report.with_plan and r.plan_bytes:
            line += f"  (min. {format_duration(r.min_duration)})"
        lines.append(line)
    now = report.total("per_month")
    total = f"total: {_m(now)} {cur}/month"
    if report.with_plan:
        after = now + report.total("plan_per_month")
        total += (f"; after the plan ({report.planned:,} actions): {_m(after)} {cur}/month "
                  f"({_m(after - now, '+')}), {_m(report.total('one_time'))} {cur} once, "
                  f"{_m(report.total('readback_once'))} {cur} to read the moved bytes back once")
    return "\n".join([*lines, total])


def _write_parquet(report, path: Path) -> None:
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**r.as_json(), "currency": report.currency, "at": time.time()} for r in report.rows]
    schema = pa.schema([("tier", pa.string()), ("storage_class", pa.string()), ("files", pa.int64()),
                        ("bytes", pa.int64()), ("per_gb_month", pa.float64()), ("per_month", pa.float64()),
                        ("plan_files", pa.int64()), ("plan_bytes", pa.int64()), ("plan_per_month", pa.float64()),
                        ("one_time", pa.float64()), ("min_commitment", pa.float64()), ("at_risk_files", pa.int64()),
                        ("at_risk_bytes", pa.int64()), ("readback_once", pa.float64()),
                        ("min_duration", pa.float64()), ("priced", pa.bool_()), ("currency", pa.string()),
                        ("at", pa.float64())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
