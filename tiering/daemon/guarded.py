"""The daemon's access guard: started beside it where it can run, stopped with it.

The guard is its own process (``tiering guard``: a keeper holding the
fanotify group and a worker doing restores; see ``tiering.access.keeper``),
so a stuck cycle never holds up a reader and a guard crash never takes the
daemon down. ``[guard] mode = "off"`` never starts it; ``auto`` starts it
unless one already runs on this host or none can (one log line says why).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

from tiering.access.keeper import WITH_PARENT_ENV, guard_status

log = logging.getLogger("tiering.daemon")

#: How long the daemon waits for a guard it started to say it serves.
START_WAIT = 30.0


class GuardProcess:
    """A ``tiering guard`` child of the daemon (``start``/``stop``); ``state()`` for the metrics."""

    def __init__(self, config) -> None:
        self.config = config
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.config.guard.mode == "off":
            log.info("access guard: off ([guard] mode); released files read as empty outside tiered://")
            return
        status = guard_status(self.config)
        if status.state == "active":
            log.info("access guard: already running on this host (%s)", status.detail)
            return
        if status.state == "unsupported":
            log.warning("access guard: unsupported here: %s; released files read as empty outside tiered://",
                        status.detail)
            return
        cmd = [sys.executable, "-c", "from tiering.cli import main; main()", "guard", "--config", str(self.config.path)]
        env = {**os.environ, WITH_PARENT_ENV: str(os.getpid())}  # it stops when we die, even by SIGKILL
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline and self.proc.poll() is None:
            status = guard_status(self.config, probe=False)
            if status.state == "active" and (status.info or {}).get("ready"):
                log.info("access guard: started (%s)", status.detail)
                return
            time.sleep(0.1)
        log.error("access guard: did not start (exit status %s); released files read as empty outside tiered://",
                  self.proc.poll())

    def state(self) -> float:
        """1 while this host's guard serves, else 0."""
        return 1.0 if guard_status(self.config, probe=False).state == "active" else 0.0

    def stop(self, timeout: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("access guard: did not stop within %gs; killed", timeout)
            self.proc.kill()
            self.proc.wait()
