"""The ``tiering`` command line: thin typer adapters over library calls.

Only this package prints or exits. A ``TieringError`` becomes one line on
stderr and the exit status its class calls for (``tiering.core.errors.exit_status``:
2 for a user's mistake, 3 for a tier that cannot be used, 4 for a held
catalog); an ``OSError`` from a bad environment is one line and 1. Anything
else is a bug and keeps its traceback; ``--debug`` keeps it for every error.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from importlib import import_module
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
  75   pending: objects in archive classes are still being restored; run it again later
  130  interrupted (Ctrl-C, SIGTERM), after printing the summary line"""

# Every verb, in the order ``tiering -h`` lists them: name -> (module in ``tiering.cli``, the name in it of
# its command function, or ``app`` for a group of sub-commands). A verb's module is imported only when the
# command line needs that verb (``_needed``), so ``tiering --version`` or ``tiering status FILE`` do not load
# every other verb's options and what they import. A new verb is one line here (and its examples).
VERBS: dict[str, tuple[str, str]] = {
    "demo": ("demo_cmd", "demo"),
    "scan": ("scan_cmd", "scan"),
    "plan": ("plan_cmd", "plan"),
    "apply": ("move_cmd", "apply"),
    "archive": ("move_cmd", "archive"),
    "release": ("move_cmd", "release"),
    "restore": ("move_cmd", "restore"),
    "recover": ("move_cmd", "recover"),
    "status": ("status_cmd", "status"),
    "reconcile": ("reconcile_cmd", "reconcile"),
    "cost": ("cost_cmd", "cost"),
    "simulate": ("simulate_cmd", "simulate"),
    "run": ("run_cmd", "run"),
    "daemon": ("run_cmd", "daemon"),
    "guard": ("guard_cmd", "guard"),
    "migrate": ("migrate_cmd", "migrate"),
    "sync": ("migrate_cmd", "sync"),
    "trace": ("trace_cmd", "app"),
    "config": ("config_cmd", "app"),
    "catalog": ("catalog_cmd", "app"),
    "bench": ("bench_cmd", "app"),
}

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
        # The package's own constant, not importlib.metadata: reading the installed metadata costs more
        # than the rest of ``--version`` (tests/test_startup.py checks the two agree).
        from tiering import __version__

        typer.echo(f"tiering {__version__}")
        raise typer.Exit()


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


def _app(verbs: tuple[str, ...]) -> typer.Typer:
    """The ``tiering`` typer app with ``verbs`` (names in ``VERBS``) registered, in ``VERBS``' order."""
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
    app.callback()(_options)
    for name in VERBS:
        if name in verbs:
            _add(app, name)
    return app


_tidied: set[str] = set()  # the groups whose sub-commands were given -q/-v (a test builds the command many times)


def _add(app: typer.Typer, name: str) -> None:
    """Register verb ``name``: its module is imported here; every command gets ``-q``/``-v`` and its examples."""
    from tiering.cli.examples import EXAMPLES
    from tiering.cli.output import with_output_options

    module, attr = VERBS[name]
    target = getattr(import_module(f"tiering.cli.{module}"), attr)
    if not isinstance(target, typer.Typer):
        app.command(name, epilog=EXAMPLES.get(name))(with_output_options(target))
        return
    if name not in _tidied:
        _tidied.add(name)
        for info in target.registered_commands:
            info.callback = with_output_options(info.callback)
            info.epilog = info.epilog or EXAMPLES.get(info.callback.__name__)
    app.add_typer(target, name=name)


def _needed(args: list[str]) -> Iterable[str]:
    """The verbs click may need for ``args``: the one they name; none for ``--version`` (or a missing verb);
    every verb when the top help may be printed or the name is unknown (click lists them, or suggests one).

    The global options are all flags, so the first argument that is not an option names the verb. (Were
    one to take a value, that value would read as an unknown verb: every verb, slower but still right.)
    """
    first = next((i for i, arg in enumerate(args) if not arg.startswith("-")), len(args))
    if {"-h", "--help"} & set(args[:first]) or not args:  # the top help, which lists every verb
        return VERBS
    if first == len(args):
        return ()
    return (args[first],) if args[first] in VERBS else VERBS


def command(verbs: Iterable[str] | None = None):
    """The click command behind ``tiering``, with ``verbs`` (default: every verb) registered and its help tidied."""
    verbs = tuple(VERBS if verbs is None else verbs)
    cmd = typer.main.get_command(_app(verbs))
    if verbs:  # (the global options are all flags: nothing to tidy without a verb)
        from tiering.cli.examples import tidy_metavars

        tidy_metavars(cmd)
    return cmd


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: a ``TieringError`` or a bad environment is one line and its exit status.

    With ``--debug`` the exception is raised as it is, traceback and causes.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        command(_needed(args))(args=args, prog_name="tiering", standalone_mode=True)
    except TieringError as exc:
        from tiering.cli.output import state

        if state.debug:
            raise
        print(f"tiering: error: {exc}", file=sys.stderr)
        sys.exit(exit_status(exc))
    except OSError as exc:  # a bad environment (unreadable file, full disk), not a bug: say what and where
        from tiering.cli.output import state

        if state.debug:
            raise
        where = f": {exc.filename}" if exc.filename else ""
        print(f"tiering: error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(EXIT_FAILED)
