"""``tiering status [PATH...] [--json] [--verify]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiering.cli import EXIT_FAILED
from tiering.cli.config_cmd import FILE_HELP


def status(
    paths: Annotated[list[str] | None, typer.Argument(help="Files to report on (default: a summary).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help=FILE_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Read each capacity copy back and check it.")] = False,
) -> None:
    """State, true size, tier, object key and checksum of files; or the hot tier's summary."""
    from tiering.catalog import Catalog
    from tiering.cli.render import status_lines, summary_lines
    from tiering.config import find_config, load_config
    from tiering.core.errors import PathError
    from tiering.core.manifest import Refused, resolve_operands
    from tiering.ops.status import file_status, tier_summary

    cfg = load_config(find_config(config))
    if not paths:
        from tiering.access.keeper import guard_status

        summary = tier_summary(cfg)
        guard = guard_status(cfg)
        summary["guard"] = {"state": guard.state, "detail": guard.detail}
        typer.echo(json.dumps(summary) if as_json else "\n".join([*summary_lines(summary, cfg), guard.line()]))
        return
    # The server's catalog where there is one (a guard's restore on another node shows at once), else the file.
    catalog = Catalog.open(cfg.catalog_target) if cfg.catalog_url or cfg.catalog_path.exists() else None
    results, refused = [], []  # a path that is missing or not ours is one line; the others are still reported
    try:
        for item in resolve_operands(paths, cfg.hot_path):
            if isinstance(item, Refused):
                refused.append(item.error)
                continue
            try:
                results.append(file_status(cfg, catalog, item.rel, verify))
            except PathError as exc:  # neither on the hot tier nor in the catalog
                refused.append(exc)
    finally:
        if catalog:
            catalog.close()
    for exc in refused:
        typer.echo(f"tiering: error: {exc}", err=True)
    if results:
        typer.echo("\n".join(json.dumps(r.as_json()) for r in results) if as_json else "\n".join(status_lines(results)))
    if refused or any(r.verified.startswith("FAILED") for r in results):
        raise typer.Exit(EXIT_FAILED)
