"""``tiering bench ...``: measure what each tier can deliver."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Benchmarks: object-tier sweeps (fio sweeps and dataloader emulation to come).", no_args_is_help=True)


def _csv(text: str, parse) -> list:
    return [parse(part.strip()) for part in text.split(",") if part.strip()]


@app.command("objects")
def objects(
    tier: Annotated[str, typer.Option(help="Capacity tier name from the config.")],
    config: Annotated[Optional[Path], typer.Option(help="Config file (default: $TIERING_CONFIG, ./tiering.toml, configs/local.toml).")] = None,
    sizes: Annotated[str, typer.Option(help="Object sizes, comma-separated.")] = "64KiB,1MiB,16MiB",
    concurrency: Annotated[str, typer.Option(help="Concurrent requests, comma-separated.")] = "1,4,16,32",
    total: Annotated[str, typer.Option(help="About this much data per point.")] = "64MiB",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per point.")] = False,
) -> None:
    """PUT/GET sweep over concurrency x object size against a capacity tier."""
    from bench.objects import sweep
    from tiering.config import find_config, load_config, open_tier
    from tiering.units import format_size, parse_size

    store = open_tier(load_config(find_config(config)), tier)
    if not as_json:
        typer.echo(f"{'op':<4} {'size':>8} {'conc':>5} {'objects':>8} {'files/s':>9} {'MB/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    try:
        for p in sweep(store, _csv(sizes, parse_size), _csv(concurrency, int), total_bytes=parse_size(total)):
            if as_json:
                typer.echo(json.dumps({"op": p.op, "object_size": p.object_size, "concurrency": p.concurrency,
                                       "objects": p.objects, "seconds": round(p.seconds, 4), "ops_per_s": round(p.ops_per_s, 1),
                                       "mb_per_s": round(p.mb_per_s, 2), "lat_p50_s": p.lat_p50, "lat_p99_s": p.lat_p99}))
            else:
                typer.echo(f"{p.op:<4} {format_size(p.object_size):>8} {p.concurrency:>5} {p.objects:>8} "
                           f"{p.ops_per_s:>9.0f} {p.mb_per_s:>8.1f} {p.lat_p50 * 1e3:>8.1f} {p.lat_p99 * 1e3:>8.1f}")
    finally:
        store.close()
