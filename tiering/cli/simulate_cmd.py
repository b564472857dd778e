"""``tiering simulate``: replay an access trace against policies and hot-tier sizes, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer



def simulate(
    policy: Annotated[list[Path], typer.Option("--policy", "-p", metavar="PATH",
                                               help="A policy to replay (repeat to compare several).")],
    capacity: Annotated[list[str], typer.Option(metavar="SIZE|N%",
                                                help="Hot-tier size, bytes or a share of the inventory's bytes "
                                                     "(repeat to compare sizes).")],
    trace: Annotated[Path | None, typer.Option(metavar="PATH", help="A trace file or folder, recorded or generated "
                                               "(default: the config's [trace] folder).")] = None,
    inventory: Annotated[Path | None, typer.Option(metavar="PATH", help="The inventory snapshot the trace's files "
                                                   "are in (default: the config's latest scan).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Config for heat's half-life, the default "
                                                "tier, prices, and the defaults of --trace and --inventory.")] = None,
    interval: Annotated[str | None, typer.Option(metavar="DURATION", help="Time between the daemon's cycles "
                                                 "(default: the config's [daemon] interval, or 1h).")] = None,
    step: Annotated[str, typer.Option(metavar="DURATION", help="How often the watermark is looked at.")] = "5m",
    restore_latency: Annotated[str, typer.Option(metavar="DURATION", help="A restore's time to first byte "
                                                 "(measure it: tiering bench objects).")] = "50ms",
    restore_bandwidth: Annotated[str, typer.Option(metavar="SIZE", help="Bytes/s one restore reads at.")] = "500MB",
    no_stage_in: Annotated[bool, typer.Option("--no-stage-in", help="With datasets: restore missed files one by "
                                              "one (default: a miss stages its dataset in).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per (policy, size).")] = False,
    plot: Annotated[Path | None, typer.Option(metavar="PNG", help="Plot hot usage and hit ratio to this PNG.")]
    = None,
) -> None:
    """Replay a trace against policies over simulated time, with the real planner at every cycle."""
    from tiering.cli.output import note, show_progress
    from tiering.core.errors import UserError
    from tiering.core.units import parse_duration, parse_size
    from tiering.ops.simulate import Scenario, simulate as run
    from tiering.ops.simulate.report import Prices
    from tiering.policy import load_policy

    cfg = None
    if config is not None:
        from tiering.config import load_config

        cfg = load_config(config)
    if cfg is None and (trace is None or inventory is None):
        raise UserError("simulate: --trace and --inventory, or a config (-c) to find them")
    trace = trace or cfg.trace.folder(cfg.catalog_path)
    if inventory is None:
        from tiering.ops.workflow import latest_snapshot

        inventory = latest_snapshot(cfg)
        if inventory is None:
            raise UserError(f"{cfg.path}: no inventory snapshot yet; run `tiering scan` or pass --inventory")
    policies = [(_label(p, policy), load_policy(p, cfg)) for p in policy]
    every = _value("--interval", interval, parse_duration) if interval else cfg.daemon.interval if cfg else 3600.0
    scenario = Scenario(capacity=1, interval=every,
                        step=_value("--step", step, parse_duration),
                        half_life=cfg.heat_half_life if cfg else 7 * 86400.0,
                        restore_latency=_value("--restore-latency", restore_latency, parse_duration),
                        restore_bandwidth=float(_value("--restore-bandwidth", restore_bandwidth, parse_size)),
                        tier=cfg.default_tier if cfg else "capacity", stage_in=not no_stage_in)
    progress = (lambda label, k, n: typer.echo(f"\r{label}: {k * 100 // n}%", err=True, nl=k == n)) \
        if show_progress() else None
    sim = run(trace, inventory, policies, [_capacity(c) for c in capacity], scenario,
              prices=Prices.of(cfg, None), plot_path=plot, progress=progress)
    note(f"{sim.accesses:,} accesses over {sim.files:,} files replayed ({sim.unknown:,} of files not in the "
         f"inventory left out) in {sum(r.seconds for r in sim.replays) + sim.prepare_seconds:.1f}s")
    if plot is not None:
        note(f"plot: {plot}")
    if as_json:
        for row in sim.rows:
            typer.echo(json.dumps(row))
    else:
        typer.echo(simulate_table(sim.rows))


def simulate_table(rows: list[dict]) -> str:
    """The rows side by side, one column per (policy, size)."""
    from tiering.core.units import format_size

    def pct(x: float) -> str:
        return f"{x * 100:.1f}%"

    lines = [("", [f"{r['policy']}" for r in rows]),
             ("hot tier", [format_size(r["capacity"]) for r in rows]),
             ("hit ratio (reads)", [pct(r["hit_ratio"]) for r in rows]),
             ("hit ratio (bytes)", [pct(r["byte_hit_ratio"]) for r in rows]),
             ("reads that waited", [f"{r['misses']:,}" for r in rows]),
             ("  wait added, total", [f"{r['restore_wait_seconds']:,.0f}s" for r in rows]),
             ("files staged with a dataset", [f"{r['staged_files']:,}" for r in rows]),
             ("moved up (archive/release)", [format_size(r["bytes_up"]) for r in rows]),
             ("moved down (restores)", [format_size(r["bytes_down"]) for r in rows]),
             ("peak hot usage", [f"{format_size(r['peak_used'])} ({pct(r['peak_used_ratio'])})" for r in rows]),
             ("cycles (watermark)", [f"{r['cycles']:,} ({r['watermark_cycles']:,})" for r in rows]),
             (f"cost ({rows[0]['cost']['currency'] if rows else ''})",
              [f"{r['cost']['total']:,.2f}" for r in rows])]
    width = max(14, *(len(v) for _, values in lines for v in values)) if rows else 14
    head = max(len(name) for name, _ in lines)
    return "\n".join(f"{name:<{head}}  " + "  ".join(f"{v:>{width}}" for v in values) for name, values in lines)


def _value(option: str, text: str, parse):
    from tiering.core.errors import UserError

    try:
        value = parse(text)
    except ValueError as exc:
        raise UserError(f"{option} {text!r}: {exc}") from None
    if not value:
        raise UserError(f"{option} {text!r}: expected a value above zero")
    return value


def _label(path: Path, all_paths: list[Path]) -> str:
    stems = [p.stem for p in all_paths]
    return path.stem if stems.count(path.stem) == 1 else str(path)


def _capacity(text: str) -> int | float:
    from tiering.core.errors import UserError
    from tiering.core.units import parse_size

    if text.strip().endswith("%"):
        try:
            share = float(text.strip()[:-1]) / 100
        except ValueError:
            share = 0.0
        if not 0 < share:
            raise UserError(f"--capacity {text!r}: expected a share above 0%, like 30%")
        return share
    return _value("--capacity", text, parse_size)
