"""``tiering trace export|generate``: the access trace the daemon records, and synthetic ones."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tiering.cli.config_cmd import FILE_HELP
from tiering.cli.examples import EXAMPLES
from tiering.trace.schema import TRACE_DOC

app = typer.Typer(help="The access trace: export what was recorded, or generate a synthetic one.",
                  no_args_is_help=True, rich_markup_mode=None)


@app.command(epilog=TRACE_DOC + "\n\n" + EXAMPLES["export"])  # the schema, then the examples
def export(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The file to write: .parquet or .csv.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help=FILE_HELP)] = None,
    source: Annotated[Path | None, typer.Option("--from", metavar="PATH",
                                                help="A trace file or folder (default: the config's [trace] folder).")]
    = None,
    since: Annotated[str | None, typer.Option(metavar="TIME", help="Only accesses at or after (ISO 8601, UTC if no "
                                                                   "zone).")] = None,
    until: Annotated[str | None, typer.Option(metavar="TIME", help="Only accesses before (ISO 8601).")] = None,
) -> None:
    """Write the recorded trace (every file of it, oldest access first) as one Parquet or CSV file."""
    from tiering.cli.output import note
    from tiering.trace.read import export_trace

    if source is None:
        from tiering.config import find_config, load_config

        cfg = load_config(find_config(config))
        source = cfg.trace.folder(cfg.catalog_path)
    n = export_trace(source, out, since_ns=_time_ns(since), until_ns=_time_ns(until))
    note(f"{n:,} accesses written to {out}")


@app.command()
def generate(
    out: Annotated[Path, typer.Argument(metavar="DIR", help="Folder for inventory.parquet and trace.parquet.")],
    files: Annotated[int, typer.Option(metavar="N", help="Files in the inventory, about.")] = 100_000,
    accesses: Annotated[int, typer.Option(metavar="N", help="Accesses in the trace, about.")] = 1_000_000,
    days: Annotated[float, typer.Option(metavar="DAYS", help="How long the trace lasts.")] = 30.0,
    seed: Annotated[int, typer.Option(metavar="N", help="The random seed (same seed, same trace).")] = 0,
    zipf: Annotated[float, typer.Option(metavar="S", help="Dataset popularity exponent.")] = 1.1,
    epochs: Annotated[int, typer.Option(metavar="N", help="A job reads its dataset 1..N times.")] = 4,
) -> None:
    """A synthetic training workload: datasets read in shuffled epochs (Zipf-popular), checkpoints written
    and rarely read; its inventory and its trace, for `tiering simulate`."""
    from tiering.cli.output import note
    from tiering.ops.simulate.run import write_workload
    from tiering.trace.generate import Workload, generate as make

    inventory, trace = make(Workload(files=files, accesses=accesses, days=days, seed=seed, zipf=zipf,
                                     max_epochs=epochs))
    inv, tr = write_workload(out, inventory, trace)
    note(f"{inventory.num_rows:,} files in {inv}; {trace.num_rows:,} accesses in {tr}")
    typer.echo(f"{inv}\n{tr}")


def _time_ns(text: str | None) -> int | None:
    import datetime as dt

    from tiering.core.errors import UserError

    if text is None:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{text!r} is not a time; expected ISO 8601 like 2026-01-31 or 2026-01-31T12:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1e9)
