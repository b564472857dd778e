"""The ``tiering`` command line: thin typer adapters over library calls.

Only this package prints or exits. A ``UserError`` (bad config, bad path, a
store that refuses us) becomes one line on stderr and exit status 2; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer

from tiering.errors import CatalogBusyError, TieringError, UserError

app = typer.Typer(
    name="tiering",
    help="Policy-driven data mover between a hot tier and capacity tiers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Exit statuses (documented in the README).
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and some items failed
EXIT_USAGE = 2  # a user mistake: bad config, bad arguments, missing credentials
EXIT_STORE = 3  # a capacity tier could not be reached or refused us
EXIT_BUSY = 4  # another tiering process holds the catalog (the message names it)
EXIT_INTERRUPTED = 130  # Ctrl-C: what was in flight finished, nothing new started (the shell convention)


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
    """Console-script entry point."""
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except UserError as exc:
        print(f"tiering: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except CatalogBusyError as exc:
        print(f"tiering: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BUSY)
    except TieringError as exc:
        print(f"tiering: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_STORE)
