"""``tiering guard``: the access guard in the foreground (``tiering daemon`` starts it by itself).

It logs to stderr or ``[daemon] log_file``, and ends with one summary line
when stopped (SIGTERM/SIGINT). Where it cannot run (not root, a kernel
without fanotify permission events, a hot tier whose filesystem refuses the
marks) it says why in one line and exits 2; everything else works as
without it.
"""

from __future__ import annotations

import time

import typer

from tiering.cli.run_cmd import ConfigOpt, VerboseOpt


def guard(config: ConfigOpt = None, verbose: VerboseOpt = False) -> None:
    """Restore a released file when any process opens it, before the open returns (fanotify; root)."""
    from tiering.access.guard import work
    from tiering.access.keeper import Keeper
    from tiering.cli.logs import setup_logging
    from tiering.cli.run_cmd import _config

    cfg = _config(config)
    setup_logging(cfg, verbose)
    keeper = Keeper(cfg)
    started = time.monotonic()
    try:
        keeper.open()
        code = keeper.run(lambda group, listener: work(cfg, group, listener, keeper.ready, keeper.heat_fd,
                                                       keeper.heat_off, keeper.note))
    finally:
        keeper.close()
    restarts = keeper.status.get("restarts", 0)
    typer.echo(f"guard: stopped after {time.monotonic() - started:.0f}s"
               + (f"; its worker was restarted {restarts}x" if restarts else ""))
    if code:
        raise typer.Exit(code)
