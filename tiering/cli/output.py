"""How much a command says, and the options every verb shares to say it.

- ``-q``/``--quiet``: errors and the summary line only (no progress, no notes).
- default: notes (recovered actions, skipped files) on stderr, a progress bar
  when stderr is a terminal, the summary line on stdout.
- ``-v``/``--verbose``: also the ``tiering`` loggers at DEBUG on stderr, and
  every skipped or failed file instead of the first few.
- ``--debug`` (global): an error keeps its traceback, causes and all.

The flags may come before the verb (``tiering -q archive ...``) or after it.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from typing import Annotated

import typer

QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the summary line.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Say more: debug logging, every skipped file.")]


class _State:
    quiet = False
    verbose = False
    debug = False


state = _State()


def configure(*, quiet: bool = False, verbose: bool = False, debug: bool = False) -> None:
    """Raise the output level (flags given before and after the verb add up); later calls never lower it."""
    if quiet and verbose:
        raise typer.BadParameter("--quiet and --verbose contradict each other")
    state.quiet |= quiet
    state.verbose |= verbose
    state.debug |= debug
    if state.verbose and not _logging_set_up():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.set_name("tiering-verbose")
        logging.getLogger("tiering").addHandler(handler)
        logging.getLogger("tiering").setLevel(logging.DEBUG)


def reset() -> None:
    """Back to the defaults (for tests that invoke several commands in one process)."""
    state.quiet = state.verbose = state.debug = False
    reset_verbose_handler()


def reset_verbose_handler() -> None:
    """Remove the stderr handler ``--verbose`` added (a command that logs on its own sets up its own)."""
    for handler in list(logging.getLogger("tiering").handlers):
        if handler.get_name() == "tiering-verbose":
            logging.getLogger("tiering").removeHandler(handler)


def _logging_set_up() -> bool:
    return any(h.get_name() == "tiering-verbose" for h in logging.getLogger("tiering").handlers)


def note(message: str) -> None:
    """A line for the person at the terminal (stderr), unless ``--quiet``."""
    if not state.quiet:
        typer.echo(message, err=True)


def problem(message: str) -> None:
    """An error line (stderr): shown even with ``--quiet``."""
    typer.echo(message, err=True)


def show_progress() -> bool:
    """Whether to draw a progress bar: stderr is a terminal and not ``--quiet``."""
    return not state.quiet and sys.stderr.isatty()


def limit(default: int) -> int | None:
    """How many per-file lines of one kind to print: all with ``--verbose``."""
    return None if state.verbose else default


def with_output_options(fn):
    """Give a typer command ``-q``/``--quiet`` and ``-v``/``--verbose``; they set ``state`` before it runs.

    A command that already declares ``verbose`` keeps receiving it.
    """
    sig = inspect.signature(fn, eval_str=True)
    takes_verbose = "verbose" in sig.parameters
    extra = [inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=QuietOpt)]
    if not takes_verbose:
        extra.append(inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False,
                                       annotation=VerboseOpt))

    @functools.wraps(fn)
    def command(*args, quiet: bool = False, **kwargs):
        if takes_verbose:  # the command sets up its own logging (``tiering.cli.logs``)
            configure(quiet=quiet)
            state.verbose |= kwargs["verbose"]
            kwargs["verbose"] = state.verbose
        else:
            configure(quiet=quiet, verbose=kwargs.pop("verbose", False))
        return fn(*args, **kwargs)

    params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
              else p for p in sig.parameters.values()]
    command.__signature__ = sig.replace(parameters=[*params, *extra])
    command.__annotations__ = {**{p.name: p.annotation for p in params}, "quiet": QuietOpt, "verbose": VerboseOpt}
    return command
