"""The ``tiering`` command line: thin typer adapters over library calls.

Only this package prints or exits. A ``TieringError`` becomes one line on
stderr and the exit status its class calls for (``tiering.errors.exit_status``:
2 for a user's mistake, 3 for a tier that cannot be used, 4 for a held
catalog); an ``OSError`` from a bad environment is one line and 1. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer

from tiering.errors import TieringError, exit_status

app = typer.Typer(
    name="tiering",
    help="Policy-driven data mover between a hot tier and capacity tiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Exit statuses: one contract for every verb (the README's table; ``tiering.errors``).
from tiering.errors import (  # noqa: E402  (re-exported for the command modules)
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
)


def _register() -> None:
    # Sub-command modules import their own heavy dependencies lazily.
    from tiering.cli import bench_cmd, config_cmd, demo_cmd, move_cmd, plan_cmd, run_cmd, scan_cmd, status_cmd

    app.add_typer(config_cmd.app, name="config")
    app.add_typer(bench_cmd.app, name="bench")
    app.command("demo")(demo_cmd.demo)
    app.command("scan")(scan_cmd.scan)
    app.command("plan")(plan_cmd.plan)
    for name in ("apply", "archive", "release", "restore", "recover"):
        app.command(name)(getattr(move_cmd, name))
    app.command("status")(status_cmd.status)
    app.command("run")(run_cmd.run)
    app.command("daemon")(run_cmd.daemon)
    from tiering.cli import migrate_cmd
    app.command("migrate")(migrate_cmd.migrate)
    app.command("sync")(migrate_cmd.sync)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: a ``TieringError`` or a bad environment is one line and its exit status."""
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except TieringError as exc:
        print(f"tiering: error: {exc}", file=sys.stderr)
        sys.exit(exit_status(exc))
    except OSError as exc:  # a bad environment (unreadable file, full disk), not a bug: say what and where
        where = f": {exc.filename}" if exc.filename else ""
        print(f"tiering: error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
