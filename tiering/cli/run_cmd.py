"""``tiering run`` (one cycle, for cron) and ``tiering daemon`` (long-running).

Both log to stderr or ``[daemon] log_file``. ``run`` ends with one summary
line on stdout (JSON with ``--json``); exit statuses are in ``tiering.cli``
and the README.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tiering.cli import EXIT_FAILED
from tiering.cli.config_cmd import FILE_HELP
from tiering.cli.plan_cmd import POLICY_HELP

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", metavar="PATH", help=FILE_HELP)]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", "-p", metavar="PATH", help=POLICY_HELP)]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages too.")]


def run(config: ConfigOpt = None, policy: PolicyOpt = None, verbose: VerboseOpt = False,
        jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, metavar="N", help="Files in flight.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON line.")] = False) -> None:
    """One full cycle for cron: recover, scan, plan, apply, report (exit 4 if another run holds the catalog)."""
    from tiering.cli.logs import setup_logging
    from tiering.ops.cycle import run_once
    from tiering.daemon.signals import Signals
    from tiering.ops.workflow import policy_for

    cfg = _config(config)
    setup_logging(cfg, verbose)
    pol = policy_for(cfg, policy)
    with Signals(cfg.daemon.stop_timeout) as signals:
        report = run_once(cfg, pol, stop=signals.stop, jobs=jobs)
    from tiering.cli.render import cycle_line

    typer.echo(json.dumps(report.summary()) if as_json else cycle_line(report))
    status = report.result.exit_status or (EXIT_FAILED if report.failed else 0)
    if status:
        raise typer.Exit(status)


def daemon(config: ConfigOpt = None, policy: PolicyOpt = None, verbose: VerboseOpt = False) -> None:
    """Run until SIGTERM: heat from file events, cycles on an interval and above the high watermark, metrics."""
    from tiering.cli.logs import setup_logging
    from tiering.daemon import Daemon
    from tiering.ops.workflow import policy_for

    cfg = _config(config)
    setup_logging(cfg, verbose)
    Daemon(cfg, policy_for(cfg, policy), policy).run()


def _config(config: Path | None):
    from tiering.config import find_config, load_config

    return load_config(find_config(config))
