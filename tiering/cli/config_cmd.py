"""``tiering config check [FILE] [--probe]``: validate a configuration and show it resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiering import selftest
from tiering.config import describe, find_config, load_config, open_tier

app = typer.Typer(help="Check configuration files.", no_args_is_help=True)

FILE_HELP = "Config file (default: $TIERING_CONFIG, ./tiering.toml, configs/local.toml)."


@app.command()
def check(
    file: Annotated[Path | None, typer.Argument(help=FILE_HELP)] = None,
    probe: Annotated[bool, typer.Option("--probe", help="Also open each tier and list one key.")] = False,
) -> None:
    """Validate FILE and print it resolved, with secrets masked."""
    config = load_config(find_config(file))
    typer.echo(describe(config), nl=False)
    for name in config.tiers if probe else ():
        store = open_tier(config, name)
        try:
            first = selftest.probe(store)
        finally:
            store.close()
        typer.echo(f"probe {name}: reachable, " + (f"first key {first.key!r}" if first else "empty"))
    count = len(config.tiers)
    typer.echo(f"ok: {count} tier{'s' if count != 1 else ''}")
