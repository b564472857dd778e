"""``tiering demo``: check the configuration, then round-trip a sample file through the default tier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiering import selftest
from tiering.cli.config_cmd import FILE_HELP
from tiering.config import describe, find_config, load_config
from tiering.errors import UserError
from tiering.units import parse_size


def demo(
    config: Annotated[Path | None, typer.Option("--config", "-c", help=FILE_HELP)] = None,
    size: Annotated[str, typer.Option(help="Size of the sample file, e.g. 1MiB or 256MiB.")] = "1MiB",
) -> None:
    """Show the resolved configuration and prove the default capacity tier works."""
    try:
        nbytes = parse_size(size)
    except ValueError as exc:
        raise UserError(f"--size: {exc}") from None
    cfg = load_config(find_config(config))
    typer.echo(describe(cfg))
    typer.echo(f"hot tier {cfg.hot_path}; default tier {cfg.default_tier!r} at {cfg.tier().url}")
    typer.echo(selftest.demo(cfg, nbytes).summary())
