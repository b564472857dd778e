"""``tiering reconcile [--fix] [--deep] [--json] [--parquet FILE]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiering.cli import EXIT_FAILED
from tiering.cli.config_cmd import FILE_HELP


def reconcile(
    config: Annotated[Path | None, typer.Option("--config", "-c", metavar="PATH", help=FILE_HELP)] = None,
    fix: Annotated[bool, typer.Option("--fix", help="Repair what is safe (archive again, adopt a proven copy, "
                                                    "forget a vanished file's entry); never deletes anything.")]
    = False,
    deep: Annotated[bool, typer.Option("--deep", help="Also read each object's metadata (one request per object) "
                                                      "to compare checksums.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per disagreement, then the summary.")]
    = False,
    parquet: Annotated[Path | None, typer.Option("--parquet", metavar="FILE",
                                                 help="Also write the disagreements to this Parquet file.")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild-catalog", help="After losing the catalog: rebuild it into an "
                                                                    "empty one from the tiers' self-describing "
                                                                    "objects and the hot tier (implies --fix).")]
    = False,
) -> None:
    """Compare the hot tier, the catalog and every capacity tier; list each disagreement by kind."""
    from tiering.catalog import Catalog
    from tiering.cli.output import note
    from tiering.config import find_config, load_config
    from tiering.core.errors import UserError
    from tiering.ops.reconcile import reconcile as run, show
    from tiering.config.locations import check_hot_tier
    from tiering.ops.session import mover_session

    cfg = load_config(find_config(config))
    if fix or rebuild:
        with mover_session(cfg, "reconcile") as (mover, _):
            if rebuild and (held := sum(n for n, _ in mover.catalog.counts().values())):
                raise UserError(f"--rebuild-catalog: the catalog has {held:,} entries; it rebuilds into an empty "
                                "catalog only (move this one aside first, or run reconcile --fix)")
            report = run(cfg, mover.catalog, deep=deep, fix=True, archive=mover.archive, note=note)
    else:
        check_hot_tier(cfg)
        if cfg.catalog_url is None and not cfg.catalog_path.exists():
            raise UserError(f"{cfg.catalog_path}: no catalog (nothing was archived with this configuration yet)")
        catalog = Catalog.open(cfg.catalog_target)
        try:
            report = run(cfg, catalog, deep=deep, note=note)
        finally:
            catalog.close()
    if parquet is not None:
        _write_parquet(report, parquet)
    for finding in report.findings:
        typer.echo(json.dumps(finding.as_json()) if as_json else show(finding))
    counts, fixed, left = report.counts(), sum(1 for f in report.findings if f.fixed), len(report.unresolved)
    summary = {**report.checked, "disagreements": len(report.findings), "fixed": fixed, "left": left,
               "by_kind": counts}
    typer.echo(json.dumps(summary) if as_json else _summary_line(report.checked, counts, fixed, left))
    if left:
        raise typer.Exit(EXIT_FAILED)


def _summary_line(checked: dict, counts: dict, fixed: int, left: int) -> str:
    looked = (f"{checked['files']:,} files, {checked['stubs']:,} stubs, {checked['entries']:,} catalog entries, "
              f"{checked['objects']:,} objects in {checked['tiers']} tier(s)")
    if not counts:
        return f"reconciled {looked}: all agree"
    kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items())
    done = f"; {fixed} fixed, {left} left" if fixed else ""
    return f"reconciled {looked}: {sum(counts.values())} disagreement(s) ({kinds}){done}"


def _write_parquet(report, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [f.as_json() for f in report.findings]
    schema = pa.schema([("kind", pa.string()), ("path", pa.string()), ("tier", pa.string()), ("key", pa.string()),
                        ("detail", pa.string()), ("fixed", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
