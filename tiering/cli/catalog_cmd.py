"""``tiering catalog migrate --to TARGET`` and ``tiering catalog export FILE.parquet``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Move the catalog between SQLite and PostgreSQL, or export it.", no_args_is_help=True,
                  rich_markup_mode=None)

CONFIG_HELP = "Config file (default: $TIERING_CONFIG, ./tiering.toml, configs/local.toml)."
TO_HELP = ("The new catalog: a postgresql://USER@HOST/DB URL (password from $PGPASSWORD, ~/.pgpass or a "
           "quoted '${VAR}') or a SQLite file's path.")
_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@app.command("migrate", epilog="\b\nExamples:\n  tiering catalog migrate --to 'postgresql://tiering:${PGPW}@db:5432/tiering'\n"
                               "  tiering catalog migrate --to state/catalog.db   # back from the server")
def migrate_catalog(
    to: Annotated[str, typer.Option("--to", metavar="URL|PATH", help=TO_HELP)],
    config_opt: Annotated[Path | None, typer.Option("--config", "-c", metavar="PATH", help=CONFIG_HELP)] = None,
) -> None:
    """Copy the config's catalog into a new, empty one and verify it (row counts and checksums)."""
    from tiering.catalog.backend import is_url
    from tiering.catalog.copy import copy_catalog
    from tiering.config import find_config, load_config
    from tiering.config.catalog_url import redact

    config = load_config(find_config(config_opt))
    dest = _expand(to) if is_url(to) else Path(to).absolute()
    checks = copy_catalog(config.catalog_target, dest)
    shown = redact(dest) if isinstance(dest, str) else dest
    typer.echo(", ".join(f"{c.rows} {c.table}" for c in checks) + f" copied to {shown}; counts and checksums match")
    typer.echo(f"to use it: [catalog] {'url' if isinstance(dest, str) else 'path'} = \"{_config_form(to, dest)}\"")


@app.command("export", epilog="\b\nExamples:\n  tiering catalog export /tmp/files.parquet\n"
                              "  tiering catalog export /tmp/journal.parquet --table journal")
def export_catalog(
    out: Annotated[Path, typer.Argument(metavar="FILE.parquet", help="The Parquet file to write.")],
    table: Annotated[str, typer.Option("--table", metavar="TABLE", help="files, journal or runs.")] = "files",
    config_opt: Annotated[Path | None, typer.Option("--config", "-c", metavar="PATH", help=CONFIG_HELP)] = None,
) -> None:
    """Write one table of the catalog to a Parquet file (for DuckDB, pandas, ...)."""
    from tiering.catalog.copy import export_parquet
    from tiering.config import find_config, load_config

    config = load_config(find_config(config_opt))
    n = export_parquet(config.catalog_target, out, table)
    typer.echo(f"{n} rows of {table} written to {out}")


def _expand(url: str) -> str:
    """``${VAR}`` in a quoted URL, from the environment (so a password need not be on the command line)."""
    from tiering.core.errors import UserError

    def one(match: re.Match[str]) -> str:
        if not os.environ.get(match.group(1)):
            raise UserError(f"catalog migrate --to: environment variable {match.group(1)} is not set; export it")
        return os.environ[match.group(1)]

    return _REF.sub(one, url)


def _config_form(given: str, dest: str | Path) -> str:
    """What to write in the config: the path, or the URL as given if its password is a ``${VAR}`` (or
    absent), else with a ``${VAR}`` in the password's place: a password is never printed."""
    from tiering.config.catalog_url import redact

    if not isinstance(dest, str):
        return str(dest)
    return given if _REF.search(given) or redact(given) == given else redact(given).replace("***", "${PASSWORD_VAR}")
