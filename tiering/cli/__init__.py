"""The ``tiering`` command line: thin typer adapters over library calls.

Only this package prints or exits. A ``TieringError`` becomes one line on
stderr and the exit status its class calls for (``tiering.core.errors.exit_status``:
2 for a user's mistake, 3 for a tier that cannot be used, 4 for a held
catalog); an ``OSError`` from a bad environment is one line and 1. Anything
else is a bug and keeps its traceback; ``--debug`` keeps it for every error.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tiering.core.errors import TieringError, exit_status

EXIT_CODES = """\b
Exit status (every verb):
  0    done
  1    failed: some files could not be done (each is named on stderr)
  2    usage or configuration error (bad option, config, policy, credentials)
  3    a tier could not be reached, or refused us
  4    the catalog is locked by another tiering process (the line names it)
  130  interrupted (Ctrl-C, SIGTERM), after printing the summary line"""

app = typer.Typer(
    name="tiering",
    help="Policy-driven data mover between a hot tier and capacity tiers.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)

# Exit statuses: one contract for every verb (the README's table; ``tiering.core.errors``).
from tiering.core.errors import (  # noqa: E402  (re-exported for the command modules)
    EXIT_BUSY,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORE,
    EXIT_USAGE,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"tiering {version('tiering')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("tiering (not installed)")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and summary lines.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say more (debug logging).")] = False,
) -> None:
    """Policy-driven data mover between a hot tier and capacity tiers."""
    from tiering.cli.output import configure

    configure(quiet=quiet, verbose=verbose, debug=debug)


_registered = False


def _register() -> None:
    # Sub-command modules import their own heavy dependencies lazily.
    global _registered
    if _registered:
        return
    _registered = True
    from tiering.cli import bench_cmd, config_cmd, demo_cmd, move_cmd, plan_cmd, run_cmd, scan_cmd, status_cmd
    from tiering.cli.examples import EXAMPLES
    from tiering.cli.output import with_output_options

    def add(target: typer.Typer, name: str, fn) -> None:
        target.command(name, epilog=EXAMPLES.get(name))(with_output_options(fn))

    for info in config_cmd.app.registered_commands + bench_cmd.app.registered_commands:
        info.callback = with_output_options(info.callback)
        info.epilog = info.epilog or EXAMPLES.get(info.callback.__name__)
    app.add_typer(config_cmd.app, name="config")
    app.add_typer(bench_cmd.app, name="bench")
    add(app, "demo", demo_cmd.demo)
    add(app, "scan", scan_cmd.scan)
    add(app, "plan", plan_cmd.plan)
    for name in ("apply", "archive", "release", "restore", "recover"):
        add(app, name, getattr(move_cmd, name))
    add(app, "status", status_cmd.status)
    add(app, "run", run_cmd.run)
    add(app, "daemon", run_cmd.daemon)
    from tiering.cli import guard_cmd

    add(app, "guard", guard_cmd.guard)
    from tiering.cli import migrate_cmd

    add(app, "migrate", migrate_cmd.migrate)
    add(app, "sync", migrate_cmd.sync)


def command():
    """The click command behind ``tiering``, with every verb registered and its help tidied."""
    from tiering.cli.examples import tidy_metavars

    _register()
    cmd = typer.main.get_command(app)
    tidy_metavars(cmd)
    return cmd


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: a ``TieringError`` or a bad environment is one line and its exit status.

    With ``--debug`` the exception is raised as it is, traceback and causes.
    """
    from tiering.cli.output import state

    try:
        command()(args=argv, prog_name="tiering", standalone_mode=True)
    except TieringError as exc:
        if state.debug:
            raise
        print(f"tiering: error: {exc}", file=sys.stderr)
        sys.exit(exit_status(exc))
    except OSError as exc:  # a bad environment (unreadable file, full disk), not a bug: say what and where
        if state.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"tiering: error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
