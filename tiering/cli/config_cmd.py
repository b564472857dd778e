"""``tiering config check [FILE] [--probe]``: validate a configuration and show it resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Check configuration files.", no_args_is_help=True, rich_markup_mode=None)

FILE_HELP = "Config file (default: $TIERING_CONFIG, ./tiering.toml, configs/local.toml)."


@app.command()
def check(
    file: Annotated[Path | None, typer.Argument(metavar="PATH", help=FILE_HELP)] = None,
    config_opt: Annotated[Path | None, typer.Option("--config", "-c", metavar="PATH",
                                                    help="The same, as every other verb takes it.")] = None,
    probe: Annotated[bool, typer.Option("--probe", help="Also open each tier and list one key.")] = False,
) -> None:
    """Validate a config file and print it resolved, with secrets masked."""
    from tiering.config import check_hot_tier, describe, find_config, load_config, open_tier
    from tiering.core.errors import UserError
    from tiering.core.units import plural
    from tiering.ops import selftest

    if file is not None and config_opt is not None and file != config_opt:
        raise UserError(f"config check: two files named ({file} and --config {config_opt}); name one")
    config = load_config(find_config(file or config_opt))
    from tiering.cli.output import state

    if not state.quiet:  # -q: only the verdict (and the probes)
        typer.echo(describe(config), nl=False)
    if probe:
        check_hot_tier(config)
    for name in config.tiers if probe else ():
        store = open_tier(config, name)
        try:
            first = selftest.probe(store)
        finally:
            store.close()
        typer.echo(f"probe {name}: reachable, " + (f"first key {first.key!r}" if first else "empty"))
    typer.echo(f"ok: {plural(len(config.tiers), 'tier')}")
