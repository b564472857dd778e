"""Logging for the unattended commands: stderr, or the configured ``[daemon] log_file``.

Lines are ``time level logger: message``. Messages name files and counts,
never configuration values, so no secret reaches a log.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(config, verbose: bool = False) -> None:
    """Send the ``tiering`` loggers to the configured file (reopened after logrotate) or stderr."""
    settings = config.daemon
    if settings.log_file is not None:
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.WatchedFileHandler(settings.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    from tiering.cli.output import reset_verbose_handler

    reset_verbose_handler()  # this handler replaces the one -v set up, so no line is logged twice
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("tiering").setLevel(logging.DEBUG if verbose else settings.log_level.upper())
